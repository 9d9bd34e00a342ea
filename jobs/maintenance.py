"""Maintenance: running jobs whose worker is gone go back to the queue, and old stored bytes go.

:func:`maintain` is the one maintenance pass every mode runs: the bot's job monitor and the page-only app every
``RESCUE_INTERVAL_S`` through :class:`Maintenance` (retention at most every RETENTION_INTERVAL_SECONDS),
``python -m bot prune`` once, and every worker every ``I2V_RESCUE_INTERVAL_S`` (the rescue alone). It rescues,
then prunes the stored image and video of delivered jobs that finished more than RETENTION_DAYS ago
(``jobs.retention.prune_finished``) with their disk copies (``jobs.copies``).

Three ways a worker is known to be gone, fastest first:

- ``rescue_workers``: known at once, when this host sees the worker's process is gone (a starting supervisor,
  ``jobs.workers.rescue_dead_on_host``) or a new process took over the worker id;
- ``rescue_dead_workers``: its registry row missed heartbeats for ``WORKER_DEAD_AFTER`` seconds (default 15), or
  says it stopped or crashed; the bot, the page-only app and every worker run it every few seconds;
- ``rescue_expired``: the lease (renewed by progress) ran out, or the hard deadline passed: the backstop for a
  hung GPU call in a worker that still heartbeats.

Every write is fenced like a worker's (``jobs.transitions.fenced``), so a rescuer racing a finishing worker changes
nothing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Row, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from jobs.copies import remove_copies
from jobs.models import Job, JobPhase, JobStatus, Worker, WorkerState
from jobs.retention import prune_finished
from jobs.transitions import JOBS, checked_now, close_running, fenced, requeue_values

log = logging.getLogger(__name__)

RESCUE_INTERVAL_S = 2.0
"""How often the bot and the page-only app run a maintenance pass (a short write transaction)."""
HARD_EXPIRY_FACTOR = 3.0
"""A running attempt is rescued once it has run this many times its estimated cost ..."""
HARD_EXPIRY_MIN_S = 600.0
"""... but never before this many seconds (covers model loading on a cold worker)."""

RESCUE_ERROR = (
    "The worker stopped responding while making this video ({attempts} tries). "
    "Your GPU time was refunded; please try again later."
)


def hard_deadline(started_at: datetime, cost_estimate: float) -> datetime:
    """When an attempt started at ``started_at`` is rescued even if its lease is still being renewed."""
    return started_at + timedelta(seconds=max(HARD_EXPIRY_MIN_S, HARD_EXPIRY_FACTOR * cost_estimate))


async def _rescue_one(session: AsyncSession, c: Row[*tuple[Any, ...]], now: datetime, why: str) -> bool:
    """Requeue, fail (last allowed attempt) or cancel (cancel requested) one running attempt; fenced."""
    if c.cancel_requested or c.attempt - c.releases >= c.max_attempts:
        status, phase = JobStatus.CANCELLED, JobPhase.CANCELLED
        note: dict[str, Any] = {}  # a cancel needs no note
        if not c.cancel_requested:
            status, phase = JobStatus.FAILED, JobPhase.FAILED
            note = {
                "error": RESCUE_ERROR.format(attempts=c.attempt - c.releases),
                "error_detail": f"{why} on attempt {c.attempt} of {c.max_attempts}",
            }
        return await close_running(
            session, c.id, c.attempt, c.worker_id, status=status, phase=phase, now=now, charge=False, **note
        )
    row = (
        await session.execute(
            update(JOBS)
            .where(*fenced(c.id, c.attempt, c.worker_id))
            .values(**requeue_values(f"attempt {c.attempt} rescued at {now.isoformat()} ({why})"))
            .returning(JOBS.c.id)
        )
    ).first()
    return row is not None


_RESCUE_COLUMNS = (
    Job.id,
    Job.attempt,
    Job.releases,
    Job.max_attempts,
    Job.cancel_requested,
    Job.worker_id,
    Job.lease_expires_at,
    Job.started_at,
    Job.cost_estimate,
    Job.user_id,
)


async def rescue_expired(session: AsyncSession, *, now: datetime | None = None) -> list[int]:
    """Requeue running jobs whose lease expired (or that passed their hard deadline): the backstop for a hung GPU
    call.

    An attempt that was the last allowed fails (refunded); one whose cancel was requested is cancelled
    (refunded); others go back to the queue keeping their reservation. Each write is fenced by attempt and
    worker, so a rescuer racing a finishing worker changes nothing. Returns the ids rescued.
    """
    now = checked_now(now)
    candidates = (
        await session.execute(
            select(*_RESCUE_COLUMNS)
            .where(
                Job.status == JobStatus.RUNNING,
                or_(Job.lease_expires_at < now, Job.started_at < now - timedelta(seconds=HARD_EXPIRY_MIN_S)),
            )
            .order_by(Job.id)
        )
    ).all()
    rescued: list[int] = []
    for c in candidates:
        lease_gone = c.lease_expires_at is not None and c.lease_expires_at < now
        if not lease_gone and hard_deadline(c.started_at, c.cost_estimate) >= now:
            continue
        if await _rescue_one(session, c, now, "lease expired"):
            rescued.append(c.id)
    return rescued


async def rescue_dead_workers(session: AsyncSession, *, dead_after_s: float, now: datetime | None = None) -> list[int]:
    """Requeue running jobs whose worker is dead: its registry row missed heartbeats for ``dead_after_s`` seconds
    or says it stopped or crashed. Any rescuer may run it (the bot and every worker do). A job whose worker has
    no row is left to the lease. Same outcomes and fencing as ``rescue_expired``; returns the ids rescued."""
    if not isinstance(dead_after_s, (int, float)) or dead_after_s <= 0:
        raise ValueError(f"dead_after_s must be > 0, got {dead_after_s!r}")
    now = checked_now(now)
    stale = now - timedelta(seconds=float(dead_after_s))
    candidates = (
        await session.execute(
            select(*_RESCUE_COLUMNS)
            .join(Worker, Worker.id == Job.worker_id)
            .where(
                Job.status == JobStatus.RUNNING,
                or_(Worker.last_heartbeat_at < stale, Worker.state.in_([WorkerState.STOPPED, WorkerState.CRASHED])),
            )
            .order_by(Job.id)
        )
    ).all()
    return [c.id for c in candidates if await _rescue_one(session, c, now, "worker stopped heartbeating")]


async def rescue_workers(
    session: AsyncSession, worker_ids: Sequence[str], *, why: str, now: datetime | None = None
) -> list[int]:
    """Requeue at once the running jobs of these workers, known to be gone (a dead pid on this host, or a new
    process that took over the worker id); their rows are marked crashed. Returns the ids rescued."""
    now = checked_now(now)
    if not worker_ids:
        return []
    await session.execute(
        update(Worker)
        .where(Worker.id.in_(list(worker_ids)), Worker.state.not_in([WorkerState.STOPPED]))
        .values(state=WorkerState.CRASHED, current_job_id=None)
        .execution_options(synchronize_session=False)
    )
    candidates = (
        await session.execute(
            select(*_RESCUE_COLUMNS)
            .where(Job.status == JobStatus.RUNNING, Job.worker_id.in_(list(worker_ids)))
            .order_by(Job.id)
        )
    ).all()
    return [c.id for c in candidates if await _rescue_one(session, c, now, why)]


@dataclass(frozen=True)
class Maintained:
    """What one maintenance pass did."""

    dead: list[int]  # jobs rescued because their worker stopped heartbeating
    expired: list[int]  # jobs rescued because their lease or hard deadline passed
    pruned: list[int]  # jobs whose stored image and video went (retention)
    copies_removed: int  # disk copies of the pruned jobs' videos
    cutoff: datetime | None  # retention's cut-off: jobs that finished before it were pruned (None: no retention)


async def maintain(
    sessions: async_sessionmaker[AsyncSession],
    *,
    dead_after_s: float,
    retention_days: float = 0.0,
    output_dir: Path | None = None,
    prune: bool = True,
    now: datetime | None = None,
) -> Maintained:
    """One maintenance pass, each step a transaction of its own: rescue the running jobs of dead workers and of
    expired leases; then, with ``prune`` and ``retention_days`` > 0, remove the stored bytes of delivered jobs that
    finished more than ``retention_days`` ago (in batches until none is left) and their disk copies in
    ``output_dir``. Logs what it did. A worker runs the rescue alone (``retention_days`` 0): retention is the app's,
    which knows RETENTION_DAYS."""
    if prune and retention_days > 0 and output_dir is None:
        raise ValueError("retention needs output_dir, the folder of the videos' disk copies")
    now = checked_now(now)
    async with sessions.begin() as session:
        dead = await rescue_dead_workers(session, dead_after_s=dead_after_s, now=now)
        expired = await rescue_expired(session, now=now)
    if dead:
        log.warning("requeued jobs of workers that stopped heartbeating: %s", dead)
    if expired:
        log.warning("requeued jobs whose lease expired: %s", expired)
    if not prune or retention_days <= 0 or output_dir is None:
        return Maintained(dead=dead, expired=expired, pruned=[], copies_removed=0, cutoff=None)
    cutoff = now - timedelta(days=retention_days)
    pruned: list[int] = []
    removed = 0
    while True:
        async with sessions.begin() as session:
            batch = await prune_finished(session, finished_before=cutoff, now=now)
        if not batch:
            break
        removed += await asyncio.to_thread(remove_copies, output_dir, batch)
        pruned += batch
    if pruned:
        log.info(
            "retention: removed the stored images and videos of %d finished job(s) and %d disk copies: %s",
            len(pruned),
            removed,
            pruned[:20],
        )
    return Maintained(dead=dead, expired=expired, pruned=pruned, copies_removed=removed, cutoff=cutoff)


class Maintenance:
    """The maintenance schedule of one app process: :meth:`run_due` runs :func:`maintain` once
    ``RESCUE_INTERVAL_S`` passed since the last pass, with retention once ``retention_interval_s`` passed (and
    at the first pass)."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        dead_after_s: float,
        retention_days: float,
        retention_interval_s: float,
        output_dir: Path,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.sessions = sessions
        self.dead_after_s = dead_after_s
        self.retention_days = retention_days
        self.retention_interval_s = retention_interval_s
        self.output_dir = output_dir
        self._clock = clock
        self._rescued_at: float | None = None
        self._pruned_at: float | None = None

    async def run_due(self) -> Maintained | None:
        """Run a pass if one is due; None when none was."""
        started = self._clock()
        if self._rescued_at is not None and started - self._rescued_at < RESCUE_INTERVAL_S:
            return None
        prune = self._pruned_at is None or started - self._pruned_at >= self.retention_interval_s
        self._rescued_at = started
        if prune:
            self._pruned_at = started
        return await maintain(
            self.sessions,
            dead_after_s=self.dead_after_s,
            retention_days=self.retention_days,
            output_dir=self.output_dir,
            prune=prune,
        )
