"""Reading the queue: single jobs, the bot's delivery and status-message reads, and where every pending job stands.

``queue_positions`` answers for the whole queue in two statements (one window query over the queued jobs in
``jobs.models.CLAIM_ORDER``, one read of the running ones), however long the queue: the bot's monitor and ``/queue``
use it instead of a query per job. Nothing here changes a job's state: the transitions live in ``jobs.transitions``
(the state machine), ``jobs.progress`` (a running attempt's own writes), ``jobs.admission`` (enqueue),
``jobs.maintenance`` (dead workers, expired leases), ``jobs.control`` (pause, resume, clear) and ``jobs.retention``
(stored bytes). Every function takes a session; the caller owns the transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from jobs.errors import JobNotFound
from jobs.models import CLAIM_ORDER, PENDING_STATUSES, TERMINAL_STATUSES, Job, JobStatus, Worker
from jobs.transitions import JOBS, checked_now
from jobs.workers import live_worker


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
    stmt = (
        select(Job)
        .where(Job.status.in_(PENDING_STATUSES), Job.status_message_id.is_not(None))
        .order_by(Job.id)
        .execution_options(populate_existing=True)
    )
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


async def pending_count(session: AsyncSession, *, models: Sequence[str] | None = None) -> int:
    """How many jobs are queued or running (anywhere), only for ``models`` when given."""
    stmt = select(func.count(Job.id)).where(Job.status.in_(PENDING_STATUSES))
    if models is not None:
        stmt = stmt.where(Job.model.in_(list(models)))
    return int(await session.scalar(stmt) or 0)


async def user_jobs(session: AsyncSession, user_id: int, *, pending_only: bool = True, limit: int = 25) -> list[Job]:
    """A user's jobs, newest first (only queued and running ones by default)."""
    stmt = select(Job).where(Job.user_id == user_id).order_by(Job.id.desc()).limit(limit)
    if pending_only:
        stmt = stmt.where(Job.status.in_(PENDING_STATUSES))
    return list((await session.scalars(stmt)).all())


async def set_status_message(session: AsyncSession, job_id: int, *, status_message_id: int) -> bool:
    """Remember the Discord message that shows this job's status (for edits after a restart)."""
    row = (
        await session.execute(
            update(JOBS).where(JOBS.c.id == job_id).values(status_message_id=status_message_id).returning(JOBS.c.id)
        )
    ).first()
    return row is not None


DEFAULT_SWITCH_SECONDS = 60.0
"""Seconds one model switch (unload, then load another from local disk) adds to an ETA before any was measured."""
WORKER_STALE_S = 120.0
"""A worker whose heartbeat is older than this does not count towards ETA parallelism."""


@dataclass(frozen=True)
class QueuePosition:
    """position: 1 = next to run, 0 = running, None = finished. eta_seconds: until the video is ready."""

    position: int | None
    eta_seconds: float | None


def _remaining_of_running(cost: float, step: int, total: int, started_at: datetime | None, now: datetime) -> float:
    if total > 0 and step > 0:
        return max(0.0, cost * (1.0 - step / total))
    if started_at is not None:
        return max(0.0, cost - (now - started_at).total_seconds())
    return cost


async def queue_positions(session: AsyncSession, *, now: datetime | None = None) -> dict[int, QueuePosition]:
    """Every pending job's place: queued ones by 1-based position in claim order with an ETA, running ones at
    position 0 with the time they have left.

    A queued job's ETA is the work ahead of it (the running jobs' remaining time, the queued jobs' costs and a
    model switch wherever the model changes from one job to the next, starting from the model a live worker
    holds) spread over the live workers, plus its own cost. A switch counts the workers' measured mean switch time
    (``DEFAULT_SWITCH_SECONDS`` before any was measured). A job for a model no live worker may load has no ETA and
    delays nobody (no claim takes it). Three statements whatever the queue's length: the queued jobs in
    ``CLAIM_ORDER`` (the order ``claim_next_job`` uses), the running ones, the live workers.
    """
    now = checked_now(now)
    queued = (
        await session.execute(
            select(Job.id, Job.cost_estimate, Job.model).where(Job.status == JobStatus.QUEUED).order_by(*CLAIM_ORDER)
        )
    ).all()
    running = (
        await session.execute(
            select(Job.id, Job.cost_estimate, Job.progress_step, Job.progress_total, Job.started_at).where(
                Job.status == JobStatus.RUNNING
            )
        )
    ).all()
    workers = (
        await session.execute(
            select(Worker.loaded_model, Worker.loadable_models, Worker.switches, Worker.switch_seconds).where(
                *live_worker(now, WORKER_STALE_S)
            )
        )
    ).all()
    left = {
        r.id: _remaining_of_running(r.cost_estimate, r.progress_step, r.progress_total, r.started_at, now)
        for r in running
    }
    places = {job_id: QueuePosition(0, remaining) for job_id, remaining in left.items()}
    parallel = max(1, len(workers), len(running))
    switches = sum(w.switches or 0 for w in workers)
    switch_s = sum(w.switch_seconds or 0.0 for w in workers) / switches if switches else DEFAULT_SWITCH_SECONDS
    loadable = {key for w in workers for key in (w.loadable_models or [])} or None  # None: not known per model
    held = next((w.loaded_model for w in workers if w.loaded_model), None)
    ahead = sum(left.values())
    for position, row in enumerate(queued, start=1):
        if loadable is not None and row.model not in loadable:
            places[row.id] = QueuePosition(position, None)
            continue
        if held is not None and row.model != held:
            ahead += switch_s
        held = row.model
        places[row.id] = QueuePosition(position, ahead / parallel + row.cost_estimate)
        ahead += row.cost_estimate
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
