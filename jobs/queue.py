"""Reading the queue, and the one import point for the store's job functions.

The transitions live in ``jobs.transitions`` (the state machine), ``jobs.heartbeat`` (a running attempt's own
writes), ``jobs.admission`` (enqueue), ``jobs.rescue`` (dead workers, expired leases), ``jobs.control`` (pause,
resume, clear) and ``jobs.retention`` (pruning and deletion of stored bytes); positions and ETAs in
``jobs.positions``. This module holds the plain reads the bot and
workers need and re-exports the rest, so callers import from one place. Every function takes a session; the caller
owns the transaction.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from jobs.admission import DEFAULT_MAX_ATTEMPTS, NewJob, enqueue_job
from jobs.control import CLEARED_ERROR, clear_queue, is_paused, pause_queue, resume_queue
from jobs.errors import JobNotFound
from jobs.fencing import JOBS
from jobs.heartbeat import (
    PROGRESS_ASYNC_COMMIT_PG,
    ProgressAck,
    attempt_state,
    progress_parameters,
    progress_statement,
    record_note,
    report_progress,
)
from jobs.models import PENDING_STATUSES, TERMINAL_STATUSES, Job
from jobs.positions import WORKER_STALE_S, QueuePosition, queue_position, queue_positions
from jobs.rescue import (
    HARD_EXPIRY_FACTOR,
    HARD_EXPIRY_MIN_S,
    RESCUE_ERROR,
    hard_deadline,
    rescue_dead_workers,
    rescue_expired,
    rescue_workers,
)
from jobs.transitions import (
    CancelOutcome,
    cancel_job,
    claim_next_job,
    fail_job,
    finish_cancelled,
    finish_job,
    mark_delivered,
    release_job,
)

__all__ = [
    "CLEARED_ERROR", "DEFAULT_MAX_ATTEMPTS", "HARD_EXPIRY_FACTOR", "HARD_EXPIRY_MIN_S", "JOBS",
    "PROGRESS_ASYNC_COMMIT_PG", "RESCUE_ERROR", "WORKER_STALE_S", "CancelOutcome", "NewJob",
    "ProgressAck", "QueuePosition", "attempt_state", "cancel_job", "claim_next_job", "clear_queue", "delivered_among",
    "enqueue_job", "fail_job", "find_job", "finish_cancelled", "finish_job", "get_job", "hard_deadline", "is_paused",
    "mark_delivered", "pause_queue", "pending_count", "pending_with_status_message", "progress_parameters",
    "progress_statement", "queue_position", "queue_positions", "record_note", "release_job", "report_progress",
    "rescue_dead_workers", "rescue_expired", "rescue_workers", "resume_queue", "set_status_message",
    "undelivered_jobs", "user_jobs",
]


async def get_job(session: AsyncSession, job_id: int) -> Job:
    """The job with this id (fresh from the database); raises JobNotFound."""
    job = await session.get(Job, job_id, populate_existing=True)
    if job is None:
        raise JobNotFound(job_id)
    return job


async def find_job(session: AsyncSession, job_id: int) -> Job | None:
    """The job with this id, fresh from the database, or None."""
    return await session.get(Job, job_id, populate_existing=True)


async def delivered_among(session: AsyncSession, job_ids: Sequence[int]) -> set[int]:
    """Which of these jobs are recorded as delivered."""
    if not job_ids:
        return set()
    return set(await session.scalars(select(Job.id).where(Job.id.in_(list(job_ids)), Job.delivered_at.is_not(None))))


async def pending_with_status_message(session: AsyncSession) -> list[Job]:
    """Queued and running jobs that show a status message (the bot keeps those messages current)."""
    stmt = (select(Job).where(Job.status.in_(PENDING_STATUSES), Job.status_message_id.is_not(None))
            .order_by(Job.id).execution_options(populate_existing=True))
    return list((await session.scalars(stmt)).all())


async def undelivered_jobs(session: AsyncSession, *, limit: int = 100) -> list[Job]:
    """Finished jobs (succeeded, failed or cancelled) the bot has not yet posted or announced, oldest first."""
    stmt = (
        select(Job)
        .where(Job.status.in_(TERMINAL_STATUSES), Job.delivered_at.is_(None))
        .order_by(Job.finished_at, Job.id)
        .limit(limit)
        .execution_options(populate_existing=True)
    )
    return list((await session.scalars(stmt)).all())


async def pending_count(session: AsyncSession) -> int:
    """How many jobs are queued or running (anywhere)."""
    return int(await session.scalar(select(func.count(Job.id)).where(Job.status.in_(PENDING_STATUSES))) or 0)


async def user_jobs(
    session: AsyncSession, user_id: int, *, pending_only: bool = True, limit: int = 25
) -> list[Job]:
    """A user's jobs, newest first (only queued and running ones by default)."""
    stmt = select(Job).where(Job.user_id == user_id).order_by(Job.id.desc()).limit(limit)
    if pending_only:
        stmt = stmt.where(Job.status.in_(PENDING_STATUSES))
    return list((await session.scalars(stmt)).all())


async def set_status_message(session: AsyncSession, job_id: int, *, status_message_id: int) -> bool:
    """Remember the Discord message that shows this job's status (for edits after a restart)."""
    row = (
        await session.execute(
            update(JOBS)
            .where(JOBS.c.id == job_id)
            .values(status_message_id=status_message_id)
            .returning(JOBS.c.id)
        )
    ).first()
    return row is not None
