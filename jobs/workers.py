"""The worker registry: each worker process keeps a row here (host, pid, state, model, GPU, current job) and
stamps its heartbeat every few seconds; rescuers read it to tell a dead worker's jobs from a live one's."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import ColumnElement, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from generator.startfailure import one_line
from jobs.db import locked_row
from jobs.maintenance import rescue_workers
from jobs.models import Worker, WorkerState, utcnow
from jobs.stats import ModelDownload, WorkerInfo, worker_infos

WORKER_DEAD_AFTER_S = 15.0
"""Seconds without a heartbeat after which a worker counts as dead and its running job is requeued."""
READY_STATES = frozenset({WorkerState.IDLE, WorkerState.BUSY})
"""A worker in one of these states has started: its start-failure record is cleared."""
LIVE_STATES = frozenset({WorkerState.STARTING, WorkerState.LOADING, WorkerState.IDLE, WorkerState.BUSY})
"""A worker in one of these states, with a fresh heartbeat, is alive or about to be."""


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
    failure_reason: str | None = None,
    loadable_models: Sequence[str] | None = None,
    loaded_model: str | None = None,
) -> Worker:
    """Create or update a worker's row and stamp its heartbeat.

    A new ``pid`` for a known worker id counts as a restart (``restarts`` + 1, ``started_at`` reset).
    ``job_done=True`` adds one to ``jobs_done``. ``failure_reason`` records why the process could not start;
    reaching idle or busy clears it (and ``unavailable_since``). ``loadable_models`` (when given) are the model keys
    it may load; ``loaded_model`` the one it holds (None: none).
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
    if loadable_models is not None:
        row.loadable_models = list(loadable_models)
    row.loaded_model = loaded_model
    row.last_heartbeat_at = now
    if job_done:
        row.jobs_done += 1
    if failure_reason is not None:
        row.failure_reason = one_line(failure_reason)
    elif state in READY_STATES:
        row.failure_reason = None
        row.unavailable_since = None
    await session.flush()
    return row


async def record_start_failure(
    session: AsyncSession,
    worker_id: str,
    *,
    host: str,
    pid: int,
    reason: str,
    unavailable: bool,
    now: datetime | None = None,
) -> Worker:
    """A supervisor's child could not start: mark the row crashed with ``reason`` (one line), creating it when
    the child died before registering (a bad setting, say). ``pid`` is the supervisor's own (alive while it
    retries; :func:`forget_stale_failures` tells a stale record by it). ``unavailable``: the supervisor now retries
    slowly; ``unavailable_since`` keeps the time this began. The heartbeat is not stamped (the process is gone)."""
    now = now or utcnow()
    row = await locked_row(
        session,
        Worker,
        worker_id,
        id=worker_id,
        host=host,
        pid=pid,
        restarts=0,
        jobs_done=0,
        started_at=now,
        last_heartbeat_at=now,
    )
    row.state = WorkerState.CRASHED
    row.pid = pid
    row.current_job_id = None
    row.failure_reason = one_line(reason)
    if unavailable and row.unavailable_since is None:
        row.unavailable_since = now
    elif not unavailable:
        row.unavailable_since = None
    await session.flush()
    return row


async def forget_stale_failures(session: AsyncSession, host: str, *, alive: Callable[[int], bool]) -> list[str]:
    """This host's failed-start records whose process (the supervisor, or a worker run on its own) is gone are
    stale: mark those rows stopped, so a new start here is not reported unavailable for an old reason. Returns the
    worker ids."""
    rows = (
        await session.execute(
            select(Worker.id, Worker.pid).where(
                Worker.host == host, Worker.failure_reason.is_not(None), Worker.state == WorkerState.CRASHED
            )
        )
    ).all()
    stale = [row.id for row in rows if not alive(row.pid)]
    for worker_id in stale:
        await mark_stopped(session, worker_id)
    return stale


async def mark_stopped(session: AsyncSession, worker_id: str) -> bool:
    """The supervisor stops while no child of it runs (e.g. it was unavailable): its row says stopped, and the
    failure record is cleared (a stopped worker claims nothing and reports nothing). False when it has no row."""
    result = (
        await session.execute(
            update(Worker)
            .where(Worker.id == worker_id)
            .values(state=WorkerState.STOPPED, current_job_id=None, failure_reason=None, unavailable_since=None)
            .returning(Worker.id)
            .execution_options(synchronize_session=False)
        )
    ).first()
    return result is not None


async def register_worker(
    session: AsyncSession,
    worker_id: str,
    *,
    host: str,
    pid: int,
    model: str,
    now: datetime | None = None,
    loadable_models: Sequence[str] = (),
) -> list[int]:
    """A worker process starts: any job still running under its id belonged to a previous process with that id
    (which is gone, or this one could not have the id), so it is requeued at once; then the row is written
    (state ``loading``, no download under way). Returns the ids requeued."""
    previous = await session.scalar(select(Worker.pid).where(Worker.id == worker_id))
    rescued: list[int] = []
    if previous is not None:
        rescued = await rescue_workers(session, [worker_id], why=f"worker process {previous} replaced", now=now)
    await upsert_worker(
        session,
        worker_id,
        host=host,
        pid=pid,
        state=WorkerState.LOADING,
        gpu_name=None,
        gpu_memory_bytes=None,
        current_job_id=None,
        model=model,
        now=now,
        loadable_models=loadable_models,
    )
    await record_download(session, worker_id, model=None)  # a previous process's download is not this one's
    return rescued


async def record_switch(session: AsyncSession, worker_id: str, *, seconds: float) -> None:
    """One model switch of this worker (unload one model, load another) that took ``seconds``: counted in its row
    (the /metrics totals)."""
    if seconds < 0:
        raise ValueError(f"seconds must be >= 0, got {seconds!r}")
    await session.execute(
        update(Worker)
        .where(Worker.id == worker_id)
        .values(switches=Worker.switches + 1, switch_seconds=Worker.switch_seconds + seconds)
        .execution_options(synchronize_session=False)
    )


async def record_download(
    session: AsyncSession, worker_id: str, *, model: str | None, done_bytes: int = 0, total_bytes: int = 0
) -> None:
    """This worker is downloading ``model``'s files: ``done_bytes`` of ``total_bytes`` so far; ``model`` None: the
    download is over (finished or failed), and the row says nothing about one any more."""
    if model is not None and (done_bytes < 0 or total_bytes < 0):
        raise ValueError(f"download bytes must be >= 0, got {done_bytes!r} of {total_bytes!r}")
    values = (
        {"download_model": None, "download_done_bytes": None, "download_total_bytes": None}
        if model is None
        else {"download_model": model, "download_done_bytes": done_bytes, "download_total_bytes": total_bytes}
    )
    await session.execute(
        update(Worker).where(Worker.id == worker_id).values(**values).execution_options(synchronize_session=False)
    )


def live_worker(now: datetime, dead_after_s: float) -> tuple[ColumnElement[bool], ...]:
    """WHERE conditions of a live worker: a running state and a heartbeat within ``dead_after_s``."""
    return (Worker.state.in_(LIVE_STATES), Worker.last_heartbeat_at > now - timedelta(seconds=dead_after_s))


async def model_downloads(
    session: AsyncSession, *, dead_after_s: float = WORKER_DEAD_AFTER_S, now: datetime | None = None
) -> dict[str, ModelDownload]:
    """The downloads live workers have under way, by model key (the furthest one where two workers fetch the same
    model)."""
    now = now or utcnow()
    rows = (
        await session.execute(
            select(Worker.download_model, Worker.download_done_bytes, Worker.download_total_bytes).where(
                Worker.download_model.is_not(None), *live_worker(now, dead_after_s)
            )
        )
    ).all()
    found: dict[str, ModelDownload] = {}
    for model, done, total in rows:
        if model is None:
            continue
        download = ModelDownload(model, done or 0, total or 0)
        if model not in found or download.fraction > found[model].fraction:
            found[model] = download
    return found


async def loadable_by_live_workers(
    session: AsyncSession, *, dead_after_s: float, now: datetime | None = None
) -> set[str] | None:
    """The model keys some live worker may load; None while no live worker has said (none alive, or only workers
    from before model choice): then nothing can be told per model."""
    now = now or utcnow()
    rows = (
        (await session.execute(select(Worker.loadable_models).where(*live_worker(now, dead_after_s)))).scalars().all()
    )
    lists = [list(models or []) for models in rows]
    if not any(lists):
        return None
    return {key for models in lists for key in models}


async def heartbeat(
    session: AsyncSession,
    worker_id: str,
    *,
    pid: int,
    state: WorkerState | str,
    current_job_id: int | None,
    now: datetime | None = None,
) -> bool:
    """Stamp the heartbeat of this process's row (fenced by pid: a replaced process cannot keep a row alive).
    False when the row is not this process's any more."""
    row = (
        await session.execute(
            update(Worker)
            .where(Worker.id == worker_id, Worker.pid == pid)
            .values(last_heartbeat_at=now or utcnow(), state=WorkerState(state), current_job_id=current_job_id)
            .returning(Worker.id)
            .execution_options(synchronize_session=False)
        )
    ).first()
    return row is not None


async def rescue_dead_on_host(
    session: AsyncSession, host: str, *, alive: Callable[[int], bool], now: datetime | None = None
) -> list[int]:
    """Requeue at once the running jobs of this host's workers whose process is gone (``alive(pid)`` is False);
    a supervisor or bot runs it when it starts. Returns the ids requeued."""
    rows = (
        await session.execute(
            select(Worker.id, Worker.pid).where(Worker.host == host, Worker.state != WorkerState.STOPPED)
        )
    ).all()
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


def unavailable_reason(workers: Iterable[WorkerInfo], *, now: datetime, dead_after_s: float) -> str | None:
    """Why video generation is unavailable, from the registry (``jobs.stats.worker_infos``), or None.

    None while any worker is alive (a live state and a heartbeat within ``dead_after_s``) and not retrying after
    failed starts; otherwise the reason of the most recent worker that recorded one. With no worker at all and no
    failure recorded, nothing is known to be wrong (external workers may simply not be started yet): None.
    """
    failed: list[WorkerInfo] = []
    for worker in workers:
        fresh = (now - worker.last_heartbeat_at).total_seconds() <= dead_after_s
        if worker.state in LIVE_STATES and fresh and worker.unavailable_since is None:
            return None
        if worker.failure_reason:
            failed.append(worker)
    if not failed:
        return None
    return max(failed, key=lambda w: w.last_heartbeat_at).failure_reason


async def generation_unavailable(
    session: AsyncSession, *, dead_after_s: float, now: datetime | None = None
) -> str | None:
    """:func:`unavailable_reason` over the registry read in ``session``."""
    now = now or utcnow()
    infos = await worker_infos(session, now=now, stale_after_seconds=dead_after_s)
    return unavailable_reason(infos, now=now, dead_after_s=dead_after_s)
