"""The worker registry: each worker process keeps a row here (host, pid, state, model, GPU, current job) and
stamps its heartbeat every few seconds; rescuers read it to tell a dead worker's jobs from a live one's."""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from jobs.models import Worker, WorkerState, utcnow
from jobs.rescue import rescue_workers

WORKER_DEAD_AFTER_S = 15.0
"""Seconds without a heartbeat after which a worker counts as dead and its running job is requeued."""


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
    model: str | None = None,
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
    if model is not None:
        row.model = model
    row.last_heartbeat_at = now
    if job_done:
        row.jobs_done += 1
    await session.flush()
    return row


async def register_worker(
    session: AsyncSession, worker_id: str, *, host: str, pid: int, model: str, now: datetime | None = None
) -> list[int]:
    """A worker process starts: any job still running under its id belonged to a previous process with that id
    (which is gone, or this one could not have the id), so it is requeued at once; then the row is written
    (state ``loading``). Returns the ids requeued."""
    previous = await session.scalar(select(Worker.pid).where(Worker.id == worker_id))
    rescued: list[int] = []
    if previous is not None:
        rescued = await rescue_workers(session, [worker_id], why=f"worker process {previous} replaced", now=now)
    await upsert_worker(session, worker_id, host=host, pid=pid, state=WorkerState.LOADING, gpu_name=None,
                        gpu_memory_bytes=None, current_job_id=None, model=model, now=now)
    return rescued


async def heartbeat(
    session: AsyncSession, worker_id: str, *, pid: int, state: WorkerState | str, current_job_id: int | None,
    now: datetime | None = None,
) -> bool:
    """Stamp the heartbeat of this process's row (fenced by pid: a replaced process cannot keep a row alive).
    False when the row is not this process's any more."""
    row = (await session.execute(
        update(Worker).where(Worker.id == worker_id, Worker.pid == pid)
        .values(last_heartbeat_at=now or utcnow(), state=WorkerState(state), current_job_id=current_job_id)
        .returning(Worker.id).execution_options(synchronize_session=False)
    )).first()
    return row is not None


async def rescue_dead_on_host(
    session: AsyncSession, host: str, *, alive: Callable[[int], bool], now: datetime | None = None
) -> list[int]:
    """Requeue at once the running jobs of this host's workers whose process is gone (``alive(pid)`` is False);
    a supervisor or bot runs it when it starts. Returns the ids requeued."""
    rows = (await session.execute(
        select(Worker.id, Worker.pid).where(Worker.host == host, Worker.state != WorkerState.STOPPED)
    )).all()
    dead = [row.id for row in rows if not alive(row.pid)]
    return await rescue_workers(session, dead, why="worker process gone", now=now)


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid runs on this machine (a zombie counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc: the signal check said it exists
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


async def find_worker(session: AsyncSession, worker_id: str) -> Worker | None:
    """One worker's registry row, fresh from the database."""
    return await session.get(Worker, worker_id, populate_existing=True)


async def list_workers(session: AsyncSession) -> list[Worker]:
    """All registered workers, most recent heartbeat first."""
    stmt = select(Worker).order_by(Worker.last_heartbeat_at.desc(), Worker.id).execution_options(populate_existing=True)
    return list((await session.scalars(stmt)).all())
