"""What the admin commands do once the scope check passed: cancel a job, ban and settle, set a server's caps.

Each change is audited in the same transaction as the change itself, with its scope (``bot`` for the operator's
bot-wide actions, ``server`` for an action on one server), so the log cannot miss or invent an action.

Bans (:func:`ban_and_settle`, the operator's): the user's new requests are refused with the reason
(``jobs.queue.enqueue_job``); their queued jobs are cancelled and refunded at once; a running job is left to finish
and is delivered, but it is not retried: if its worker dies, the lease rescue fails it (refunded) instead of
putting it back in the queue. A server's own ban is ``jobs.control.ban_from_guild``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import discord
from sqlalchemy import select, update

from bot.errors import JobNotFound, UserFacingError
from bot.permissions import log_refusal
from generator.params import FRAMES_RANGE, RESOLUTIONS, STEPS_RANGE

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from bot.app import I2VBot
    from jobs.models import GuildSettings

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
    from jobs.audit import record_action
    from jobs.models import AUDIT_SCOPE_BOT, AUDIT_SCOPE_SERVER, Job
    from jobs.queue import cancel_job

    async with bot.sessions.begin() as session:
        job = await session.get(Job, job_id)
        if job is not None and not bot_wide and job.guild_id != interaction.guild_id:
            log_refusal(interaction, f"cancel job {job_id} of guild {job.guild_id}", "the job's server")
            job = None
        if job is None:
            where = "" if bot_wide else " on this server"
            raise JobNotFound(f"There is no job #{job_id}{where}.")
        outcome = await cancel_job(session, job_id)
        await record_action(
            session,
            actor_id=interaction.user.id,
            action="cancel_job",
            target_user_id=job.user_id,
            guild_id=job.guild_id,
            job_id=job_id,
            detail={"outcome": outcome.value},
            scope=AUDIT_SCOPE_BOT if bot_wide else AUDIT_SCOPE_SERVER,
        )
    wake_monitor(bot)
    log.info("admin %s cancelled job %s (bot_wide=%s): %s", interaction.user.id, job_id, bot_wide, outcome.value)
    if outcome.value == "cancelled":
        return f"Cancelled job #{job_id} of <@{job.user_id}> before it started; their GPU time was refunded."
    if outcome.value == "requested":
        return f"Stopping job #{job_id} of <@{job.user_id}>; it is charged only for the GPU time already used."
    return f"Job #{job_id} had already finished; nothing to cancel."


@dataclass(frozen=True)
class BanOutcome:
    """What a ban did to the user's jobs."""

    newly_banned: bool
    cancelled_job_ids: list[int]
    running_job_ids: list[int]


async def ban_and_settle(session: AsyncSession, user_id: int, *, reason: str | None, by: int) -> BanOutcome:
    """Ban ``user_id`` from the bot (every server: the operator's power) and settle their jobs, in the caller's
    transaction.

    - New requests are refused with ``reason`` (``enqueue_job`` raises ``Banned``).
    - Queued jobs are cancelled and refunded now (``cancel_job``).
    - A running job is left to finish and is delivered, but is not retried: its ``max_attempts`` is lowered to
      the current attempt, so if its worker dies the lease rescue fails it (refunded) instead of requeueing it.

    Audited as ``ban_user`` (by ``jobs.quota.ban_user``) and, when jobs were touched, ``ban_settle_jobs``.
    """
    from jobs.audit import record_action
    from jobs.models import Job, JobStatus, UserLimit
    from jobs.queue import CancelOutcome, cancel_job
    from jobs.quota import ban_user

    previous = await session.get(UserLimit, user_id)
    newly_banned = not (previous is not None and previous.banned)
    await ban_user(session, user_id, reason=reason, by=by)
    queued = list(
        await session.scalars(
            select(Job.id).where(Job.user_id == user_id, Job.status == JobStatus.QUEUED).order_by(Job.id)
        )
    )
    cancelled = [job_id for job_id in queued if await cancel_job(session, job_id) == CancelOutcome.CANCELLED]
    running = list(
        await session.scalars(
            update(Job)
            .where(Job.user_id == user_id, Job.status == JobStatus.RUNNING)
            .values(max_attempts=Job.attempt)
            .returning(Job.id)
            .execution_options(synchronize_session=False)
        )
    )
    if cancelled or running:
        await record_action(
            session,
            actor_id=by,
            action="ban_settle_jobs",
            target_user_id=user_id,
            detail={"cancelled": cancelled, "running_not_retried": sorted(running)},
        )
    return BanOutcome(newly_banned=newly_banned, cancelled_job_ids=cancelled, running_job_ids=sorted(running))


_KEEP: Any = object()  # "leave this cap as it is" in set_guild_limits


async def set_guild_limits(
    session: AsyncSession,
    guild_id: int,
    *,
    max_resolution: str | None = _KEEP,
    max_frames: int | None = _KEEP,
    max_steps: int | None = _KEEP,
    by: int,
) -> GuildSettings:
    """Set (a value), clear (``None``) or keep (omitted) each of a server's caps; audited as ``set_guild_limits``.

    Raises
    ------
    UserFacingError
        A cap outside what the bot can do at all (a resolution it does not know, frames or steps below the
        smallest request, which would refuse everything).
    """
    from jobs.audit import record_action
    from jobs.models import AUDIT_SCOPE_SERVER, GuildSettings, utcnow

    if max_resolution is not _KEEP and max_resolution is not None and max_resolution not in RESOLUTIONS:
        raise UserFacingError(f"max_resolution must be one of {', '.join(RESOLUTIONS)} or {NO_CAP}.")
    for name, value, (low, high) in (("max_frames", max_frames, FRAMES_RANGE), ("max_steps", max_steps, STEPS_RANGE)):
        if value is not _KEEP and value is not None and not low <= value <= high:
            raise UserFacingError(f"{name} must be 0 (no cap) or between {low} and {high}; you gave {value}.")

    row = await session.get(GuildSettings, guild_id, with_for_update=True)
    if row is None:
        row = GuildSettings(guild_id=guild_id, paused=False, mention_replies=False)
        session.add(row)
    before = {"max_resolution": row.max_resolution, "max_frames": row.max_frames, "max_steps": row.max_steps}
    if max_resolution is not _KEEP:
        row.max_resolution = max_resolution
    if max_frames is not _KEEP:
        row.max_frames = max_frames
    if max_steps is not _KEEP:
        row.max_steps = max_steps
    row.updated_by, row.updated_at = by, utcnow()
    after = {"max_resolution": row.max_resolution, "max_frames": row.max_frames, "max_steps": row.max_steps}
    await record_action(
        session, actor_id=by, action="set_guild_limits", guild_id=guild_id, detail={"before": before, "after": after},
        scope=AUDIT_SCOPE_SERVER,
    )
    return row
