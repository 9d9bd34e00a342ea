"""Restart-safe buttons: each is a ``DynamicItem`` whose ``custom_id`` carries the job id (``i2v:<action>:<job>``).

Nothing about a button lives in memory: a click after a restart is parsed from its ``custom_id`` and the job is
read from the database. Every button acts only for the job's requester or the bot's operator, and Cancel and
Delete also for an admin of the job's own server (:func:`bot.permissions.check_job_access`, checked on every
click). Every refusal is a short ephemeral message through ``bot.tree.explain_error``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import discord

from bot.errors import JobNotFound, UserFacingError
from bot.permissions import check_job_access
from bot.tree import explain_error

if TYPE_CHECKING:
    from bot.app import I2VBot
    from jobs.models import Job

log = logging.getLogger(__name__)

CUSTOM_ID_PREFIX = "i2v"


async def load_job(bot: I2VBot, job_id: int) -> Job:
    """Read job ``job_id`` or raise :class:`JobNotFound`."""
    from jobs.queue import find_job

    async with bot.readers() as session:
        job = await find_job(session, job_id)
    if job is None:
        raise JobNotFound(f"Job #{job_id} does not exist any more.")
    return job


def require_owner(
    bot: I2VBot, interaction: discord.Interaction, job: Job, action: str, *, server_admins: bool = False
) -> None:
    """Allow the job's requester, the operator, and (``server_admins``) an admin of the job's server; otherwise
    raise :class:`~bot.errors.NotYours` naming the action (see :func:`bot.permissions.check_job_access`)."""
    check_job_access(interaction, bot.settings, job, action, server_admins=server_admins)


async def _guarded(interaction: discord.Interaction, body: Callable[[], Awaitable[None]]) -> None:
    """Run a button body; any refusal or failure becomes one ephemeral message."""
    try:
        await body()
    except Exception as error:  # the funnel decides between a user message and a logged failure
        await explain_error(interaction, error)


class _JobButton(discord.ui.DynamicItem[discord.ui.Button], template=r"i2v:(?P<action>[a-z]+):(?P<job>[0-9]+)"):
    """Base for the job buttons; subclasses set ACTION, LABEL, STYLE, EMOJI and implement :meth:`run`."""

    ACTION = ""
    LABEL = ""
    EMOJI: str | None = None
    STYLE = discord.ButtonStyle.secondary

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(template=rf"{CUSTOM_ID_PREFIX}:{cls.ACTION}:(?P<job>[0-9]+)")

    def __init__(self, job_id: int) -> None:
        super().__init__(
            discord.ui.Button(
                label=self.LABEL,
                emoji=self.EMOJI,
                style=self.STYLE,
                custom_id=f"{CUSTOM_ID_PREFIX}:{self.ACTION}:{job_id}",
            )
        )
        self.job_id = job_id

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> _JobButton:
        return cls(int(match["job"]))

    async def callback(self, interaction: discord.Interaction) -> None:  # type: ignore[override]
        bot: I2VBot = interaction.client  # type: ignore[assignment]
        await _guarded(interaction, lambda: self.run(bot, interaction))

    async def run(self, bot: I2VBot, interaction: discord.Interaction) -> None:
        raise NotImplementedError


class CancelButton(_JobButton):
    """Cancel a queued job (refunded) or ask the worker to stop a running one (charged for time used)."""

    ACTION = "cancel"
    LABEL = "Cancel"
    EMOJI = "🛑"
    STYLE = discord.ButtonStyle.danger

    async def run(self, bot: I2VBot, interaction: discord.Interaction) -> None:
        from bot.actions import cancel_job_for

        job = await load_job(bot, self.job_id)
        require_owner(bot, interaction, job, "cancel", server_admins=True)
        await interaction.response.defer(ephemeral=True, thinking=True)
        message = await cancel_job_for(bot, job)
        await interaction.followup.send(message, ephemeral=True)


class RerollButton(_JobButton):
    """Queue the same parameters again with a new random seed."""

    ACTION = "reroll"
    LABEL = "Re-roll"
    EMOJI = "🎲"
    STYLE = discord.ButtonStyle.primary

    async def run(self, bot: I2VBot, interaction: discord.Interaction) -> None:
        from bot.actions import pause_notice, queue_variant, queued_text, tell_queued

        job = await load_job(bot, self.job_id)
        require_owner(bot, interaction, job, "re-roll")
        await interaction.response.defer(ephemeral=True, thinking=True)
        new_job = await queue_variant(bot, interaction, job, source="reroll", changes={"seed": None})
        notice = await pause_notice(bot, new_job.guild_id)
        head = f"Re-rolling job #{job.id} as job #{new_job.id} (seed {new_job.seed})"
        await tell_queued(interaction, new_job, queued_text(new_job, head, notice))


class VaryButton(_JobButton):
    """Open a modal to change the prompt or parameters, then queue the variant."""

    ACTION = "vary"
    LABEL = "Vary"
    EMOJI = "🎛️"

    async def run(self, bot: I2VBot, interaction: discord.Interaction) -> None:
        from bot.modals import VaryModal

        job = await load_job(bot, self.job_id)
        require_owner(bot, interaction, job, "vary")
        await interaction.response.send_modal(VaryModal(job))


class DeleteButton(_JobButton):
    """Delete the result message, the stored video and its disk copy."""

    ACTION = "delete"
    LABEL = "Delete"
    EMOJI = "🗑️"
    STYLE = discord.ButtonStyle.danger

    async def run(self, bot: I2VBot, interaction: discord.Interaction) -> None:
        job = await load_job(bot, self.job_id)
        require_owner(bot, interaction, job, "delete", server_admins=True)
        await interaction.response.defer(ephemeral=True, thinking=True)
        message_id = interaction.message.id if interaction.message else job.result_message_id
        if message_id is None:
            raise UserFacingError(f"Job #{job.id} has no result message to delete.")
        channel = bot.get_partial_messageable(interaction.channel_id or job.channel_id, guild_id=job.guild_id)
        try:
            await channel.get_partial_message(message_id).delete()
        except discord.NotFound:
            pass  # already gone: the outcome the user asked for
        from bot.forget import delete_stored_video

        await delete_stored_video(bot, job.id)
        log.info("user %s deleted the result of job %s (message %s)", interaction.user.id, job.id, message_id)
        await interaction.followup.send(f"Deleted the video of job #{job.id}.", ephemeral=True)


class InfoButton(_JobButton):
    """Show every parameter of the job to its requester or the operator (ephemeral)."""

    ACTION = "info"
    LABEL = "Info"
    EMOJI = "ℹ️"

    async def run(self, bot: I2VBot, interaction: discord.Interaction) -> None:
        from bot.result_text import render_info

        job = await load_job(bot, self.job_id)
        require_owner(bot, interaction, job, "see the details of")
        await interaction.response.send_message(render_info(job), ephemeral=True)


DYNAMIC_ITEMS: tuple[type[_JobButton], ...] = (CancelButton, RerollButton, VaryButton, DeleteButton, InfoButton)


def result_view(job_id: int) -> discord.ui.View:
    """The buttons under a delivered video."""
    view = discord.ui.View(timeout=None)
    for item in (RerollButton, VaryButton, DeleteButton, InfoButton):
        view.add_item(item(job_id))
    return view
