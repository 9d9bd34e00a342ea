"""``/admin``: one server's admins run that server's part of the bot from Discord.

Who may: a member with Manage Server in *this* server, or the bot's operator (:mod:`bot.permissions`); every
command carries :func:`~bot.permissions.server_admin_only`, checked at run time on each interaction, and every
command acts on the server the interaction comes from and nothing else. ``default_permissions(manage_guild=True)``
only hides the group from other members in Discord's UI. Bot-wide powers are ``/operator`` (bot.cogs.operator).

- ``pause`` / ``resume``: hold this server's queued jobs (requests are still accepted and wait); running jobs finish.
- ``limits``: this server's caps on resolution, frames and steps.
- ``models``: which of the bot's video models members may use here.
- ``queue``, ``cancel``, ``clear``: this server's jobs.
- ``ban`` / ``unban``: who may make videos in this server.
- ``stats``, ``log``: this server's jobs and audited actions.
- ``blocklist add|remove|list``: words and phrases refused in prompts here (beside the bot-wide list).
- ``safety``: where flagged videos may be posted here (tighter than the operator's default only), and whether
  every result is a spoiler.
- ``reports``: videos members reported, with Delete, Ban maker and Dismiss.

Every change is audited with scope ``server`` in the same transaction as the change (see bot.admin_actions).
The commands ``/operator`` also has run the same bodies with this server as their scope (bot.admin_commands).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import TYPE_CHECKING, Any, Literal

import discord
from discord import app_commands
from discord.ext import commands

from bot import admin_commands as scoped
from bot.admin_actions import NO_CAP, set_guild_limits, set_guild_model
from bot.admin_buttons import ADMIN_ITEMS
from bot.admin_commands import LOG_PAGE_HELP, QUEUE_PAGE_HELP, BlocklistTerm, JobNumber, Page, Reason
from bot.admin_render import NOTHING_TO_CLEAR, render_clear_prompt, render_limits, render_models
from bot.components import clear_confirm_view
from bot.job_choices import job_id_choices
from bot.permissions import server_admin_only
from generator.model_spaces import MODEL_KEYS, SPACES, union_bounds
from jobs.control import allowed_models
from jobs.listings import queue_page
from jobs.models import GuildSettings

if TYPE_CHECKING:
    from bot.app import I2VBot

log = logging.getLogger(__name__)

CLEAR_CONFIRM_SECONDS = 120  # how long the /admin clear confirmation button stays valid, seconds

EVERY_MODEL = union_bounds(MODEL_KEYS)  # a cap may be any value some model takes
ResolutionCap = Literal["256p", "480p", "512p", "720p", "768p", "1024p", "none"]
UnsafeVideos = Literal["age_restricted", "refuse"]


@app_commands.guild_only()
@app_commands.default_permissions(manage_guild=True)
class ServerAdmin(commands.GroupCog, group_name="admin", group_description="Run this server's videos, caps and bans"):
    """The ``/admin`` command group: this server only. Each command checks the invoker at run time."""

    blocklist = app_commands.Group(name="blocklist", description="Words and phrases refused in prompts on this server")

    def __init__(self, bot: I2VBot) -> None:
        self.bot = bot
        super().__init__()
        models = self.models._params  # the enabled models are offered by name
        models["model"] = dataclasses.replace(
            models["model"],
            choices=[app_commands.Choice(name=SPACES[key].display_name, value=key) for key in bot.settings.models],
        )

    async def _defer(self, interaction: discord.Interaction) -> int:
        """Acknowledge (ephemeral) and return this server's id."""
        await scoped.defer(interaction)
        return self._here(interaction)

    @staticmethod
    def _here(interaction: discord.Interaction) -> int:
        """The scope of every /admin command: the server the interaction comes from."""
        assert interaction.guild_id is not None  # guild_only
        return interaction.guild_id

    # -- this server's jobs ---------------------------------------------------------------------------------

    @app_commands.command(name="queue")
    @app_commands.describe(page=QUEUE_PAGE_HELP)
    @server_admin_only()
    async def queue(self, interaction: discord.Interaction, page: Page = 1) -> None:
        """List this server's running and queued videos, with Cancel buttons."""
        await scoped.show_queue(self.bot, interaction, self._here(interaction), page)

    @app_commands.command(name="cancel")
    @app_commands.describe(job="The job number (#N in /admin queue).")
    @server_admin_only()
    async def cancel(self, interaction: discord.Interaction, job: JobNumber) -> None:
        """Cancel a video of this server: a queued one is refunded, a running one stops at its next step."""
        await scoped.cancel(self.bot, interaction, self._here(interaction), job)

    @cancel.autocomplete("job")
    async def cancel_job_choices(
        self, interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[int]]:
        """This server's queued and running jobs."""
        return await job_id_choices(self.bot, interaction, current, guild_id=self._here(interaction))

    @app_commands.command(name="clear")
    @server_admin_only()
    async def clear(self, interaction: discord.Interaction) -> None:
        """Cancel every queued video on this server (refunded), after a confirmation; running ones go on."""

        guild_id = await self._defer(interaction)
        async with self.bot.readers() as session:
            listing = await queue_page(session, limit=1, guild_id=guild_id)
        if listing.queued == 0:
            await interaction.followup.send(NOTHING_TO_CLEAR, ephemeral=True)
            return
        expires_at = int(time.time()) + CLEAR_CONFIRM_SECONDS
        await interaction.followup.send(
            render_clear_prompt(listing.queued, expires_at), view=clear_confirm_view(expires_at), ephemeral=True
        )

    @app_commands.command(name="pause")
    @app_commands.describe(reason="Kept in this server's audit log.")
    @server_admin_only()
    async def pause(self, interaction: discord.Interaction, reason: Reason | None = None) -> None:
        """Hold this server's videos: requests still queue and start after /admin resume; running ones finish."""
        await scoped.pause(self.bot, interaction, self._here(interaction), reason)

    @app_commands.command(name="resume")
    @server_admin_only()
    async def resume(self, interaction: discord.Interaction) -> None:
        """Let this server's queued videos start again after /admin pause."""
        await scoped.resume(self.bot, interaction, self._here(interaction))

    # -- caps -----------------------------------------------------------------------------------------------

    @app_commands.command(name="limits")
    @server_admin_only()
    async def limits(
        self,
        interaction: discord.Interaction,
        max_resolution: ResolutionCap | None = None,
        max_frames: app_commands.Range[int, 0, EVERY_MODEL.frames[1]] | None = None,
        max_steps: app_commands.Range[int, 0, EVERY_MODEL.steps[1]] | None = None,
    ) -> None:
        """Show or set this server's caps (a 12 GB GPU cannot do 1024p); requests above a cap are refused.

        Parameters
        ----------
        max_resolution:
            The largest resolution allowed here ("none" removes the cap).
        max_frames:
            The most frames allowed here (0 removes the cap).
        max_steps:
            The most denoising steps allowed here (0 removes the cap).
        """

        guild_id = await self._defer(interaction)
        if max_resolution is None and max_frames is None and max_steps is None:
            async with self.bot.readers() as session:
                row = await session.get(GuildSettings, guild_id)
            await interaction.followup.send(render_limits(row), ephemeral=True)
            return
        changes: dict[str, Any] = {}
        if max_resolution is not None:
            changes["max_resolution"] = None if max_resolution == NO_CAP else max_resolution
        if max_frames is not None:
            changes["max_frames"] = max_frames or None
        if max_steps is not None:
            changes["max_steps"] = max_steps or None
        async with self.bot.sessions.begin() as session:
            row = await set_guild_limits(session, guild_id, by=interaction.user.id, **changes)
            text = render_limits(row, updated=True)
        log.info("admin %s set limits of guild %s: %s", interaction.user.id, guild_id, changes)
        await interaction.followup.send(text, ephemeral=True)

    @app_commands.command(name="models")
    @server_admin_only()
    async def models(
        self, interaction: discord.Interaction, model: str | None = None, allowed: bool | None = None
    ) -> None:
        """Show or choose which of the bot's video models members may use on this server.

        Parameters
        ----------
        model:
            The model to allow or forbid here.
        allowed:
            True allows it (without a model: every model again), False forbids it.
        """
        guild_id = await self._defer(interaction)
        enabled = self.bot.settings.models
        if allowed is None:
            async with self.bot.readers() as session:
                chosen = await allowed_models(session, guild_id, enabled)
        else:
            async with self.bot.sessions.begin() as session:
                chosen = await set_guild_model(
                    session, guild_id, enabled, model=model, allowed=allowed, by=interaction.user.id
                )
            log.info("admin %s set the models of guild %s: %s", interaction.user.id, guild_id, chosen)
        await interaction.followup.send(render_models(chosen, enabled), ephemeral=True)

    # -- bans from this server ------------------------------------------------------------------------------

    @app_commands.command(name="ban")
    @app_commands.describe(
        user="Who to ban (in this server only).", reason="Shown to them when a request here is refused."
    )
    @server_admin_only()
    async def ban(self, interaction: discord.Interaction, user: discord.User, reason: Reason | None = None) -> None:
        """Stop someone from making videos in this server: their queued videos here are cancelled."""
        await scoped.ban(self.bot, interaction, self._here(interaction), user, reason)

    @app_commands.command(name="unban")
    @app_commands.describe(user="Who to unban (in this server).")
    @server_admin_only()
    async def unban(self, interaction: discord.Interaction, user: discord.User) -> None:
        """Let someone make videos in this server again."""
        await scoped.unban(self.bot, interaction, self._here(interaction), user)

    # -- views ----------------------------------------------------------------------------------------------

    @app_commands.command(name="stats")
    @server_admin_only()
    async def stats(self, interaction: discord.Interaction) -> None:
        """This server's jobs today and this week: states, waits and generation times, GPU time, failures."""
        await scoped.show_stats(self.bot, interaction, self._here(interaction))

    @app_commands.command(name="log")
    @app_commands.describe(page=LOG_PAGE_HELP)
    @server_admin_only()
    async def audit_log(self, interaction: discord.Interaction, page: Page = 1) -> None:
        """Show this server's audit log (who did what here, when), newest first."""
        await scoped.show_log(self.bot, interaction, self._here(interaction), page)

    # -- content safety -------------------------------------------------------------------------------------

    @blocklist.command(name="add")
    @app_commands.describe(term="A word or phrase (whole words, any case).")
    @server_admin_only()
    async def blocklist_add(self, interaction: discord.Interaction, term: BlocklistTerm) -> None:
        """Refuse prompts holding a word or phrase on this server."""
        await scoped.blocklist_add(self.bot, interaction, self._here(interaction), term)

    @blocklist.command(name="remove")
    @app_commands.describe(term="The word or phrase to allow again.")
    @server_admin_only()
    async def blocklist_remove(self, interaction: discord.Interaction, term: BlocklistTerm) -> None:
        """Take a word or phrase off this server's blocklist."""
        await scoped.blocklist_remove(self.bot, interaction, self._here(interaction), term)

    @blocklist.command(name="list")
    @server_admin_only()
    async def blocklist_list(self, interaction: discord.Interaction) -> None:
        """Show this server's blocklist."""
        await scoped.blocklist_show(self.bot, interaction, self._here(interaction))

    @app_commands.command(name="safety")
    @server_admin_only()
    async def safety(
        self, interaction: discord.Interaction, unsafe_videos: UnsafeVideos | None = None, spoilers: bool | None = None
    ) -> None:
        """Show or set where flagged videos may be posted here, and whether every result is a spoiler.

        Parameters
        ----------
        unsafe_videos:
            age_restricted: only in age-restricted channels, as spoilers; refuse: never.
        spoilers:
            True: post every result on this server as a spoiler.
        """
        await scoped.safety_settings(self.bot, interaction, self._here(interaction), unsafe_videos, spoilers)

    @app_commands.command(name="reports")
    @server_admin_only()
    async def reports(self, interaction: discord.Interaction) -> None:
        """Videos members reported on this server, with Delete, Ban maker and Dismiss."""
        await scoped.show_reports(self.bot, interaction, self._here(interaction))


async def setup(bot: I2VBot) -> None:
    """Extension entry point: the restart-safe admin buttons (both scopes) and the ``/admin`` group."""
    bot.add_dynamic_items(*ADMIN_ITEMS)
    await bot.add_cog(ServerAdmin(bot))


async def teardown(bot: I2VBot) -> None:
    """Extension exit: forget the admin buttons (the cog is removed by discord.py)."""
    bot.remove_dynamic_items(*ADMIN_ITEMS)
