"""Where every pending job stands: its place in the claim order and an estimate of when its video is ready.

``queue_positions`` answers for the whole queue in two statements (one window query over the queued jobs in
``jobs.models.CLAIM_ORDER``, one read of the running ones), however long the queue: the bot's monitor and ``/queue``
use it instead of a query per job.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from jobs.errors import JobNotFound
from jobs.models import CLAIM_ORDER, Job, JobStatus, Worker, WorkerState
from jobs.fencing import checked_now

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
    window = {"order_by": CLAIM_ORDER}
    queued = (await session.execute(
        select(
            Job.id,
            Job.cost_estimate,
            func.row_number().over(**window).label("position"),
            func.sum(Job.cost_estimate).over(**window, rows=(None, 0)).label("through"),
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
