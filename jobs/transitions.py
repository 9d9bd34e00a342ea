"""The job's state machine: every transition of a job as a plain async function on the caller's session.

The caller owns the transaction; each function writes through the session it is given and never commits. Core
statements on the table (``JOBS``) keep the hot paths free of ORM bookkeeping.

Transitions (``status``; where each lives)::

    (new) --enqueue_job (jobs.admission)--> queued            input image stored, quota reserved
    queued --claim_next_job--> running                         attempt + 1, worker_id, lease
    running --report_progress (jobs.progress)--> running      fenced; renews the lease; says cancel/lost
    running --finish_job--> succeeded                          the MP4 stored in the same transaction
    running --fail_job--> failed                               reservation refunded
    running --finish_cancelled--> cancelled                    charged for the GPU time used
    running --release_job--> queued                            shutdown: no charge, releases + 1
    running --rescue_dead_workers / rescue_workers / rescue_expired (jobs.maintenance)-->
                queued, or failed after max_attempts, or cancelled if a cancel was requested
    queued --cancel_job / clear_queue (jobs.control)--> cancelled    refunded
    running --cancel_job--> running with cancel_requested      the worker stops at its next step
    finished --mark_delivered--> finished with delivered_at    exactly once
    finished --prune_finished / delete_user_data / delete_job_video (jobs.retention)-->
                the same status, the stored input and MP4 gone

``attempt`` only ever increases; every write by a worker is fenced by job id, attempt, worker id and
``status='running'`` (``fenced``), so a worker presumed dead can never write into a later attempt.
On SQLite every transaction begins IMMEDIATE (see ``jobs.db``); on PostgreSQL the claim uses ``FOR UPDATE SKIP
LOCKED``. Claims follow ``jobs.models.CLAIM_ORDER``.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import ColumnElement, Table, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from jobs.blobs import DATABASE_BLOBS, BlobStore
from jobs.errors import JobNotFound
from jobs.models import (
    CLAIM_ORDER,
    QUEUE_STATE_ROW_ID,
    TERMINAL_STATUSES,
    GuildSettings,
    Job,
    JobPhase,
    JobStatus,
    LedgerKind,
    QueueState,
    utcnow,
)
from jobs.quota import add_ledger


def claimable() -> tuple[Any, ...]:
    """WHERE conditions (on :class:`Job`) that leave out jobs held by a pause: the bot-wide switch, or the switch
    of the job's server. For the claim statement, next to ``status = 'queued'``."""
    bot_paused = select(QueueState.id).where(QueueState.id == QUEUE_STATE_ROW_ID, QueueState.paused.is_(True))
    guild_paused = select(GuildSettings.guild_id).where(
        GuildSettings.guild_id == Job.guild_id, GuildSettings.paused.is_(True)
    )
    return (~bot_paused.exists(), ~guild_paused.exists())


JOBS = cast(Table, Job.__table__)  # a declarative model's __table__ is typed as the wider FromClause
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
    return (
        JOBS.c.id == job_id,
        JOBS.c.attempt == attempt,
        JOBS.c.worker_id == worker_id,
        JOBS.c.status == JobStatus.RUNNING,
    )


def requeue_values(detail: str | None = None) -> dict[str, Any]:
    """The column values that put a running job back in the queue (with ``detail`` as its note, if given)."""
    values: dict[str, Any] = {
        "status": JobStatus.QUEUED,
        "worker_id": None,
        "lease_expires_at": None,
        "progress_step": 0,
        "phase": JobPhase.QUEUED,
    }
    if detail is not None:
        values["error_detail"] = detail
    return values


class CancelOutcome(str, enum.Enum):
    """Result of ``cancel_job``."""

    CANCELLED = "cancelled"  # was queued: now cancelled and refunded
    REQUESTED = "requested"  # is running: flagged; the worker stops at its next step
    TOO_LATE = "too_late"  # already finished (or cancelled)

    def sentence(self, job_id: int, *, owner: int | None = None) -> str:
        """What the requester is told, in Discord and on the web page; with ``owner``, what an admin who cancelled
        that user's job is told."""
        whose = f"job #{job_id}" if owner is None else f"job #{job_id} of <@{owner}>"
        if self is CancelOutcome.CANCELLED:
            return f"Cancelled {whose} before it started; its GPU time was refunded."
        if self is CancelOutcome.REQUESTED:
            return f"Stopping {whose}; it is charged only for the GPU time it already used."
        return f"Job #{job_id} has already finished; there is nothing to cancel."


AFFINITY_SCAN_JOBS = 200
"""How far down the queue (in claim order) a worker looks for a job of the model it holds."""


async def claim_next_job(
    session: AsyncSession,
    worker_id: str,
    *,
    lease_seconds: float,
    now: datetime | None = None,
    models: Sequence[str] | None = None,
    loaded_model: str | None = None,
    max_skips: int = 0,
) -> Job | None:
    """Atomically move the next queued job to running for ``worker_id``.

    Returns None when no queued job is free to run (nothing queued, every queued job held by a pause, or none for
    a model in ``models``, the models this worker may load; None = any). ``attempt`` is incremented; the worker
    must pass it back with every later write.

    Affinity. A worker holding ``loaded_model`` takes the first queued job for that model (in claim order) instead
    of the job at the head when that saves a model switch, but only while every job it would pass over has been
    passed over fewer than ``max_skips`` times: each one passed over counts one more in ``affinity_skips``. So no
    job waits behind more than ``max_skips`` others because of affinity (0 = strict claim order), also with several
    workers: the count is raised in one statement that requires it below the bound, and the claim falls back to
    the head when any row changed meanwhile.
    """
    if not worker_id or not isinstance(worker_id, str):
        raise ValueError(f"worker_id must be a non-empty string, got {worker_id!r}")
    if isinstance(max_skips, bool) or not isinstance(max_skips, int) or max_skips < 0:
        raise ValueError(f"max_skips must be an integer >= 0, got {max_skips!r}")
    lease = check_lease(lease_seconds)
    now = checked_now(now)
    eligible: list[Any] = [Job.status == JobStatus.QUEUED, *claimable()]  # bot-wide and server pauses hold
    if models is not None:
        eligible.append(Job.model.in_(list(models)))
    if loaded_model is not None and max_skips > 0:
        claimed = await _claim_for_loaded_model(session, worker_id, eligible, loaded_model, max_skips, lease, now)
        if claimed is not None:
            return claimed
    next_id = (
        select(Job.id)
        .where(*eligible)
        .order_by(*CLAIM_ORDER)
        .limit(1)
        .with_for_update(skip_locked=True, of=Job)
        .scalar_subquery()
    )
    return await _start(session, Job.id == next_id, worker_id, lease, now)


async def _start(session: AsyncSession, which: Any, worker_id: str, lease: timedelta, now: datetime) -> Job | None:
    """Move the queued job ``which`` selects to running for ``worker_id`` (one UPDATE ... RETURNING)."""
    stmt = (
        update(Job)
        .where(which, Job.status == JobStatus.QUEUED)
        .values(
            status=JobStatus.RUNNING,
            attempt=Job.attempt + 1,
            worker_id=worker_id,
            lease_expires_at=now + lease,
            started_at=now,
            progress_step=0,
            phase=JobPhase.LOADING,
        )
        .returning(Job)
        .execution_options(synchronize_session=False, populate_existing=True)
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def _claim_for_loaded_model(
    session: AsyncSession,
    worker_id: str,
    eligible: list[Any],
    loaded_model: str,
    max_skips: int,
    lease: timedelta,
    now: datetime,
) -> Job | None:
    """The first eligible job for ``loaded_model`` when the jobs ahead of it may still be passed over (see
    ``claim_next_job``); None when the head is that model's already, none is near, or the bound stops it."""
    rows = (
        await session.execute(
            select(Job.id, Job.model, Job.affinity_skips)
            .where(*eligible)
            .order_by(*CLAIM_ORDER)
            .limit(AFFINITY_SCAN_JOBS)
        )
    ).all()
    ahead: list[int] = []
    for row in rows:
        if row.model == loaded_model:
            break
        if row.affinity_skips >= max_skips:
            return None  # this job may not be passed over again: the head goes first
        ahead.append(row.id)
    else:
        return None  # no job for the loaded model near the head
    if not ahead:
        return None  # the head is for the loaded model: the plain claim takes it
    target = row.id
    async with session.begin_nested() as savepoint:
        passed = (
            (
                await session.execute(
                    update(Job)
                    .where(Job.id.in_(ahead), Job.status == JobStatus.QUEUED, Job.affinity_skips < max_skips)
                    .values(affinity_skips=Job.affinity_skips + 1)
                    .returning(Job.id)
                    .execution_options(synchronize_session=False)
                )
            )
            .scalars()
            .all()
        )
        job = await _start(session, Job.id == target, worker_id, lease, now) if len(passed) == len(ahead) else None
        if job is None:  # another worker took or passed over one of them meanwhile: claim in order instead
            await savepoint.rollback()
            return None
    return job


def _check_seconds(gpu_seconds: float) -> float:
    if not isinstance(gpu_seconds, (int, float)) or gpu_seconds < 0:
        raise ValueError(f"gpu_seconds must be >= 0, got {gpu_seconds!r}")
    return float(gpu_seconds)


async def close_running(
    session: AsyncSession,
    job_id: int,
    attempt: int,
    worker_id: str,
    *,
    status: JobStatus,
    phase: JobPhase,
    now: datetime,
    charge: bool,
    gpu_seconds: float | None = None,
    **values: Any,
) -> bool:
    """Fenced move of a running attempt to the finished ``status`` (with ``values``), and its settlement: with
    ``charge``, the reservation is released and ``gpu_seconds`` charged; without, the reservation is refunded.
    ``gpu_seconds`` None: none measured (not written). False (nothing written) if this attempt of this worker no
    longer owns the job."""
    if gpu_seconds is not None:
        values["gpu_seconds"] = gpu_seconds
    elif charge:
        raise ValueError("a charged close needs the gpu_seconds it charges")
    row = (
        await session.execute(
            update(JOBS)
            .where(*fenced(job_id, attempt, worker_id))
            .values(status=status, phase=phase, finished_at=now, lease_expires_at=None, **values)
            .returning(JOBS.c.user_id, JOBS.c.cost_estimate)
        )
    ).first()
    if row is None:
        return False
    user_id, estimate = int(row.user_id), float(row.cost_estimate)
    if charge:
        assert gpu_seconds is not None
        await add_ledger(session, user_id=user_id, job_id=job_id, kind=LedgerKind.RELEASE, amount=estimate, now=now)
        await add_ledger(session, user_id=user_id, job_id=job_id, kind=LedgerKind.CHARGE, amount=gpu_seconds, now=now)
    else:
        await add_ledger(session, user_id=user_id, job_id=job_id, kind=LedgerKind.REFUND, amount=estimate, now=now)
    return True


async def finish_job(
    session: AsyncSession,
    job_id: int,
    attempt: int,
    *,
    worker_id: str,
    video: bytes,
    gpu_seconds: float,
    now: datetime | None = None,
    blobs: BlobStore = DATABASE_BLOBS,
) -> bool:
    """Mark succeeded with its MP4 stored, and settle: release the reservation, charge the measured GPU-seconds.

    One transaction of the caller's: a job is succeeded exactly when its MP4 is stored. False (nothing written)
    if this attempt of this worker no longer owns the job.
    """
    gpu_seconds = _check_seconds(gpu_seconds)
    if not isinstance(video, (bytes, bytearray, memoryview)) or len(video) == 0:
        raise ValueError("finish_job needs the MP4's bytes")
    closed = await close_running(
        session,
        job_id,
        attempt,
        worker_id,
        status=JobStatus.SUCCEEDED,
        phase=JobPhase.DONE,
        gpu_seconds=gpu_seconds,
        now=checked_now(now),
        charge=True,
        output_bytes=len(video),
        error=None,
    )
    if closed:
        await blobs.put_video(session, job_id, video)
    return closed


async def fail_job(
    session: AsyncSession,
    job_id: int,
    attempt: int,
    *,
    worker_id: str,
    error: str,
    detail: str,
    gpu_seconds: float,
    now: datetime | None = None,
) -> bool:
    """Mark failed with a user-facing ``error`` and an internal ``detail``; the reservation is refunded
    (failed jobs cost nothing; ``gpu_seconds`` is recorded for statistics only). Fenced like ``finish_job``."""
    gpu_seconds = _check_seconds(gpu_seconds)
    if not error:
        raise ValueError("fail_job needs a user-facing error message")
    return await close_running(
        session,
        job_id,
        attempt,
        worker_id,
        status=JobStatus.FAILED,
        phase=JobPhase.FAILED,
        gpu_seconds=gpu_seconds,
        now=checked_now(now),
        charge=False,
        error=error,
        error_detail=detail,
    )


async def finish_cancelled(
    session: AsyncSession,
    job_id: int,
    attempt: int,
    *,
    worker_id: str,
    gpu_seconds: float,
    now: datetime | None = None,
) -> bool:
    """The worker stopped a running job on request: mark cancelled, charge the GPU time it used."""
    return await close_running(
        session,
        job_id,
        attempt,
        worker_id,
        status=JobStatus.CANCELLED,
        phase=JobPhase.CANCELLED,
        gpu_seconds=_check_seconds(gpu_seconds),
        now=checked_now(now),
        charge=True,
    )


async def release_job(
    session: AsyncSession, job_id: int, attempt: int, *, worker_id: str, now: datetime | None = None
) -> bool:
    """Give a running job back to the queue (worker shutdown): no charge. ``attempt`` stays (the next claim
    counts up from it); ``releases`` counts the give-back, so it does not use up one of ``max_attempts``."""
    checked_now(now)
    stmt = (
        update(JOBS)
        .where(*fenced(job_id, attempt, worker_id))
        .values(releases=JOBS.c.releases + 1, **requeue_values())
        .returning(JOBS.c.id)
    )
    return (await session.execute(stmt)).first() is not None


async def cancel_queued(
    session: AsyncSession, *where: ColumnElement[bool], now: datetime, error: str | None = None
) -> list[int]:
    """Cancel the queued jobs that ``where`` selects (with ``error`` as the note the user sees, if given), each
    refunded its reservation. Returns their ids in order."""
    values: dict[str, Any] = {"status": JobStatus.CANCELLED, "finished_at": now, "phase": JobPhase.CANCELLED}
    if error is not None:
        values["error"] = error
    rows = (
        await session.execute(
            update(JOBS)
            .where(JOBS.c.status == JobStatus.QUEUED, *where)
            .values(**values)
            .returning(JOBS.c.id, JOBS.c.user_id, JOBS.c.cost_estimate)
        )
    ).all()
    for row in rows:
        await add_ledger(
            session, user_id=row.user_id, job_id=row.id, kind=LedgerKind.REFUND, amount=row.cost_estimate, now=now
        )
    return sorted(row.id for row in rows)


async def cancel_job(session: AsyncSession, job_id: int, *, now: datetime | None = None) -> CancelOutcome:
    """Cancel a job: queued -> cancelled and refunded; running -> flagged (the worker stops at its next
    progress report and calls ``finish_cancelled``); otherwise too late. Raises JobNotFound.
    (Who may cancel is the caller's check.)"""
    if await cancel_queued(session, JOBS.c.id == job_id, now=checked_now(now)):
        return CancelOutcome.CANCELLED
    row = (
        await session.execute(
            update(JOBS)
            .where(JOBS.c.id == job_id, JOBS.c.status == JobStatus.RUNNING)
            .values(cancel_requested=True)
            .returning(JOBS.c.id)
        )
    ).first()
    if row is not None:
        return CancelOutcome.REQUESTED
    if await session.scalar(select(Job.id).where(Job.id == job_id)) is None:
        raise JobNotFound(job_id)
    return CancelOutcome.TOO_LATE


async def mark_delivered(
    session: AsyncSession,
    job_id: int,
    *,
    result_message_id: int | None,
    output_path: str | None = None,
    delivery_error: str | None = None,
    now: datetime | None = None,
) -> bool:
    """Record that the bot posted the result (or told the user of the failure), and where the delivering process
    wrote its disk copy, if it did. ``delivery_error``: delivery stopped without posting the result, and why (the
    channel is gone or closed to the bot); the video stays in the store. True exactly once per job."""
    now = checked_now(now)
    values: dict[str, Any] = {
        "delivered_at": now,
        "result_message_id": result_message_id,
        "delivery_error": delivery_error,
    }
    if output_path is not None:
        values["output_path"] = output_path
    row = (
        await session.execute(
            update(JOBS)
            .where(JOBS.c.id == job_id, JOBS.c.delivered_at.is_(None), JOBS.c.status.in_(TERMINAL_STATUSES))
            .values(**values)
            .returning(JOBS.c.id)
        )
    ).first()
    return row is not None
