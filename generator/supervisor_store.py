"""What the worker supervisor reads and writes in the job store (each call its own short transaction).

Releasing a dead child's jobs at once (its worker id is the supervisor's alone, so this is safe), requeueing the
jobs of this host's dead worker processes when starting, reading the child's registry row, and recording a failed
start (or a stop while no child runs) in that row, where the bot and ``/healthz`` read it.
"""

from __future__ import annotations

import logging
import socket
from typing import TYPE_CHECKING

from jobs.db import begin_read_only, make_sessionmaker
from jobs.maintenance import rescue_workers
from jobs.workers import (
    find_worker,
    forget_stale_failures,
    mark_stopped,
    pid_alive,
    record_start_failure,
    rescue_dead_on_host,
)

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

    from jobs.models import Worker

log = logging.getLogger("generator.supervisor")


async def release_leases(engine: AsyncEngine, worker_id: str) -> list[int]:
    """The child is dead: requeue the jobs it held now; never raises (the heartbeat rescuers and the lease then
    bring the jobs back)."""
    try:
        async with make_sessionmaker(engine)() as session, session.begin():
            rescued = await rescue_workers(session, [worker_id], why="worker process exited")
    except Exception:
        log.exception("could not requeue the dead worker's jobs")
        return []
    if rescued:
        log.info("requeued the job(s) held by the dead worker: %s", rescued)
    return rescued


async def rescue_own_host(engine: AsyncEngine) -> list[int]:
    """Requeue the running jobs of this host's workers whose process is gone, and forget their failed-start
    records (run once when starting)."""
    async with make_sessionmaker(engine)() as session, session.begin():
        rescued = await rescue_dead_on_host(session, socket.gethostname(), alive=pid_alive)
        forgotten = await forget_stale_failures(session, socket.gethostname(), alive=pid_alive)
    if forgotten:
        log.info("forgot the failed starts of this host's dead workers: %s", forgotten)
    if rescued:
        log.warning("requeued jobs of this host's dead worker processes: %s", rescued)
    return rescued


async def read_row(engine: AsyncEngine, worker_id: str) -> Worker | None:
    """The child's registry row, fresh."""
    async with make_sessionmaker(engine)() as session:
        await begin_read_only(session)
        return await find_worker(session, worker_id)


async def record_failure(engine: AsyncEngine, worker_id: str, *, pid: int, reason: str, unavailable: bool) -> None:
    """Write a failed start to the registry row (``pid``: the supervisor's); never raises (the log already holds
    the reason)."""
    try:
        async with make_sessionmaker(engine)() as session, session.begin():
            await record_start_failure(
                session, worker_id, host=socket.gethostname(), pid=pid, reason=reason, unavailable=unavailable
            )
    except Exception as exc:  # noqa: BLE001 - see above
        log.warning("could not record the failed start in the worker registry: %s", exc)


async def record_stopped(engine: AsyncEngine, worker_id: str) -> None:
    """The supervisor stops while no child runs: the row says stopped; never raises."""
    try:
        async with make_sessionmaker(engine)() as session, session.begin():
            await mark_stopped(session, worker_id)
    except Exception as exc:  # noqa: BLE001 - best effort on the way out
        log.warning("could not mark the worker stopped: %s", exc)
