"""Admission: a new job, its stored input image and its quota reservation, in one transaction of the caller's.

Admission locks the user's ``quota_accounts`` row first (PostgreSQL; SQLite holds the write lock already), reads
everything it decides on in one statement, and refuses (nothing written) or inserts the job, adds a reference to
its input image (``jobs.blobs``) and reserves the estimated cost.

A job's round is the larger of "one more than the user's newest pending job" and the round of the job most
recently started, so a user with many queued jobs takes turns with everyone else (``jobs.models.CLAIM_ORDER``).

A job's GPU-seconds cost (:class:`CostModel`) is linear in pixels x frames x steps plus a fixed overhead:
``estimate_cost`` is reserved with each job, from the model ``calibrate`` fits to recently measured jobs when the
request carries no estimate; ``jobs.quota`` holds the budgets the reservations and charges count against.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy import Row, Select, func, select, true
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from generator.model_spaces import DEFAULT_MODEL, I2VGENXL, LTXV, MODEL_KEYS, WAN22_5B, display_name
from generator.params import GenerationParams
from jobs.blobs import DATABASE_BLOBS, BlobStore
from jobs.control import refuse_if_banned_here
from jobs.errors import (
    Banned,
    InputGone,
    ModelNotAllowed,
    OverBudget,
    OverGuildCap,
    QueueFull,
    TooManyPending,
)
from jobs.models import (
    PENDING_STATUSES,
    PRIORITY_ADMIN,
    PRIORITY_NORMAL,
    QUEUE_STATE_ROW_ID,
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
)
from jobs.quota import (
    BUDGET_EPSILON_S,
    QuotaPolicy,
    add_ledger,
    best_tier,
    charges_in_window,
    combine_limits,
    in_window,
    refill_time,
)
from jobs.safety import check_prompt, prompt_texts
from jobs.transitions import checked_now

DEFAULT_OVERHEAD_SECONDS = 20.0
"""Fixed GPU-seconds per I2VGen-XL job (text/image encoding, VAE decode start-up) before calibration."""


DEFAULT_SECONDS_PER_UNIT = 8.0e-8
"""GPU-seconds per I2VGen-XL (pixel x frame x step) before calibration: seed timings on an RTX 4090, fitted."""


CALIBRATION_SAMPLE_JOBS = 50
"""How many of the most recent measured jobs of a model ``calibrate`` fits."""


MIN_CALIBRATION_JOBS = 5
"""Below this many measured jobs (or without spread in size), only the scale is calibrated."""


@dataclass(frozen=True)
class CostModel:
    """cost = overhead_seconds + seconds_per_unit * width * height * frames * steps."""

    overhead_seconds: float = DEFAULT_OVERHEAD_SECONDS
    seconds_per_unit: float = DEFAULT_SECONDS_PER_UNIT
    samples: int = 0


DEFAULT_COST_MODEL = CostModel()
DEFAULT_COST_MODELS: dict[str, CostModel] = {
    I2VGENXL: DEFAULT_COST_MODEL,
    # Wan 2.2 TI2V-5B: its authors' 720p clip (1280x704, 121 frames, 50 steps: 5.5e9 units) in under 9 minutes on
    # one RTX 4090 with offloading.
    WAN22_5B: CostModel(overhead_seconds=30.0, seconds_per_unit=1.0e-7),
    # LTX-Video distilled: its authors' HD clip (1216x704, 121 frames, 8 steps: 8.3e8 units) in about 10 s on an
    # H100; a 24 GB card is taken as three times slower.
    LTXV: CostModel(overhead_seconds=10.0, seconds_per_unit=3.6e-8),
}
"""Each model's cost before any of its jobs was measured (``calibrate`` fits measured ones per model)."""


def _positive_int(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


def cost_units(width: int, height: int, frames: int, steps: int) -> int:
    """The size of a job in pixel x frame x step units."""
    return (
        _positive_int("width", width)
        * _positive_int("height", height)
        * _positive_int("frames", frames)
        * _positive_int("steps", steps)
    )


def estimate_cost(width: int, height: int, frames: int, steps: int, *, model: CostModel = DEFAULT_COST_MODEL) -> float:
    """Estimated GPU-seconds of one job with these parameters."""
    return model.overhead_seconds + model.seconds_per_unit * cost_units(width, height, frames, steps)


async def calibrate(
    session: AsyncSession, *, model: str = DEFAULT_MODEL, sample: int = CALIBRATION_SAMPLE_JOBS
) -> CostModel:
    """Fit ``model``'s cost model to its most recent succeeded jobs' measured GPU-seconds (each model has its own:
    their speeds differ by an order of magnitude).

    A least-squares line (``numpy.polyfit``) through (units, seconds) when there are at least
    ``MIN_CALIBRATION_JOBS`` jobs of different sizes and the fit is sane (positive slope, non-negative overhead);
    otherwise the model's default scaled by the median of measured/estimated; its default (``DEFAULT_COST_MODELS``)
    when nothing was measured yet.
    """
    default = DEFAULT_COST_MODELS.get(model, DEFAULT_COST_MODEL)
    rows = (
        await session.execute(
            select(Job.width, Job.height, Job.frames, Job.steps, Job.gpu_seconds)
            .where(Job.status == JobStatus.SUCCEEDED, Job.gpu_seconds > 0, Job.model == model)
            .order_by(Job.finished_at.desc())
            .limit(sample)
        )
    ).all()
    if not rows:
        return default
    units = np.array([cost_units(r.width, r.height, r.frames, r.steps) for r in rows], dtype=np.float64)
    seconds = np.array([r.gpu_seconds for r in rows], dtype=np.float64)
    n = len(rows)
    if n >= MIN_CALIBRATION_JOBS and np.ptp(units) > 0:
        slope, intercept = (float(c) for c in np.polyfit(units, seconds, 1))
        if slope > 0 and intercept >= 0:
            return CostModel(overhead_seconds=intercept, seconds_per_unit=slope, samples=n)
    scale = float(np.median(seconds / (default.overhead_seconds + default.seconds_per_unit * units)))
    return CostModel(
        overhead_seconds=default.overhead_seconds * scale, seconds_per_unit=default.seconds_per_unit * scale, samples=n
    )


DEFAULT_MAX_ATTEMPTS = 3  # tries of one job before it fails for good


@dataclass(frozen=True)
class NewJob:
    """Everything the bot knows about a request when it enqueues it: who and where, the generation parameters as
    one value (``params``, the model included), and the output size."""

    user_id: int
    channel_id: int
    guild_id: int | None
    source: JobSource
    params: GenerationParams
    width: int
    height: int
    input_sha256: str
    upload_limit_bytes: int
    interaction_token: str | None = None
    interaction_expires_at: datetime | None = None
    application_id: int | None = None
    reply_to_message_id: int | None = None
    status_message_id: int | None = None
    parent_job_id: int | None = None
    spoiler: bool = False
    """The requester asked for the result as a spoiler (``/animate spoiler:true``)."""
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    cost_estimate: float | None = None
    """GPU-seconds; None = estimate from the parameters with the model's calibrated cost model."""

    def __post_init__(self) -> None:
        if not isinstance(self.params, GenerationParams):
            raise TypeError(f"NewJob.params must be GenerationParams, got {type(self.params).__name__}")
        for name in ("user_id", "channel_id", "width", "height", "upload_limit_bytes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"NewJob.{name} must be a positive integer, got {value!r}")
        if not isinstance(self.source, JobSource):
            object.__setattr__(self, "source", JobSource(self.source))
        if not isinstance(self.input_sha256, str) or len(self.input_sha256) != 64:
            raise ValueError(f"NewJob.input_sha256 must be 64 hex chars, got {self.input_sha256!r}")
        if not isinstance(self.max_attempts, int) or self.max_attempts < 1:
            raise ValueError(f"NewJob.max_attempts must be >= 1, got {self.max_attempts!r}")
        if self.cost_estimate is not None and self.cost_estimate < 0:
            raise ValueError(f"NewJob.cost_estimate must be >= 0, got {self.cost_estimate!r}")
        if self.interaction_expires_at is not None and self.interaction_expires_at.tzinfo is None:
            raise ValueError("NewJob.interaction_expires_at must be timezone-aware")

    def columns(self) -> dict[str, Any]:
        """The job row's values this request decides: its own fields and the parameters' (one column each)."""
        values = {f.name: getattr(self, f.name) for f in fields(NewJob) if f.name not in ("params", "cost_estimate")}
        return values | self.params.to_dict()


def _resolution_px(resolution: str) -> int:
    text = resolution.strip().lower().removesuffix("p")
    if not text.isdigit():
        raise ValueError(f"resolution must look like '512p', got {resolution!r}")
    return int(text)


def _check_model(new: NewJob, policy: QuotaPolicy, facts: Row[Any]) -> None:
    """Refuse a model the bot does not enable (``policy.models``) or the server's admins do not allow."""
    model = new.params.model
    enabled = list(policy.models) or list(MODEL_KEYS)
    server = facts.guild_models
    allowed = [key for key in enabled if server is None or key in server]
    if model not in allowed:
        names = [display_name(key) for key in allowed]
        raise ModelNotAllowed(display_name(model), names, by_server=model in enabled)


def _check_guild(new: NewJob, facts: Row[Any]) -> None:
    """Refuse a request the guild's settings (read with the admission facts) do not allow."""
    params = new.params
    if facts.max_resolution is not None and _resolution_px(params.resolution) > _resolution_px(facts.max_resolution):
        raise OverGuildCap("resolution", params.resolution, facts.max_resolution)
    if facts.max_frames is not None and params.frames > facts.max_frames:
        raise OverGuildCap("frames", params.frames, facts.max_frames)
    if facts.max_steps is not None and params.steps > facts.max_steps:
        raise OverGuildCap("steps", params.steps, facts.max_steps)


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
        GuildSettings.models.label("guild_models"),
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
    return query.add_columns(
        tier_row.c.budget.label("tier_budget"), tier_row.c.max_pending.label("tier_pending")
    ).join_from(pending_jobs, tier_row, true())


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
    no longer kept. A pause does not refuse: the job is queued and waits (``jobs.transitions.claimable``). Raises a
    ``jobs.errors.RequestRefused`` subclass (nothing written) when a guild cap is exceeded, the user is banned
    (bot-wide or from this server), the prompt holds a blocked term (``PromptBlocked``), has too many pending jobs, the
    queue is full, or the cost does not fit in the user's rolling 24 h budget; ``jobs.blobs.BlobTooLarge`` for an image
    over the cap.
    """
    if not isinstance(new, NewJob):
        raise TypeError(f"enqueue_job needs a NewJob, got {type(new).__name__}")
    if not isinstance(policy, QuotaPolicy):
        raise TypeError(f"enqueue_job needs a QuotaPolicy, got {type(policy).__name__}")
    now = checked_now(now)
    await _lock_account(session, new.user_id, now)
    facts = (await session.execute(_admission_query(new, policy, now))).one()
    await refuse_if_banned_here(
        session, new.user_id, new.guild_id
    )  # a pause holds (jobs.transitions.claimable); a server ban refuses
    _check_model(new, policy, facts)
    _check_guild(new, facts)
    await check_prompt(
        session,
        guild_id=new.guild_id,
        texts=prompt_texts(new.params.prompt, new.params.negative_prompt),
        setting_terms=policy.prompt_blocklist,
    )  # again: a list may have changed since the request
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
        model = cost_model if cost_model is not None else await calibrate(session, model=new.params.model)
        cost = estimate_cost(new.width, new.height, new.params.frames, new.params.steps, model=model)
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
    job = Job(
        **new.columns(),
        status=JobStatus.QUEUED,
        priority=PRIORITY_ADMIN if policy.is_admin else PRIORITY_NORMAL,
        round=max(own_round, facts.current_round or 0),
        attempt=0,
        cancel_requested=False,
        progress_step=0,
        progress_total=new.params.steps,
        phase=JobPhase.QUEUED,
        cost_estimate=cost,
        created_at=now,
    )
    session.add(job)
    await session.flush()
    await add_ledger(session, user_id=new.user_id, job_id=job.id, kind=LedgerKind.RESERVE, amount=cost, now=now)
    return job
