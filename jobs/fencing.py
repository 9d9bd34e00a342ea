"""The fenced-write primitives every job transition shares: the table, the clock check, the lease and the fence.

Every write by a worker (and by a rescuer acting for a dead one) names the job, the attempt it was given, the worker
and ``status='running'`` (``fenced``); ``attempt`` never decreases, so a writer presumed dead can never write into a
later attempt. ``close_running`` is the one fenced move out of running that finishing, failing, cancelling and
rescuing share.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, update
from sqlalchemy.ext.asyncio import AsyncSession

from jobs.models import Job, JobPhase, JobStatus, utcnow

JOBS = Job.__table__
"""Hot-path writes use Core statements on the table (no ORM bookkeeping): the caller's session still runs them."""


def checked_now(now: datetime | None) -> datetime:
    """``now``, or the current UTC time when None; a naive datetime raises ValueError."""
    if now is None:
        return utcnow()
    if now.tzinfo is None:
        raise ValueError(f"now must be timezone-aware, got naive {now!r}")
    return now


def check_lease(lease_seconds: float) -> timedelta:
    """The lease as a timedelta; a lease that is not a positive number raises ValueError."""
    if not isinstance(lease_seconds, (int, float)) or lease_seconds <= 0:
        raise ValueError(f"lease_seconds must be > 0, got {lease_seconds!r}")
    return timedelta(seconds=float(lease_seconds))


def fenced(job_id: int, attempt: int, worker_id: str) -> tuple[ColumnElement[bool], ...]:
    """WHERE clause of every worker write: this job, this attempt, this worker, still running. ``attempt`` never
    decreases, so a stale writer can never match a later claim."""
    return (JOBS.c.id == job_id, JOBS.c.attempt == attempt, JOBS.c.worker_id == worker_id,
            JOBS.c.status == JobStatus.RUNNING)


async def close_running(
    session: AsyncSession, job_id: int, attempt: int, worker_id: str, values: dict[str, Any]
) -> tuple[int, float] | None:
    """Fenced move out of running; returns (user_id, cost_estimate) or None if this attempt lost the job."""
    stmt = (
        update(JOBS)
        .where(*fenced(job_id, attempt, worker_id))
        .values(**values)
        .returning(JOBS.c.user_id, JOBS.c.cost_estimate)
    )
    row = (await session.execute(stmt)).first()
    return None if row is None else (int(row.user_id), float(row.cost_estimate))


def requeue_values(detail: str | None = None) -> dict[str, Any]:
    """The column values that put a running job back in the queue (with ``detail`` as its note, if given)."""
    values: dict[str, Any] = {"status": JobStatus.QUEUED, "worker_id": None, "lease_expires_at": None,
                              "progress_step": 0, "phase": JobPhase.QUEUED}
    if detail is not None:
        values["error_detail"] = detail
    return values
