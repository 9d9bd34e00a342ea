"""Queue operations: plain async functions taking an ``AsyncSession``; the caller owns the transaction.

Every function writes only through the session it is given and never commits, so "enqueue + reserve
quota" or "claim" is exactly one transaction of the caller's. On SQLite every transaction begins
IMMEDIATE (see ``jobs.db``); on PostgreSQL the claim uses ``FOR UPDATE SKIP LOCKED`` and admission locks
the user's ``quota_accounts`` row first, so checks and inserts cannot race.

Order of claims: ``priority DESC`` (the bot operator first), then ``round`` (round robin across users), then ``id``.
A job's round is the larger of "one more than the user's newest pending job" and the round of the job
most recently started, so a user with many queued jobs takes turns with everyone else.
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Integer,
    Row,
    Select,
    String,
    Update,
    bindparam,
    func,
    literal_column,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from jobs.audit import record_action
from jobs.blobs import DATABASE_BLOBS, BlobStore
from jobs.control import claimable, refuse_if_banned_here
from jobs.errors import (
    Banned,
    InputGone,
    JobNotFound,
    OverBudget,
    OverGuildCap,
    QueueFull,
    TooManyPending,
)
from jobs.models import (
    CLAIM_ORDER,
    PENDING_STATUSES,
    PRIORITY_ADMIN,
    PRIORITY_NORMAL,
    QUEUE_STATE_ROW_ID,
    TERMINAL_STATUSES,
    GuildSettings,
    Job,
    JobPhase,
    JobSource,
    JobStatus,
    LedgerKind,
    QueueState,
    QuotaAccount,
    QuotaLedger,
    UserLimit,
    UtcDateTime,
    Worker,
    WorkerState,
    utcnow,
)

from jobs.quota import (
    BUDGET_EPSILON_S,
    CostModel,
    QuotaPolicy,
    add_ledger,
    best_tier,
    calibrate,
    charges_in_window,
    combine_limits,
    estimate_cost,
    in_window,
    refill_time,
)

DEFAULT_MAX_ATTEMPTS = 3
HARD_EXPIRY_FACTOR = 3.0
"""A running attempt is rescued once it has run this many times its estimated cost ..."""
HARD_EXPIRY_MIN_S = 600.0
"""... but never before this many seconds (covers model loading on a cold worker)."""
WORKER_STALE_S = 120.0
"""A worker whose heartbeat is older than this does not count towards ETA parallelism."""
MAX_PROMPT_STORE_CHARS = 4000
RESCUE_ERROR = (
    "The worker stopped responding while making this video ({attempts} tries). "
    "Your GPU time was refunded; please try again later."
)
CLEARED_ERROR = "An admin cleared the queue; your GPU time was refunded."
JOBS = Job.__table__
"""Hot-path writes use Core statements on the table (no ORM bookkeeping): the caller's session still runs them."""


class CancelOutcome(str, enum.Enum):
    """Result of ``cancel_job``."""

    CANCELLED = "cancelled"  # was queued: now cancelled and refunded
    REQUESTED = "requested"  # is running: flagged; the worker stops at its next step
    TOO_LATE = "too_late"  # already finished (or cancelled)


@dataclass(frozen=True)
class NewJob:
    """Everything the bot knows about a request when it enqueues it."""

    user_id: int
    channel_id: int
    guild_id: int | None
    source: JobSource
    prompt: str
    negative_prompt: str
    resolution: str
    frames: int
    fps: int
    steps: int
    guidance: float
    seed: int
    width: int
    height: int
    input_sha256: str
    upload_limit_bytes: int
    preset: str | None = None
    interaction_token: str | None = None
    interaction_expires_at: datetime | None = None
    application_id: int | None = None
    reply_to_message_id: int | None = None
    status_message_id: int | None = None
    parent_job_id: int | None = None
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    cost_estimate: float | None = None
    """GPU-seconds; None = estimate from the parameters with the calibrated cost model."""

    def __post_init__(self) -> None:
        for name in ("user_id", "channel_id", "frames", "fps", "steps", "width", "height", "upload_limit_bytes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"NewJob.{name} must be a positive integer, got {value!r}")
        if not isinstance(self.source, JobSource):
            object.__setattr__(self, "source", JobSource(self.source))
        if not isinstance(self.prompt, str) or len(self.prompt) > MAX_PROMPT_STORE_CHARS:
            raise ValueError(f"NewJob.prompt must be a string of at most {MAX_PROMPT_STORE_CHARS} chars")
        if not isinstance(self.input_sha256, str) or len(self.input_sha256) != 64:
            raise ValueError(f"NewJob.input_sha256 must be 64 hex chars, got {self.input_sha256!r}")
        if not isinstance(self.max_attempts, int) or self.max_attempts < 1:
            raise ValueError(f"NewJob.max_attempts must be >= 1, got {self.max_attempts!r}")
        if self.cost_estimate is not None and self.cost_estimate < 0:
            raise ValueError(f"NewJob.cost_estimate must be >= 0, got {self.cost_estimate!r}")
        if self.interaction_expires_at is not None and self.interaction_expires_at.tzinfo is None:
            raise ValueError("NewJob.interaction_expires_at must be timezone-aware")


@dataclass(frozen=True)
class ProgressAck:
    """Answer to a worker's progress report."""

    ok: bool
    """False: the job is no longer this attempt's (rescued, finished elsewhere): stop working on it."""
    cancel_requested: bool

    @classmethod
    def from_row(cls, row: Sequence[Any] | None) -> ProgressAck:
        """From the progress UPDATE's RETURNING row (None: fenced out)."""
        if row is None:
            return cls(ok=False, cancel_requested=False)
        return cls(ok=True, cancel_requested=bool(row[0]))


@dataclass(frozen=True)
class QueuePosition:
    """position: 1 = next to run, 0 = running, None = finished. eta_seconds: until the video is ready."""

    position: int | None
    eta_seconds: float | None


def _now(now: datetime | None) -> datetime:
    if now is None:
        return utcnow()
    if now.tzinfo is None:
        raise ValueError(f"now must be timezone-aware, got naive {now!r}")
    return now


def _check_lease(lease_seconds: float) -> timedelta:
    if not isinstance(lease_seconds, (int, float)) or lease_seconds <= 0:
        raise ValueError(f"lease_seconds must be > 0, got {lease_seconds!r}")
    return timedelta(seconds=float(lease_seconds))


def _resolution_px(resolution: str) -> int:
    text = resolution.strip().lower().removesuffix("p")
    if not text.isdigit():
        raise ValueError(f"resolution must look like '512p', got {resolution!r}")
    return int(text)


def _fenced(job_id: int, attempt: int, worker_id: str) -> tuple[ColumnElement[bool], ...]:
    """WHERE clause of every worker write: this job, this attempt, this worker, still running. ``attempt`` never
    decreases, so a stale writer can never match a later claim."""
    return (JOBS.c.id == job_id, JOBS.c.attempt == attempt, JOBS.c.worker_id == worker_id,
            JOBS.c.status == JobStatus.RUNNING)


PROGRESS_ASYNC_COMMIT_PG = "set_config('synchronous_commit', 'off', true)"
"""Evaluated by the PostgreSQL progress UPDATE: that one transaction commits without waiting for its WAL
flush (~0.2 ms here). A server crash can lose the last fraction of a second of heartbeats, never a later
durable commit (finish, enqueue) and never consistency; a lost heartbeat only makes the lease look older."""


@functools.cache
def progress_statement(dialect_name: str) -> Update:
    """The fenced heartbeat UPDATE, built once per back end (it runs ~every denoising step of every worker).
    Its RETURNING row starts with ``cancel_requested`` and is absent when the attempt no longer owns the job."""
    returning: list[Any] = [JOBS.c.cancel_requested]
    if dialect_name == "postgresql":
        returning.append(literal_column(PROGRESS_ASYNC_COMMIT_PG).label("async_commit"))
    return (
        update(JOBS)
        .where(
            JOBS.c.id == bindparam("p_id"),
            JOBS.c.attempt == bindparam("p_attempt"),
            JOBS.c.worker_id == bindparam("p_worker", type_=String()),
            JOBS.c.status == JobStatus.RUNNING,
        )
        .values(
            progress_step=bindparam("p_step", type_=Integer()),
            progress_total=bindparam("p_total", type_=Integer()),
            phase=bindparam("p_phase", type_=String()),
            lease_expires_at=bindparam("p_lease", type_=UtcDateTime()),
        )
        .returning(*returning)
    )


async def get_job(session: AsyncSession, job_id: int) -> Job:
    """The job with this id (fresh from the database); raises JobNotFound."""
    job = await session.get(Job, job_id, populate_existing=True)
    if job is None:
        raise JobNotFound(job_id)
    return job


async def is_paused(session: AsyncSession) -> bool:
    """Whether the global queue is paused."""
    return bool(await session.scalar(select(QueueState.paused).where(QueueState.id == QUEUE_STATE_ROW_ID)))


def _check_guild(new: NewJob, facts: Row[Any]) -> None:
    """Refuse a request the guild's settings (read with the admission facts) do not allow."""
    if facts.max_resolution is not None and _resolution_px(new.resolution) > _resolution_px(facts.max_resolution):
        raise OverGuildCap("resolution", new.resolution, facts.max_resolution)
    if facts.max_frames is not None and new.frames > facts.max_frames:
        raise OverGuildCap("frames", new.frames, facts.max_frames)
    if facts.max_steps is not None and new.steps > facts.max_steps:
        raise OverGuildCap("steps", new.steps, facts.max_steps)


async def _lock_account(session: AsyncSession, user_id: int, now: datetime) -> None:
    """Create the user's account row if needed and row-lock it until the transaction ends: one upsert
    (``ON CONFLICT DO UPDATE`` locks the existing row on PostgreSQL; SQLite holds the write lock already)."""
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    stmt = insert(QuotaAccount).values(user_id=user_id, created_at=now, last_enqueue_at=now)
    await session.execute(
        stmt.on_conflict_do_update(index_elements=["user_id"], set_={"last_enqueue_at": stmt.excluded.last_enqueue_at})
    )


def _admission_query(new: NewJob, policy: QuotaPolicy, now: datetime) -> Select[Any]:
    """Everything admission decides on, as one row read right after the account lock: the queue's and
    the guild's pause and caps, the user's override (``banned`` is NULL when there is none) and best
    tier, their pending jobs and reservations, their 24 h usage, the rounds that place the new job (the
    user's newest pending round and the round most recently started), and (with a queue cap) the queue's
    length. One statement instead of eight."""
    pending_jobs = (  # an aggregate: always exactly one row, the one everything else is joined to
        select(
            func.count(Job.id).label("pending"),
            func.coalesce(func.sum(Job.cost_estimate), 0.0).label("reserved"),
            func.max(Job.round).label("user_last_round"),
        )
        .where(Job.user_id == new.user_id, Job.status.in_(PENDING_STATUSES))
        .subquery("pending_jobs")
    )
    columns: list[Any] = [
        QueueState.paused.label("queue_paused"),
        QueueState.reason.label("queue_reason"),
        GuildSettings.paused.label("guild_paused"),
        GuildSettings.max_resolution,
        GuildSettings.max_frames,
        GuildSettings.max_steps,
        UserLimit.daily_gpu_seconds,
        UserLimit.max_pending,
        UserLimit.banned,
        UserLimit.ban_reason,
        pending_jobs.c.pending,
        pending_jobs.c.reserved,
        pending_jobs.c.user_last_round,
        select(func.coalesce(func.sum(QuotaLedger.amount), 0.0))
        .where(*in_window(new.user_id, now))
        .scalar_subquery()
        .label("used"),
        select(Job.round)
        .where(Job.started_at.is_not(None))
        .order_by(Job.started_at.desc(), Job.id.desc())
        .limit(1)
        .scalar_subquery()
        .label("current_round"),
    ]
    if policy.max_queue_length is not None:
        columns.append(
            select(func.count(Job.id)).where(Job.status == JobStatus.QUEUED).scalar_subquery().label("queued")
        )
    query = (
        select(*columns)
        .select_from(pending_jobs)
        .outerjoin(QueueState, QueueState.id == QUEUE_STATE_ROW_ID)
        .outerjoin(GuildSettings, GuildSettings.guild_id == new.guild_id)
        .outerjoin(UserLimit, UserLimit.user_id == new.user_id)
    )
    tier = best_tier(policy)
    if tier is None:
        return query
    tier_row = tier.subquery("tier")  # an aggregate: always exactly one row
    return query.add_columns(tier_row.c.budget.label("tier_budget"), tier_row.c.max_pending.label("tier_pending")).join_from(
        pending_jobs, tier_row, true()
    )


async def enqueue_job(
    session: AsyncSession,
    new: NewJob,
    policy: QuotaPolicy,
    *,
    image: bytes | None,
    now: datetime | None = None,
    cost_model: CostModel | None = None,
    blobs: BlobStore = DATABASE_BLOBS,
) -> Job:
    """Insert a queued job, store its input image and reserve its estimated cost, in the caller's transaction.

    ``image`` is the validated image whose SHA-256 is ``new.input_sha256`` (one stored copy per distinct image);
    ``None`` reuses the image already stored under that hash (re-roll, vary) and raises ``InputGone`` when it is
    no longer kept. Raises a ``jobs.errors.RequestRefused`` subclass (nothing written) when the queue or guild is
    paused, a guild cap is exceeded, the user is banned, has too many pending jobs, the queue is full, or the
    cost does not fit in the user's rolling 24 h budget; ``jobs.blobs.BlobTooLarge`` for an image over the cap.
    """
    if not isinstance(new, NewJob):
        raise TypeError(f"enqueue_job needs a NewJob, got {type(new).__name__}")
    if not isinstance(policy, QuotaPolicy):
        raise TypeError(f"enqueue_job needs a QuotaPolicy, got {type(policy).__name__}")
    now = _now(now)
    await _lock_account(session, new.user_id, now)
    facts = (await session.execute(_admission_query(new, policy, now))).one()
    # -- server scope: a pause holds (no refusal: jobs.control.claimable), a server ban refuses -----------
    await refuse_if_banned_here(session, new.user_id, new.guild_id)
    # -- end server scope -------------------------------------------------------------------------------------
    _check_guild(new, facts)
    tier = (facts.tier_budget, facts.tier_pending) if policy.role_ids else None
    limits = combine_limits(policy, tier=tier, override=facts if facts.banned is not None else None)
    if limits.banned:
        raise Banned(limits.ban_reason)
    pending, reserved = int(facts.pending), float(facts.reserved)
    if pending >= limits.max_pending:
        raise TooManyPending(limits.max_pending)
    if policy.max_queue_length is not None and facts.queued >= policy.max_queue_length:
        raise QueueFull(policy.max_queue_length)
    if new.cost_estimate is not None:
        cost = float(new.cost_estimate)
    else:
        model = cost_model if cost_model is not None else await calibrate(session)
        cost = estimate_cost(new.width, new.height, new.frames, new.steps, model=model)
    used = float(facts.used)
    if used + reserved + cost > limits.budget + BUDGET_EPSILON_S:
        charges = await charges_in_window(session, new.user_id, now)  # only a refusal needs them one by one
        raise OverBudget(
            remaining=max(0.0, limits.budget - used - reserved),
            needed=cost,
            refill_at=refill_time(charges, limits.budget, reserved, cost) if cost <= limits.budget else None,
        )
    if not await blobs.add_input(session, new.input_sha256, image):
        raise InputGone(new.parent_job_id)
    own_round = 0 if facts.user_last_round is None else facts.user_last_round + 1
    values = {f.name: getattr(new, f.name) for f in fields(NewJob) if f.name != "cost_estimate"}
    job = Job(
        **values,
        status=JobStatus.QUEUED,
        priority=PRIORITY_ADMIN if policy.is_admin else PRIORITY_NORMAL,
        round=max(own_round, facts.current_round or 0),
        attempt=0,
        cancel_requested=False,
        progress_step=0,
        progress_total=new.steps,
        phase=JobPhase.QUEUED,
        cost_estimate=cost,
        created_at=now,
    )
    session.add(job)
    await session.flush()
    await add_ledger(session, user_id=new.user_id, job_id=job.id, kind=LedgerKind.RESERVE, amount=cost, now=now)
    return job


async def claim_next_job(
    session: AsyncSession, worker_id: str, *, lease_seconds: float, now: datetime | None = None
) -> Job | None:
    """Atomically move the next queued job to running for ``worker_id`` (one UPDATE ... RETURNING).

    Returns None when nothing is queued or the queue is paused. ``attempt`` is incremented; the worker
    must pass it back with every later write.
    """
    if not worker_id or not isinstance(worker_id, str):
        raise ValueError(f"worker_id must be a non-empty string, got {worker_id!r}")
    lease = _check_lease(lease_seconds)
    now = _now(now)
    next_id = (
        select(Job.id)
        .where(Job.status == JobStatus.QUEUED, *claimable())  # bot-wide and server pauses hold (jobs.control)
        .order_by(*CLAIM_ORDER)
        .limit(1)
        .with_for_update(skip_locked=True, of=Job)
        .scalar_subquery()
    )
    stmt = (
        update(Job)
        .where(Job.id == next_id, Job.status == JobStatus.QUEUED)
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


def progress_parameters(
    job_id: int, attempt: int, *, worker_id: str, step: int, total: int, phase: JobPhase | str, lease_seconds: float,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The checked parameters of ``progress_statement`` (a bad step, total, phase or lease raises ValueError)."""
    lease = _check_lease(lease_seconds)
    if step < 0 or total < 0 or (total > 0 and step > total):
        raise ValueError(f"progress step {step} of {total} is out of range (0 <= step <= total)")
    return {"p_id": job_id, "p_attempt": attempt, "p_worker": worker_id, "p_step": step, "p_total": total,
            "p_phase": JobPhase(phase).value, "p_lease": _now(now) + lease}


async def report_progress(
    session: AsyncSession,
    job_id: int,
    attempt: int,
    *,
    worker_id: str,
    step: int,
    total: int,
    phase: JobPhase | str,
    lease_seconds: float,
    now: datetime | None = None,
) -> ProgressAck:
    """Progress (fenced by job, attempt and worker): renews the lease and returns whether to cancel.

    One UPDATE ... RETURNING in the caller's transaction. A worker sends the same statement through
    ``jobs.progress.ProgressWriter``, each write a transaction of its own."""
    params = progress_parameters(job_id, attempt, worker_id=worker_id, step=step, total=total, phase=phase,
                                 lease_seconds=lease_seconds, now=now)
    stmt = progress_statement(session.get_bind().dialect.name)
    row = (await session.execute(stmt, params)).first()
    return ProgressAck.from_row(row)


async def record_note(session: AsyncSession, job_id: int, attempt: int, *, worker_id: str, note: str) -> bool:
    """A worker's note on its running attempt (e.g. a low-memory retry) in ``error_detail``; fenced."""
    row = (await session.execute(
        update(JOBS).where(*_fenced(job_id, attempt, worker_id)).values(error_detail=note).returning(JOBS.c.id)
    )).first()
    return row is not None


async def attempt_state(session: AsyncSession, job_id: int, attempt: int, *, worker_id: str) -> ProgressAck:
    """A read of whether this worker's attempt still owns the job and whether its cancel was requested."""
    row = (await session.execute(
        select(JOBS.c.cancel_requested).where(*_fenced(job_id, attempt, worker_id))
    )).first()
    return ProgressAck.from_row(row)


async def _close_running(
    session: AsyncSession, job_id: int, attempt: int, worker_id: str, values: dict[str, Any]
) -> tuple[int, float] | None:
    """Fenced move out of running; returns (user_id, cost_estimate) or None if this attempt lost the job."""
    stmt = (
        update(JOBS)
        .where(*_fenced(job_id, attempt, worker_id))
        .values(**values)
        .returning(JOBS.c.user_id, JOBS.c.cost_estimate)
    )
    row = (await session.execute(stmt)).first()
    return None if row is None else (int(row.user_id), float(row.cost_estimate))


def _check_seconds(gpu_seconds: float) -> float:
    if not isinstance(gpu_seconds, (int, float)) or gpu_seconds < 0:
        raise ValueError(f"gpu_seconds must be >= 0, got {gpu_seconds!r}")
    return float(gpu_seconds)


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
    now = _now(now)
    closed = await _close_running(
        session,
        job_id,
        attempt,
        worker_id,
        {
            "status": JobStatus.SUCCEEDED,
            "output_bytes": len(video),
            "gpu_seconds": gpu_seconds,
            "finished_at": now,
            "lease_expires_at": None,
            "phase": JobPhase.DONE,
            "error": None,
        },
    )
    if closed is None:
        return False
    await blobs.put_video(session, job_id, video)
    user_id, estimate = closed
    await add_ledger(session, user_id=user_id, job_id=job_id, kind=LedgerKind.RELEASE, amount=estimate, now=now)
    await add_ledger(session, user_id=user_id, job_id=job_id, kind=LedgerKind.CHARGE, amount=gpu_seconds, now=now)
    return True


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
    now = _now(now)
    closed = await _close_running(
        session,
        job_id,
        attempt,
        worker_id,
        {
            "status": JobStatus.FAILED,
            "error": error,
            "error_detail": detail,
            "gpu_seconds": gpu_seconds,
            "finished_at": now,
            "lease_expires_at": None,
            "phase": JobPhase.FAILED,
        },
    )
    if closed is None:
        return False
    user_id, estimate = closed
    await add_ledger(session, user_id=user_id, job_id=job_id, kind=LedgerKind.REFUND, amount=estimate, now=now)
    return True


async def finish_cancelled(
    session: AsyncSession, job_id: int, attempt: int, *, worker_id: str, gpu_seconds: float,
    now: datetime | None = None,
) -> bool:
    """The worker stopped a running job on request: mark cancelled, charge the GPU time it used."""
    gpu_seconds = _check_seconds(gpu_seconds)
    now = _now(now)
    closed = await _close_running(
        session,
        job_id,
        attempt,
        worker_id,
        {
            "status": JobStatus.CANCELLED,
            "gpu_seconds": gpu_seconds,
            "finished_at": now,
            "lease_expires_at": None,
            "phase": JobPhase.CANCELLED,
        },
    )
    if closed is None:
        return False
    user_id, estimate = closed
    await add_ledger(session, user_id=user_id, job_id=job_id, kind=LedgerKind.RELEASE, amount=estimate, now=now)
    await add_ledger(session, user_id=user_id, job_id=job_id, kind=LedgerKind.CHARGE, amount=gpu_seconds, now=now)
    return True


def _requeue_values(detail: str | None = None) -> dict[str, Any]:
    values: dict[str, Any] = {"status": JobStatus.QUEUED, "worker_id": None, "lease_expires_at": None,
                              "progress_step": 0, "phase": JobPhase.QUEUED}
    if detail is not None:
        values["error_detail"] = detail
    return values


async def release_job(
    session: AsyncSession, job_id: int, attempt: int, *, worker_id: str, now: datetime | None = None
) -> bool:
    """Give a running job back to the queue (worker shutdown): no charge. ``attempt`` stays (the next claim
    counts up from it); ``releases`` counts the give-back, so it does not use up one of ``max_attempts``."""
    _now(now)
    stmt = (
        update(JOBS)
        .where(*_fenced(job_id, attempt, worker_id))
        .values(releases=JOBS.c.releases + 1, **_requeue_values())
        .returning(JOBS.c.id)
    )
    return (await session.execute(stmt)).first() is not None


async def cancel_job(session: AsyncSession, job_id: int, *, now: datetime | None = None) -> CancelOutcome:
    """Cancel a job: queued -> cancelled and refunded; running -> flagged (the worker stops at its next
    progress report and calls ``finish_cancelled``); otherwise too late. Raises JobNotFound.
    (Who may cancel is the caller's check.)"""
    now = _now(now)
    row = (
        await session.execute(
            update(JOBS)
            .where(JOBS.c.id == job_id, JOBS.c.status == JobStatus.QUEUED)
            .values(status=JobStatus.CANCELLED, finished_at=now, phase=JobPhase.CANCELLED)
            .returning(JOBS.c.user_id, JOBS.c.cost_estimate)
        )
    ).first()
    if row is not None:
        await add_ledger(
            session, user_id=row.user_id, job_id=job_id, kind=LedgerKind.REFUND, amount=row.cost_estimate, now=now
        )
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


def hard_deadline(job: Job) -> datetime | None:
    """When the current attempt is rescued even if its lease is still being renewed."""
    if job.started_at is None:
        return None
    return job.started_at + timedelta(seconds=max(HARD_EXPIRY_MIN_S, HARD_EXPIRY_FACTOR * job.cost_estimate))


async def _rescue_one(session: AsyncSession, c: Row[Any], now: datetime, why: str) -> bool:
    """Requeue, fail (last allowed attempt) or cancel (cancel requested) one running attempt; fenced."""
    if c.cancel_requested or c.attempt - c.releases >= c.max_attempts:
        cancelled = bool(c.cancel_requested)
        values: dict[str, Any] = {
            "status": JobStatus.CANCELLED if cancelled else JobStatus.FAILED,
            "finished_at": now,
            "lease_expires_at": None,
            "phase": JobPhase.CANCELLED if cancelled else JobPhase.FAILED,
        }
        if not cancelled:
            values["error"] = RESCUE_ERROR.format(attempts=c.attempt - c.releases)
            values["error_detail"] = f"{why} on attempt {c.attempt} of {c.max_attempts}"
        closed = await _close_running(session, c.id, c.attempt, c.worker_id, values)
        if closed is None:
            return False
        await add_ledger(session, user_id=c.user_id, job_id=c.id, kind=LedgerKind.REFUND, amount=c.cost_estimate,
                         now=now)
        return True
    row = (
        await session.execute(
            update(JOBS)
            .where(*_fenced(c.id, c.attempt, c.worker_id))
            .values(**_requeue_values(f"attempt {c.attempt} rescued at {now.isoformat()} ({why})"))
            .returning(JOBS.c.id)
        )
    ).first()
    return row is not None


_RESCUE_COLUMNS = (Job.id, Job.attempt, Job.releases, Job.max_attempts, Job.cancel_requested, Job.worker_id,
                   Job.lease_expires_at, Job.started_at, Job.cost_estimate, Job.user_id)


async def rescue_expired(session: AsyncSession, *, now: datetime | None = None) -> list[int]:
    """Requeue running jobs whose lease expired (or that passed their hard deadline): the backstop for a hung GPU
    call.

    An attempt that was the last allowed fails (refunded); one whose cancel was requested is cancelled
    (refunded); others go back to the queue keeping their reservation. Each write is fenced by attempt and
    worker, so a rescuer racing a finishing worker changes nothing. Returns the ids rescued.
    """
    now = _now(now)
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
        deadline = c.started_at + timedelta(seconds=max(HARD_EXPIRY_MIN_S, HARD_EXPIRY_FACTOR * c.cost_estimate))
        if not lease_gone and deadline >= now:
            continue
        if await _rescue_one(session, c, now, "lease expired"):
            rescued.append(c.id)
    return rescued


async def rescue_dead_workers(
    session: AsyncSession, *, dead_after_s: float, now: datetime | None = None
) -> list[int]:
    """Requeue running jobs whose worker is dead: its registry row missed heartbeats for ``dead_after_s`` seconds
    or says it stopped or crashed. Any rescuer may run it (the bot and every worker do). A job whose worker has
    no row is left to the lease. Same outcomes and fencing as ``rescue_expired``; returns the ids rescued."""
    if not isinstance(dead_after_s, (int, float)) or dead_after_s <= 0:
        raise ValueError(f"dead_after_s must be > 0, got {dead_after_s!r}")
    now = _now(now)
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
    now = _now(now)
    if not worker_ids:
        return []
    await session.execute(
        update(Worker).where(Worker.id.in_(list(worker_ids)), Worker.state.not_in([WorkerState.STOPPED]))
        .values(state=WorkerState.CRASHED, current_job_id=None).execution_options(synchronize_session=False)
    )
    candidates = (
        await session.execute(
            select(*_RESCUE_COLUMNS)
            .where(Job.status == JobStatus.RUNNING, Job.worker_id.in_(list(worker_ids)))
            .order_by(Job.id)
        )
    ).all()
    return [c.id for c in candidates if await _rescue_one(session, c, now, why)]


async def mark_delivered(
    session: AsyncSession, job_id: int, *, result_message_id: int | None, output_path: str | None = None,
    now: datetime | None = None,
) -> bool:
    """Record that the bot posted the result (or told the user of the failure), and where the delivering process
    wrote its disk copy, if it did. True exactly once per job."""
    now = _now(now)
    values: dict[str, Any] = {"delivered_at": now, "result_message_id": result_message_id}
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
    now = _now(now)
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


async def _set_paused(session: AsyncSession, paused: bool, *, by: int | None, reason: str | None, now: datetime) -> bool:
    state = await session.get(QueueState, QUEUE_STATE_ROW_ID, with_for_update=True, populate_existing=True)
    if state is None:
        raise RuntimeError("queue_state row 1 is missing: run the migrations (jobs.db.migrate)")
    changed = state.paused != paused
    if changed or reason is not None:
        state.paused, state.reason, state.changed_by, state.changed_at = paused, reason, by, now
    await record_action(
        session,
        actor_id=by,
        action="pause_queue" if paused else "resume_queue",
        detail={"reason": reason, "changed": changed},
        now=now,
    )
    return changed


async def pause_queue(
    session: AsyncSession, *, by: int | None, reason: str | None = None, now: datetime | None = None
) -> bool:
    """Pause: workers claim nothing (new requests are still queued and wait); running jobs finish. False if
    already paused."""
    return await _set_paused(session, True, by=by, reason=reason, now=_now(now))


async def resume_queue(session: AsyncSession, *, by: int | None, now: datetime | None = None) -> bool:
    """Resume after ``pause_queue``. False if it was not paused."""
    return await _set_paused(session, False, by=by, reason=None, now=_now(now))


async def clear_queue(
    session: AsyncSession, *, by: int | None, guild_id: int | None = None, now: datetime | None = None
) -> list[int]:
    """Cancel every queued job (of one guild, or all) with a refund; running jobs are left alone.
    Returns the cancelled ids; audited as ``clear_queue``."""
    now = _now(now)
    stmt = (
        update(JOBS)
        .where(JOBS.c.status == JobStatus.QUEUED)
        .values(status=JobStatus.CANCELLED, finished_at=now, phase=JobPhase.CANCELLED, error=CLEARED_ERROR)
        .returning(JOBS.c.id, JOBS.c.user_id, JOBS.c.cost_estimate)
    )
    if guild_id is not None:
        stmt = stmt.where(JOBS.c.guild_id == guild_id)
    rows = (await session.execute(stmt)).all()
    for r in rows:
        await add_ledger(session, user_id=r.user_id, job_id=r.id, kind=LedgerKind.REFUND, amount=r.cost_estimate, now=now)
    ids = sorted(r.id for r in rows)
    await record_action(
        session, actor_id=by, action="clear_queue", guild_id=guild_id, detail={"cancelled": len(ids)}, now=now
    )
    return ids


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
