"""The queue's switches and the server scope's powers: pause and resume (bot-wide and per server), clearing
queued jobs, and the users a server shut out. Every change is audited in the caller's transaction.

- **Pause holds.** Neither the bot-wide switch (``queue_state``, the operator's) nor a server's switch
  (``guild_settings.paused``, that server's admins') refuses a request: ``jobs.transitions.claimable`` keeps the worker
  from claiming a held job until its switch is off. Running jobs finish.
- **Server bans.** A server's admins can stop a user from making videos *in that server* (:func:`ban_from_guild`);
  :func:`refuse_if_banned_here` is checked by admission; a bot-wide ban is :func:`jobs.quota.ban_user`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from jobs.audit import record_action
from jobs.errors import Banned
from jobs.models import (
    AUDIT_SCOPE_SERVER,
    QUEUE_STATE_ROW_ID,
    GuildBan,
    GuildSettings,
    Job,
    JobPhase,
    JobStatus,
    LedgerKind,
    QueueState,
    utcnow,
)
from jobs.quota import add_ledger
from jobs.transitions import JOBS, CancelOutcome, cancel_job, checked_now

CLEARED_ERROR = "An admin cleared the queue; your GPU time was refunded."


async def is_paused(session: AsyncSession) -> bool:
    """Whether the global queue is paused."""
    return bool(await session.scalar(select(QueueState.paused).where(QueueState.id == QUEUE_STATE_ROW_ID)))


async def _set_paused(session: AsyncSession, paused: bool, *, by: int | None, reason: str | None, now: datetime) -> bool:
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
    stmt = (
        update(JOBS)
        .where(JOBS.c.status == JobStatus.QUEUED)
        .values(status=JobStatus.CANCELLED, finished_at=now, phase=JobPhase.CANCELLED, error=CLEARED_ERROR)
        .returning(JOBS.c.id, JOBS.c.user_id, JOBS.c.cost_estimate)
    )
    if guild_id is not None:
        stmt = stmt.where(JOBS.c.guild_id == guild_id)
    rows = (await session.execute(stmt)).all()
    for r in rows:
        await add_ledger(session, user_id=r.user_id, job_id=r.id, kind=LedgerKind.REFUND, amount=r.cost_estimate, now=now)
    ids = sorted(r.id for r in rows)
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
    row = await session.get(GuildSettings, guild_id, with_for_update=True, populate_existing=True)
    if row is None:
        row = GuildSettings(guild_id=guild_id, paused=False, mention_replies=False)
        session.add(row)
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
    await record_action(
        session,
        actor_id=by,
        action="ban_from_server",
        target_user_id=user_id,
        guild_id=guild_id,
        detail={"reason": reason, "cancelled": cancelled},
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
        session, actor_id=by, action="unban_from_server", target_user_id=user_id, guild_id=guild_id, now=now,
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
        guild_paused = bool(await session.scalar(select(GuildSettings.paused).where(GuildSettings.guild_id == guild_id)))
    return PauseState(bot_paused=bool(row and row.paused), bot_reason=row.reason if row else None,
                      guild_paused=guild_paused)
