"""What admins change, and the switches that hold the queue: pause and resume (bot-wide and per server), clearing
queued jobs, the users a server shut out, a server's settings, and the operator's cancels and bans. Every change is
audited in the caller's transaction (``jobs.audit``); the Discord commands and the web console share these functions.

- **Pause holds.** Neither the bot-wide switch (``queue_state``, the operator's) nor a server's switch
  (``guild_settings.paused``, that server's admins') refuses a request: ``jobs.transitions.claimable`` keeps the worker
  from claiming a held job until its switch is off. Running jobs finish.
- **Server bans.** A server's admins can stop a user from making videos *in that server* (:func:`ban_from_guild`);
  :func:`refuse_if_banned_here` is checked by admission; a bot-wide ban is :func:`jobs.quota.ban_user`.
- **Server settings** (:func:`update_guild_settings`): caps on resolution, frames and steps, the pause switch,
  mention replies.
- **Reported videos** (:func:`settle_report`): delete, ban the maker, or dismiss, resolving the reports.
- **Bot-wide bans** (:func:`ban_and_settle`): the user's new requests are refused with the reason
  (``jobs.admission.enqueue_job``); their queued jobs are cancelled and refunded at once; a running job is left to
  finish and is delivered, but it is not retried: if its worker dies, the lease rescue fails it (refunded) instead of
  putting it back in the queue.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from generator.model_spaces import MODEL_KEYS
from jobs.audit import record_action
from jobs.db import locked_row
from jobs.errors import Banned
from jobs.models import (
    AUDIT_SCOPE_BOT,
    AUDIT_SCOPE_SERVER,
    QUEUE_STATE_ROW_ID,
    GuildBan,
    GuildSettings,
    Job,
    JobStatus,
    QueueState,
    UserLimit,
    utcnow,
)
from jobs.quota import ban_user
from jobs.retention import forget_job_bytes
from jobs.safety import REPORT_BANNED, REPORT_DELETED, REPORT_DISMISSED, resolve_reports
from jobs.transitions import JOBS, CancelOutcome, cancel_job, cancel_queued, checked_now
from jobs.web_sessions import end_user_sessions

CLEARED_ERROR = "An admin cleared the queue; your GPU time was refunded."


async def is_paused(session: AsyncSession) -> bool:
    """Whether the global queue is paused."""
    return bool(await session.scalar(select(QueueState.paused).where(QueueState.id == QUEUE_STATE_ROW_ID)))


async def _set_paused(
    session: AsyncSession, paused: bool, *, by: int | None, reason: str | None, now: datetime
) -> bool:
    state = await session.get(QueueState, QUEUE_STATE_ROW_ID, with_for_update=True, populate_existing=True)
    if state is None:
        raise RuntimeError("queue_state row 1 is missing: run the migrations (jobs.db.migrate)")
    changed = state.paused != paused
    if changed or reason is not None:
        state.paused, state.reason, state.changed_by, state.changed_at = paused, reason, by, now
    await record_action(
        session,
        actor_id=by,
        action="pause_queue" if paused else "resume_queue",
        detail={"reason": reason, "changed": changed},
        now=now,
    )
    return changed


async def pause_queue(
    session: AsyncSession, *, by: int | None, reason: str | None = None, now: datetime | None = None
) -> bool:
    """Pause bot-wide: workers claim nothing (new requests are still queued and wait); running jobs finish. False
    if already paused."""
    return await _set_paused(session, True, by=by, reason=reason, now=checked_now(now))


async def resume_queue(session: AsyncSession, *, by: int | None, now: datetime | None = None) -> bool:
    """Resume after ``pause_queue``. False if it was not paused."""
    return await _set_paused(session, False, by=by, reason=None, now=checked_now(now))


async def clear_queue(
    session: AsyncSession, *, by: int | None, guild_id: int | None = None, now: datetime | None = None
) -> list[int]:
    """Cancel every queued job (of one guild, or all) with a refund; running jobs are left alone.
    Returns the cancelled ids; audited as ``clear_queue``."""
    now = checked_now(now)
    where = () if guild_id is None else (JOBS.c.guild_id == guild_id,)
    ids = await cancel_queued(session, *where, now=now, error=CLEARED_ERROR)
    await record_action(
        session, actor_id=by, action="clear_queue", guild_id=guild_id, detail={"cancelled": len(ids)}, now=now
    )
    return ids


class BannedHere(Banned):
    """The user is banned from making videos in this server (by its admins)."""

    code = "banned_here"

    def __init__(self, reason: str | None) -> None:
        super().__init__(reason)
        text = "You are not allowed to make videos with this bot in this server"
        self.message = f"{text}: {reason}." if reason else f"{text}."
        self.args = (self.message,)


async def _set_guild_paused(
    session: AsyncSession, guild_id: int, paused: bool, *, by: int | None, reason: str | None, now: datetime | None
) -> bool:
    now = now or utcnow()
    row = await locked_row(session, GuildSettings, guild_id, guild_id=guild_id, paused=False, mention_replies=False)
    changed = bool(row.paused) != paused
    row.paused, row.updated_by, row.updated_at = paused, by, now
    await record_action(
        session,
        actor_id=by,
        action="pause_server" if paused else "resume_server",
        guild_id=guild_id,
        detail={"reason": reason, "changed": changed},
        now=now,
        scope=AUDIT_SCOPE_SERVER,
    )
    return changed


async def pause_guild(
    session: AsyncSession, guild_id: int, *, by: int | None, reason: str | None = None, now: datetime | None = None
) -> bool:
    """Hold this server's queued jobs (new ones are still accepted); False if it was already paused."""
    return await _set_guild_paused(session, guild_id, True, by=by, reason=reason, now=now)


async def resume_guild(session: AsyncSession, guild_id: int, *, by: int | None, now: datetime | None = None) -> bool:
    """Let this server's queued jobs start again; False if it was not paused."""
    return await _set_guild_paused(session, guild_id, False, by=by, reason=None, now=now)


async def refuse_if_banned_here(session: AsyncSession, user_id: int, guild_id: int | None) -> None:
    """Raise :class:`BannedHere` if the server's admins banned ``user_id`` from using the bot there."""
    if guild_id is None:
        return
    ban = await session.get(GuildBan, (guild_id, user_id))
    if ban is not None:
        raise BannedHere(ban.reason)


async def refuse_banned(session: AsyncSession, user_id: int, guild_id: int | None) -> None:
    """Raise :class:`~jobs.errors.Banned` if ``user_id`` is banned from the bot, :class:`BannedHere` if from
    ``guild_id`` (a sign-in link from that server, ``/web`` there)."""
    limit = await session.get(UserLimit, user_id)
    if limit is not None and limit.banned:
        raise Banned(limit.ban_reason)
    await refuse_if_banned_here(session, user_id, guild_id)


async def ban_from_guild(
    session: AsyncSession, guild_id: int, user_id: int, *, reason: str | None, by: int, now: datetime | None = None
) -> tuple[bool, list[int]]:
    """Ban ``user_id`` from making videos in ``guild_id`` and cancel (with a refund) their jobs queued there; a
    running one finishes. Returns (newly banned, cancelled job ids); audited as ``ban_from_server``."""
    now = now or utcnow()
    row = await session.get(GuildBan, (guild_id, user_id), with_for_update=True)
    newly = row is None
    if row is None:
        row = GuildBan(guild_id=guild_id, user_id=user_id, created_at=now)
        session.add(row)
    row.reason, row.banned_by = reason, by
    queued = list(
        await session.scalars(
            select(Job.id)
            .where(Job.user_id == user_id, Job.guild_id == guild_id, Job.status == JobStatus.QUEUED)
            .order_by(Job.id)
        )
    )
    cancelled = [job_id for job_id in queued if await cancel_job(session, job_id, now=now) == CancelOutcome.CANCELLED]
    ended = await end_user_sessions(session, user_id, guild_id=guild_id, now=now)  # the pages of this server's links
    await record_action(
        session,
        actor_id=by,
        action="ban_from_server",
        target_user_id=user_id,
        guild_id=guild_id,
        detail={"reason": reason, "cancelled": cancelled, **({"web_sessions_ended": ended} if ended else {})},
        now=now,
        scope=AUDIT_SCOPE_SERVER,
    )
    return newly, cancelled


async def unban_from_guild(
    session: AsyncSession, guild_id: int, user_id: int, *, by: int, now: datetime | None = None
) -> bool:
    """Lift a server ban; False if there was none. Audited as ``unban_from_server``."""
    result = await session.execute(
        delete(GuildBan).where(GuildBan.guild_id == guild_id, GuildBan.user_id == user_id).returning(GuildBan.user_id)
    )
    if result.first() is None:
        return False
    await record_action(
        session,
        actor_id=by,
        action="unban_from_server",
        target_user_id=user_id,
        guild_id=guild_id,
        now=now,
        scope=AUDIT_SCOPE_SERVER,
    )
    return True


@dataclass(frozen=True)
class PauseState:
    """What holds a new job of one server back: the bot-wide switch (with its reason) and the server's."""

    bot_paused: bool
    bot_reason: str | None
    guild_paused: bool

    @property
    def held(self) -> bool:
        """Whether a job queued now would wait for a resume."""
        return self.bot_paused or self.guild_paused

    def notice(self) -> str | None:
        """What a requester is told when a pause holds their new job (None when nothing does)."""
        if self.bot_paused:
            reason = f" ({self.bot_reason})" if self.bot_reason else ""
            return f"⏸️ The queue is paused by the bot's operator{reason}: this job waits and starts after resume."
        if self.guild_paused:
            return "⏸️ The queue is paused on this server by its admins: this job waits and starts after resume."
        return None


async def pause_state(session: AsyncSession, guild_id: int | None) -> PauseState:
    """The switches that would hold a job of ``guild_id`` queued now."""
    row = (
        await session.execute(select(QueueState.paused, QueueState.reason).where(QueueState.id == QUEUE_STATE_ROW_ID))
    ).first()
    guild_paused = False
    if guild_id is not None:
        guild_paused = bool(
            await session.scalar(select(GuildSettings.paused).where(GuildSettings.guild_id == guild_id))
        )
    return PauseState(
        bot_paused=bool(row and row.paused), bot_reason=row.reason if row else None, guild_paused=guild_paused
    )


UNSET: Any = object()
"""Marker for "leave this setting as it is" in ``update_guild_settings``."""


def _check_cap(name: str, value: Any) -> None:
    if value is None or value is UNSET:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be None or a positive integer, got {value!r}")


async def allowed_models(session: AsyncSession, guild_id: int | None, enabled: Sequence[str]) -> list[str]:
    """The enabled models (in their order, the default first) that the server ``guild_id`` allows; all of them
    in a DM or a server whose admins set no list."""
    if guild_id is None:
        return list(enabled)
    server = await session.scalar(select(GuildSettings.models).where(GuildSettings.guild_id == guild_id))
    return [key for key in enabled if server is None or key in server]


def _check_models(models: Any) -> Any:
    if models is None or models is UNSET:
        return models
    keys = list(dict.fromkeys(models))
    if not keys or any(key not in MODEL_KEYS for key in keys):
        raise ValueError(f"models must be None or a non-empty list of {', '.join(MODEL_KEYS)}, got {models!r}")
    return keys


async def update_guild_settings(
    session: AsyncSession,
    guild_id: int,
    *,
    by: int | None,
    max_resolution: str | None = UNSET,
    max_frames: int | None = UNSET,
    max_steps: int | None = UNSET,
    paused: bool = UNSET,
    mention_replies: bool = UNSET,
    models: Sequence[str] | None = UNSET,
    now: datetime | None = None,
    action: str = "update_guild_settings",
) -> GuildSettings:
    """Change the given settings (None clears a cap, or the model list: every enabled model); audited as
    ``action``, in the server's scope, with each changed setting's value before and after."""
    models = _check_models(models)
    _check_cap("max_frames", max_frames)
    _check_cap("max_steps", max_steps)
    if max_resolution not in (None, UNSET):
        text = str(max_resolution).strip().lower()
        if not text.endswith("p") or not text[:-1].isdigit():
            raise ValueError(f"max_resolution must look like '512p', got {max_resolution!r}")
        max_resolution = text
    now = now or utcnow()
    row = await locked_row(session, GuildSettings, guild_id, guild_id=guild_id, paused=False, mention_replies=False)
    before: dict[str, Any] = {}
    after: dict[str, Any] = {}
    for name, value in (
        ("max_resolution", max_resolution),
        ("max_frames", max_frames),
        ("max_steps", max_steps),
        ("paused", paused),
        ("mention_replies", mention_replies),
        ("models", models),
    ):
        if value is not UNSET:
            before[name] = getattr(row, name)
            setattr(row, name, value)
            after[name] = value
    row.updated_by, row.updated_at = by, now
    await record_action(
        session,
        actor_id=by,
        action=action,
        guild_id=guild_id,
        detail={"before": before, "after": after},
        now=now,
    )
    return row


async def cancel_audited(session: AsyncSession, job: Job, *, by: int, bot_wide: bool) -> CancelOutcome:
    """Cancel ``job`` for an admin, audited as ``cancel_job`` with its scope (``bot`` for the operator)."""
    outcome = await cancel_job(session, job.id)
    await record_action(
        session,
        actor_id=by,
        action="cancel_job",
        target_user_id=job.user_id,
        guild_id=job.guild_id,
        job_id=job.id,
        detail={"outcome": outcome.value},
        scope=AUDIT_SCOPE_BOT if bot_wide else AUDIT_SCOPE_SERVER,
    )
    return outcome


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


REPORT_ACTIONS = ("delete", "ban", "dismiss")  # what an admin may do with a reported video


@dataclass(frozen=True)
class ReportSettled:
    """What :func:`settle_report` did: the job (as it was), how many open reports it closed, and whether its maker
    was newly banned."""

    job: Job
    reports: int
    banned: bool


async def settle_report(
    session: AsyncSession, job_id: int, action: str, *, by: int, guild_id: int | None
) -> ReportSettled | None:
    """An admin's answer to a reported video, in the caller's transaction: ``delete`` (its stored video and input
    image), ``ban`` (that too, and its maker banned: from server ``guild_id``, or bot-wide for ``guild_id=None``,
    the operator) or ``dismiss``; its open reports are resolved and the action audited with its scope. None when
    there is no such job in the scope (another server's job for a server admin). The channel message and the disk
    copy are the caller's to remove."""
    if action not in REPORT_ACTIONS:
        raise ValueError(f"action must be one of {REPORT_ACTIONS}, got {action!r}")
    job = await session.get(Job, job_id)
    if job is None or (guild_id is not None and job.guild_id != guild_id):
        return None
    banned = False
    if action in ("delete", "ban"):
        await forget_job_bytes(session, job_id)
    if action == "ban":
        reason = f"reported video #{job_id}"
        if guild_id is None:
            banned = (await ban_and_settle(session, job.user_id, reason=reason, by=by)).newly_banned
        else:
            banned, _ = await ban_from_guild(session, guild_id, job.user_id, reason=reason, by=by)
    resolution = {"delete": REPORT_DELETED, "ban": REPORT_BANNED, "dismiss": REPORT_DISMISSED}[action]
    count = await resolve_reports(session, job_id, by=by, resolution=resolution, guild_id=guild_id)
    return ReportSettled(job=job, reports=count, banned=banned)
