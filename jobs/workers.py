"""The worker registry: each worker process reports its state, GPU and current job here."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from jobs.models import Worker, WorkerState, utcnow


async def upsert_worker(
    session: AsyncSession,
    worker_id: str,
    *,
    host: str,
    pid: int,
    state: WorkerState | str,
    gpu_name: str | None,
    gpu_memory_bytes: int | None,
    current_job_id: int | None,
    now: datetime | None = None,
    job_done: bool = False,
) -> Worker:
    """Create or update a worker's row and stamp its heartbeat.

    A new ``pid`` for a known worker id counts as a restart (``restarts`` + 1, ``started_at`` reset).
    ``job_done=True`` adds one to ``jobs_done``.
    """
    if not worker_id or not isinstance(worker_id, str):
        raise ValueError(f"worker_id must be a non-empty string, got {worker_id!r}")
    if isinstance(pid, bool) or not isinstance(pid, int) or pid <= 0:
        raise ValueError(f"pid must be a positive integer, got {pid!r}")
    state = WorkerState(state)
    now = now or utcnow()
    row = await session.get(Worker, worker_id, with_for_update=True, populate_existing=True)
    if row is None:
        row = Worker(id=worker_id, restarts=0, jobs_done=0, started_at=now, pid=pid)
        session.add(row)
    elif row.pid != pid:
        row.restarts += 1
        row.started_at = now
    row.host, row.pid, row.state = host, pid, state
    row.gpu_name, row.gpu_memory_bytes, row.current_job_id = gpu_name, gpu_memory_bytes, current_job_id
    row.last_heartbeat_at = now
    if job_done:
        row.jobs_done += 1
    await session.flush()
    return row


async def list_workers(session: AsyncSession) -> list[Worker]:
    """All registered workers, most recent heartbeat first."""
    stmt = select(Worker).order_by(Worker.last_heartbeat_at.desc(), Worker.id).execution_options(populate_existing=True)
    return list((await session.scalars(stmt)).all())
