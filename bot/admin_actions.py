"""What the admin commands do once the scope check passed: cancel a job, ban and settle, set a server's caps.

Each change is audited in the same transaction as the change itself, with its scope (``bot`` for the operator's
bot-wide actions, ``server`` for an action on one server), so the log cannot miss or invent an action.

Bans (``jobs.control.ban_and_settle``, the operator's, shared with the web console): the user's new requests
are refused with the reason (``jobs.admission.enqueue_job``); their queued jobs are cancelled and refunded at once; a
running job is left to finish and is delivered, but it is not retried: if its worker dies, the lease rescue fails
it (refunded) instead of putting it back in the queue. A server's own ban is ``jobs.control.ban_from_guild``.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import discord

from bot.admin_render import report_settled_text
from bot.errors import NoSuchJob, UserFacingError
from bot.permissions import log_refusal
from bot.withholding import remove_disk_copies
from generator.model_spaces import MODEL_KEYS, display_name, union_bounds
from jobs.control import (
    UNSET,
    allowed_models,
    cancel_audited,
    settle_report,
    update_guild_settings,
)
from jobs.models import GuildSettings, Job

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from bot.app import I2VBot

log = logging.getLogger(__name__)

NO_CAP = "none"  # the max_resolution choice that removes the cap


def wake_monitor(bot: I2VBot) -> None:
    """Let the monitor notice a change at once (status messages, deliveries)."""
    if bot.monitor is not None:
        bot.monitor.wake()


async def cancel_as_admin(bot: I2VBot, interaction: discord.Interaction, job_id: int, *, bot_wide: bool) -> str:
    """Cancel ``job_id`` for an admin (audited as ``cancel_job`` with its scope); return the sentence to show.

    ``bot_wide`` (the operator, ``/operator cancel``): any job. Otherwise (``/admin cancel``, the queue listing's
    buttons for a server admin) only a job of the interaction's own server: another server's job is answered
    as if it did not exist, and the attempt is logged.
    """
    async with bot.sessions.begin() as session:
        job = await session.get(Job, job_id)
        if job is not None and not bot_wide and job.guild_id != interaction.guild_id:
            log_refusal(interaction, f"cancel job {job_id} of guild {job.guild_id}", "the job's server")
            job = None
        if job is None:
            where = "" if bot_wide else " on this server"
            raise NoSuchJob(f"There is no job #{job_id}{where}.")
        outcome = await cancel_audited(session, job, by=interaction.user.id, bot_wide=bot_wide)
    wake_monitor(bot)
    log.info("admin %s cancelled job %s (bot_wide=%s): %s", interaction.user.id, job_id, bot_wide, outcome.value)
    return outcome.sentence(job_id, owner=job.user_id)


async def act_on_report(
    bot: I2VBot, interaction: discord.Interaction, job_id: int, action: str, *, bot_wide: bool
) -> str:
    """An admin's answer to a reported video (``jobs.control.settle_report``): ``delete`` it (the channel message,
    the stored bytes, the disk copy), ``ban`` its maker (and delete it; from this server, or bot-wide from an
    ``/operator`` listing) or ``dismiss`` the reports, audited. A server admin acts only on a video of the server the
    click comes from (another's is answered as if it did not exist). Returns the sentence to show."""
    async with bot.readers() as session:
        job = await session.get(Job, job_id)
    if job is not None and not bot_wide and job.guild_id != interaction.guild_id:
        log_refusal(interaction, f"{action} reported job {job_id} of guild {job.guild_id}", "the job's server")
        job = None
    if job is None:
        raise NoSuchJob(f"There is no reported video #{job_id}{'' if bot_wide else ' on this server'}.")
    by = interaction.user.id
    if action != "dismiss":
        await delete_posted_video(bot, job.channel_id, job.guild_id, job.result_message_id)
    async with bot.sessions.begin() as session:
        settled = await settle_report(session, job_id, action, by=by, guild_id=None if bot_wide else job.guild_id)
    if settled is None:
        raise NoSuchJob(f"There is no reported video #{job_id}.")
    if action != "dismiss":
        await remove_disk_copies(bot, [job_id])
    wake_monitor(bot)
    log.info(
        "admin %s: %s on reported job %s (bot_wide=%s, %d report(s))", by, action, job_id, bot_wide, settled.reports
    )
    return report_settled_text(settled, action, bot_wide=bot_wide)


async def delete_posted_video(bot: I2VBot, channel_id: int, guild_id: int | None, message_id: int | None) -> None:
    """Delete a posted result message; one that is gone already, or that the bot may not delete, is logged (the
    stored bytes go anyway)."""
    if message_id is None:
        return
    channel = bot.get_partial_messageable(channel_id, guild_id=guild_id)
    try:
        await channel.get_partial_message(message_id).delete()
    except (discord.NotFound, discord.Forbidden) as error:
        log.info("message %s in channel %s could not be deleted: %s", message_id, channel_id, error)


async def set_guild_limits(
    session: AsyncSession,
    guild_id: int,
    *,
    max_resolution: str | None = UNSET,
    max_frames: int | None = UNSET,
    max_steps: int | None = UNSET,
    by: int,
) -> GuildSettings:
    """Set (a value), clear (``None``) or keep (omitted) each of a server's caps; audited as ``set_guild_limits``.

    Raises
    ------
    UserFacingError
        A cap outside what the bot can do at all (a resolution it does not know, frames or steps below the
        smallest request, which would refuse everything).
    """
    every = union_bounds(MODEL_KEYS)  # a cap may be any value some model takes
    if max_resolution is not UNSET and max_resolution is not None and max_resolution not in every.resolutions:
        raise UserFacingError(f"max_resolution must be one of {', '.join(every.resolutions)} or {NO_CAP}.")
    for name, value, (low, high) in (("max_frames", max_frames, every.frames), ("max_steps", max_steps, every.steps)):
        if value is not UNSET and value is not None and not low <= value <= high:
            raise UserFacingError(f"{name} must be 0 (no cap) or between {low} and {high}; you gave {value}.")
    return await update_guild_settings(
        session,
        guild_id,
        by=by,
        max_resolution=max_resolution,
        max_frames=max_frames,
        max_steps=max_steps,
        action="set_guild_limits",
    )


async def set_guild_model(
    session: AsyncSession, guild_id: int, enabled: tuple[str, ...], *, model: str | None, allowed: bool, by: int
) -> list[str]:
    """Allow or forbid one of the enabled models on a server (``model`` None with ``allowed``: every enabled
    model again); at least one stays allowed. Audited as ``update_guild_settings``. Returns the models allowed."""
    current = await allowed_models(session, guild_id, enabled)
    if model is None:
        if not allowed:
            raise UserFacingError("Name the model to forbid; at least one model stays allowed.")
        await update_guild_settings(session, guild_id, by=by, models=None)
        return list(enabled)
    if model not in enabled:
        raise UserFacingError(
            f"This bot does not offer {display_name(model)}; it offers "
            f"{', '.join(display_name(key) for key in enabled)}."
        )
    chosen = [key for key in enabled if key in current and key != model] + ([model] if allowed else [])
    chosen = [key for key in enabled if key in chosen]
    if not chosen:
        raise UserFacingError(f"{display_name(model)} is the only model allowed here; allow another one first.")
    await update_guild_settings(session, guild_id, by=by, models=None if chosen == list(enabled) else chosen)
    return chosen
