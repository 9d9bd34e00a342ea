"""The operators' switches on the queue: global pause and resume, clearing queued jobs (audited)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from jobs.audit import record_action
from jobs.models import QUEUE_STATE_ROW_ID, JobPhase, JobStatus, LedgerKind, QueueState
from jobs.quota import add_ledger
from jobs.transitions import JOBS, checked_now


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
    """Pause: workers claim nothing and new requests are refused; running jobs finish. False if already paused."""
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
