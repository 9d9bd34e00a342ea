"""Reading the queue: single jobs, the bot's delivery and status-message reads, and where every pending job stands.

``queue_positions`` answers for the whole queue in two statements (one window query over the queued jobs in
``jobs.models.CLAIM_ORDER``, one read of the running ones), however long the queue: the bot's monitor and ``/queue``
use it instead of a query per job. Nothing here changes a job's state: the transitions live in ``jobs.transitions``
(the state machine), ``jobs.heartbeat`` (a running attempt's own writes), ``jobs.admission`` (enqueue),
``jobs.maintenance`` (dead workers, expired leases), ``jobs.control`` (pause, resume, clear) and ``jobs.retention``
(stored bytes). Every function takes a session; the caller owns the transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from jobs.errors import JobNotFound
from jobs.models import CLAIM_ORDER, PENDING_STATUSES, TERMINAL_STATUSES, Job, JobStatus, Worker, WorkerState
from jobs.transitions import JOBS, checked_now


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



WORKER_STALE_S = 120.0
"""A worker whose heartbeat is older than this does not count towards ETA parallelism."""


@dataclass(frozen=True)
class QueuePosition:
    """position: 1 = next to run, 0 = running, None = finished. eta_seconds: until the video is ready."""

    position: int | None
    eta_seconds: float | None


def _active_workers_count(now: datetime) -> Any:
    """A scalar subquery: workers that heartbeat recently and can run jobs (ETA parallelism)."""
    return (
        select(func.count(Worker.id)).where(
            Worker.last_heartbeat_at > now - timedelta(seconds=WORKER_STALE_S),
            Worker.state.in_([WorkerState.IDLE, WorkerState.BUSY, WorkerState.LOADING, WorkerState.STARTING]),
        ).scalar_subquery()
    )


def _remaining_of_running(cost: float, step: int, total: int, started_at: datetime | None, now: datetime) -> float:
    if total > 0 and step > 0:
        return max(0.0, cost * (1.0 - step / total))
    if started_at is not None:
        return max(0.0, cost - (now - started_at).total_seconds())
    return cost


async def queue_positions(session: AsyncSession, *, now: datetime | None = None) -> dict[int, QueuePosition]:
    """Every pending job's place: queued ones by 1-based position in claim order with an ETA (the work ahead
    spread over the live workers, plus their own cost), running ones at position 0 with the time they have left.

    Two statements whatever the queue's length: one window query numbers every queued job and sums the cost
    ahead of it (``CLAIM_ORDER``, the same order ``claim_next_job`` uses), one reads the running jobs.
    """
    now = checked_now(now)
    queued = (await session.execute(
        select(
            Job.id,
            Job.cost_estimate,
            func.row_number().over(order_by=CLAIM_ORDER).label("position"),
            func.sum(Job.cost_estimate).over(order_by=CLAIM_ORDER, rows=(None, 0)).label("through"),
            _active_workers_count(now).label("workers"),
        ).where(Job.status == JobStatus.QUEUED)
    )).all()
    running = (await session.execute(
        select(Job.id, Job.cost_estimate, Job.progress_step, Job.progress_total, Job.started_at)
        .where(Job.status == JobStatus.RUNNING)
    )).all()
    left = {r.id: _remaining_of_running(r.cost_estimate, r.progress_step, r.progress_total, r.started_at, now)
            for r in running}
    places = {job_id: QueuePosition(0, remaining) for job_id, remaining in left.items()}
    running_left = sum(left.values())
    for row in queued:
        parallel = max(1, int(row.workers or 0), len(running))
        ahead_cost = float(row.through) - float(row.cost_estimate)
        places[row.id] = QueuePosition(int(row.position), (ahead_cost + running_left) / parallel + row.cost_estimate)
    return places


async def queue_position(session: AsyncSession, job_id: int, *, now: datetime | None = None) -> QueuePosition:
    """Where one job stands: 1-based position among queued jobs (0 when running, None when finished) and an
    estimate of the seconds until its video is ready (see ``queue_positions``). Raises JobNotFound."""
    places = await queue_positions(session, now=now)
    if job_id in places:
        return places[job_id]
    if await session.scalar(select(Job.id).where(Job.id == job_id)) is None:
        raise JobNotFound(job_id)
    return QueuePosition(None, None)
