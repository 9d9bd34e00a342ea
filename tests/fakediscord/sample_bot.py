"""A minimal discord.py bot used only by the fake's own tests (not the product bot).

It exercises what the product relies on: a slash command with an attachment that defers and follows up with a
file and a button, subcommand groups with typed options, a message context menu, a modal, component updates,
and mention handling. Everything it sees is appended to ``bot.seen`` for assertions.
"""

from __future__ import annotations

import asyncio
import io
import re
from typing import Any, cast

import discord
from discord import app_commands
from discord.ext import commands

GUILD_READY_TIMEOUT_SECONDS = 0.05


class AgainButton(discord.ui.DynamicItem[discord.ui.Button[Any]], template=r"again:(?P<job>\d+)"):
    """A restart-proof button carrying a job id; pressing it opens a modal."""

    def __init__(self, job: int) -> None:
        super().__init__(discord.ui.Button(label="Again", custom_id=f"again:{job}"))
        self.job = job

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> AgainButton:
        return cls(int(match["job"]))

    async def callback(self, interaction: discord.Interaction) -> None:
        bot = cast(SampleBot, interaction.client)
        bot.seen.append(("button", self.job, interaction.user.id))
        await interaction.response.send_modal(PromptModal(self.job))


class PromptModal(discord.ui.Modal, title="New prompt"):
    """Asks for a new prompt."""

    prompt: discord.ui.TextInput[Any] = discord.ui.TextInput(label="Prompt", custom_id="prompt")

    def __init__(self, job: int) -> None:
        super().__init__(custom_id=f"prompt-modal:{job}")
        self.job = job

    async def on_submit(self, interaction: discord.Interaction) -> None:
        bot = cast(SampleBot, interaction.client)
        bot.seen.append(("modal", self.job, self.prompt.value))
        await interaction.response.send_message(f"re-rolling {self.job}: {self.prompt.value}", ephemeral=True)


class StatusView(discord.ui.View):
    """Persistent buttons: Refresh edits the message in place (type 7); Hide defers (type 6) then deletes."""

    def __init__(self) -> None:
        super().__init__(timeout=None)

    @discord.ui.button(label="Refresh", custom_id="refresh")
    async def refresh(self, interaction: discord.Interaction, button: discord.ui.Button[Any]) -> None:
        bot = cast(SampleBot, interaction.client)
        bot.seen.append(("refresh", interaction.message.id if interaction.message else None))
        await interaction.response.edit_message(content="status v2", view=self)

    @discord.ui.button(label="Hide", custom_id="hide")
    async def hide(self, interaction: discord.Interaction, button: discord.ui.Button[Any]) -> None:
        cast(SampleBot, interaction.client).seen.append(("hide",))
        await interaction.response.defer()
        await interaction.delete_original_response()


class SampleBot(commands.Bot):
    """The test bot; ``seen`` records what handlers received."""

    def __init__(self, *, identify_delay: float = 0.0, intents: discord.Intents | None = None) -> None:
        super().__init__(
            command_prefix="!",
            intents=intents or discord.Intents.default(),
            guild_ready_timeout=GUILD_READY_TIMEOUT_SECONDS,
            chunk_guilds_at_startup=False,
        )
        self.seen: list[tuple[Any, ...]] = []
        self.identify_delay = identify_delay
        self.ready_count = 0
        self.resumed_count = 0

    async def before_identify_hook(self, shard_id: int | None, *, initial: bool = False) -> None:
        # discord.py sleeps 5 s before a re-IDENTIFY; tests do not need to wait that long.
        await asyncio.sleep(0 if initial else self.identify_delay)

    async def setup_hook(self) -> None:
        self.add_dynamic_items(AgainButton)
        self.add_view(StatusView())
        _add_commands(self)
        await self.tree.sync()

    async def on_ready(self) -> None:
        self.ready_count += 1

    async def on_resumed(self) -> None:
        self.resumed_count += 1

    async def on_message(self, message: discord.Message) -> None:
        if self.user is None or message.author.id == self.user.id:
            return
        self.seen.append(
            (
                "message",
                message.content,
                [a.filename for a in message.attachments],
                message.reference.message_id if message.reference else None,
                [a.filename for a in message.reference.resolved.attachments]
                if message.reference and isinstance(message.reference.resolved, discord.Message)
                else None,
                self.user in message.mentions,
            )
        )


def _add_commands(bot: SampleBot) -> None:
    tree = bot.tree

    @tree.command(name="animate", description="Animate an image")
    @app_commands.describe(image="The image", prompt="What happens")
    async def animate(
        interaction: discord.Interaction,
        image: discord.Attachment,
        prompt: str,
        frames: int = 16,
        guidance: float = 9.0,
        loop: bool = False,
    ) -> None:
        await interaction.response.defer(thinking=True)
        data = await image.read()
        bot.seen.append(
            (
                "animate",
                image.filename,
                len(data),
                prompt,
                frames,
                guidance,
                loop,
                interaction.filesize_limit,
                interaction.permissions.value,
            )
        )
        await interaction.edit_original_response(content="working... 50%")
        video = b"\x00\x00\x00\x18ftypisom" + data[::-1]
        view = discord.ui.View(timeout=None)
        view.add_item(AgainButton(7))
        await interaction.followup.send(
            content=f"done: {prompt}", file=discord.File(io.BytesIO(video), filename="out.mp4"), view=view
        )

    admin = app_commands.Group(
        name="admin", description="Admin", default_permissions=discord.Permissions(manage_guild=True)
    )
    quota = app_commands.Group(name="quota", description="Quotas", parent=admin)

    @quota.command(name="set", description="Set a user's quota")
    async def quota_set(interaction: discord.Interaction, user: discord.Member, seconds: float) -> None:
        perms = interaction.permissions
        bot.seen.append(("quota set", user.id, seconds, perms.administrator))
        if not perms.administrator:
            await interaction.response.send_message("admins only", ephemeral=True)
            return
        await interaction.response.send_message(f"{user.display_name}: {seconds:g}s")

    @admin.command(name="pause", description="Pause the queue")
    async def pause(interaction: discord.Interaction) -> None:
        bot.seen.append(("admin pause",))
        await interaction.response.send_message("paused")

    tree.add_command(admin)

    @tree.command(name="wait", description="Defer, wait, then follow up (falls back to the channel)")
    async def wait(interaction: discord.Interaction, seconds: float) -> None:
        await interaction.response.defer(thinking=True)
        await asyncio.sleep(seconds)
        try:
            await interaction.followup.send("late result")
        except discord.HTTPException as error:
            bot.seen.append(("late-error", error.status, error.code))
            assert isinstance(interaction.channel, discord.abc.Messageable)
            await interaction.channel.send("late result (via the channel)")
        else:
            bot.seen.append(("late-ok",))

    @tree.context_menu(name="Animate")
    async def animate_menu(interaction: discord.Interaction, message: discord.Message) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        bot.seen.append(
            ("menu", message.id, [a.filename for a in message.attachments], [e.title for e in message.embeds])
        )
        await interaction.followup.send(f"{len(message.attachments)} attachment(s)", ephemeral=True)

    @tree.command(name="status", description="Show a status with a toggle")
    async def status(interaction: discord.Interaction) -> None:
        await interaction.response.send_message("status v1", view=StatusView())
