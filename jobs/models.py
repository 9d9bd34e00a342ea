"""SQLAlchemy 2 models of the job store: the declarative base, the column types, and every table.

Every timestamp is a timezone-aware UTC ``datetime`` in Python (:class:`UtcDateTime`); enums are portable VARCHARs
with a CHECK constraint (:func:`str_enum`); constraint names follow :data:`NAMING_CONVENTION`.
Discord snowflakes (user, guild, channel, message, role and application ids) are 64-bit integers.
Tests and the app create tables through Alembic (``jobs.db.migrate``), never ``create_all``.
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

from generator.model_spaces import DEFAULT_MODEL
from generator.params import GenerationParams

NAMING_CONVENTION: dict[str, str] = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
"""Constraint names are deterministic, so Alembic batch migrations on SQLite can address them."""

# SQLite needs INTEGER (not BIGINT) for an autoincrementing rowid primary key.
BigIntId = BigInteger().with_variant(Integer(), "sqlite")


class UtcDateTime(TypeDecorator[datetime]):
    """A timestamp that is always timezone-aware UTC in Python.

    PostgreSQL stores ``timestamptz``; SQLite stores naive UTC text in SQLAlchemy's fixed-width format,
    so ``<`` and ``>`` comparisons in SQL order correctly. Binding a naive datetime is refused: it is
    the classic source of silently shifted times.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError(f"UtcDateTime needs a datetime, got {type(value).__name__}: {value!r}")
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"UtcDateTime refuses a naive datetime {value!r}: pass an aware UTC time")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


class Base(DeclarativeBase):
    """Declarative base; its metadata carries the constraint naming convention."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def str_enum(enum_cls: type[enum.Enum], name: str, length: int = 16) -> Enum:
    """A portable VARCHAR enum (with a CHECK constraint) storing the members' values."""
    return Enum(
        enum_cls,
        name=name,
        native_enum=False,
        create_constraint=True,
        length=length,
        values_callable=lambda members: [m.value for m in members],
        validate_strings=True,
    )


QUEUE_STATE_ROW_ID = 1
"""The single row of :class:`QueueState` (created by the first migration)."""

PRIORITY_NORMAL = 0
PRIORITY_ADMIN = 10
"""Claim order is ``priority DESC``: the bot operator's jobs run before everyone else's."""

AUDIT_SCOPE_BOT = "bot"
AUDIT_SCOPE_SERVER = "server"
"""The two scopes an audited action can have (:attr:`AuditLog.scope`)."""


class JobStatus(str, enum.Enum):
    """Lifecycle states of a :class:`Job` (see the state machine in its docstring)."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


TERMINAL_STATUSES: frozenset[JobStatus] = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED})
PENDING_STATUSES: frozenset[JobStatus] = frozenset({JobStatus.QUEUED, JobStatus.RUNNING})


class JobPhase(str, enum.Enum):
    """What a job is doing now (``Job.phase``); the worker reports the running ones with its progress."""

    QUEUED = "queued"
    LOADING = "loading"  # claimed; the worker is reading the input
    PREPARING = "preparing"
    DENOISING = "denoising"
    DECODING = "decoding"
    ENCODING = "encoding"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


class JobSource(str, enum.Enum):
    """Which flow created a job (a Discord one, or the web page)."""

    SLASH = "slash"
    CONTEXT_MENU = "context_menu"
    MENTION = "mention"
    REROLL = "reroll"
    VARY = "vary"
    WEB = "web"  # the web page (web/): no channel, the page shows and downloads the result


class LedgerKind(str, enum.Enum):
    """Kinds of :class:`QuotaLedger` rows; at most one of each kind per job."""

    RESERVE = "reserve"  # estimate held at enqueue
    RELEASE = "release"  # estimate given back when the job settles (success or cancel while running)
    CHARGE = "charge"  # measured GPU-seconds, counted in the rolling 24 h window
    REFUND = "refund"  # estimate given back without charge (failure, cancel while queued, clear)


class Job(Base):
    """One image-to-video request, from enqueue to delivery.

    State machine (``status``; every transition is a function in ``jobs.transitions``)::

        queued --claim--> running --finish (MP4 stored)--> succeeded --deliver--> (delivered_at set)
           |                 |----fail-----------------> failed      (reservation refunded)
           |                 |----finish_cancelled-----> cancelled   (charged for GPU time used)
           |                 |----release--------------> queued      (shutdown: no charge, releases+1)
           |                 '----rescue (worker dead, lease or deadline expired)
           |                         --> queued (runs again)
           |                         --> failed after max_attempts (refunded)
           |                         --> cancelled if cancel_requested (refunded)
           '----cancel / clear--> cancelled (refunded)
        finished --prune / delete--> the same status, its stored input and MP4 gone (``input_released_at``)

    Each claim increments ``attempt`` and nothing ever decrements it; a job given back without charge counts in
    ``releases`` instead, so the attempts charged are ``attempt - releases``. Every write by a worker is fenced
    by ``id``, ``attempt``, ``worker_id`` and ``status='running'``, so a worker that was presumed dead cannot
    overwrite a newer attempt. ``round`` implements round robin across users (see ``jobs.admission``).
    The input image lives in :class:`InputImage` (one row per distinct image, reference-counted by the jobs that
    hold it), the finished MP4 in :class:`JobVideo`; no row names a path another process wrote.
    Failed and cancelled jobs are "delivered" too once the bot has told the user (``delivered_at``).
    """

    __tablename__ = "jobs"
    __table_args__ = (
        Index("ix_jobs_claim_order", "status", "priority", "round", "id"),
        Index("ix_jobs_user_id_status", "user_id", "status"),
        Index("ix_jobs_status_finished_at", "status", "finished_at"),
        Index("ix_jobs_undelivered", "status", "delivered_at"),
        Index("ix_jobs_guild_id_created_at", "guild_id", "created_at"),
        Index("ix_jobs_started_at", "started_at"),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    # who and where
    user_id: Mapped[int] = mapped_column(BigInteger)
    guild_id: Mapped[int | None] = mapped_column(BigInteger)
    channel_id: Mapped[int] = mapped_column(BigInteger)
    source: Mapped[JobSource] = mapped_column(str_enum(JobSource, "job_source"))
    parent_job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"))
    # generation parameters (generator.params.GenerationParams, one column per field; ``params`` reads them back)
    model: Mapped[str] = mapped_column(String(32), default=DEFAULT_MODEL, server_default=DEFAULT_MODEL)
    prompt: Mapped[str] = mapped_column(Text)
    negative_prompt: Mapped[str] = mapped_column(Text, default="")
    preset: Mapped[str | None] = mapped_column(String(32))
    resolution: Mapped[str] = mapped_column(String(16))
    frames: Mapped[int] = mapped_column(Integer)
    fps: Mapped[int] = mapped_column(Integer)
    steps: Mapped[int] = mapped_column(Integer)
    guidance: Mapped[float] = mapped_column(Float)
    seed: Mapped[int] = mapped_column(BigInteger)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    # stored input image (InputImage.sha256); the job holds one reference until input_released_at is set
    input_sha256: Mapped[str] = mapped_column(String(64))
    input_released_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    # queue state
    status: Mapped[JobStatus] = mapped_column(str_enum(JobStatus, "job_status"), default=JobStatus.QUEUED)
    priority: Mapped[int] = mapped_column(Integer, default=PRIORITY_NORMAL)
    round: Mapped[int] = mapped_column(Integer, default=0)
    affinity_skips: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    """How often a worker holding another model took a later job ahead of this one (bounded, see the claim)."""
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    releases: Mapped[int] = mapped_column(Integer, default=0, server_default="0")  # given back uncharged
    max_attempts: Mapped[int] = mapped_column(Integer, default=3)
    worker_id: Mapped[str | None] = mapped_column(String(128))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # progress
    progress_step: Mapped[int] = mapped_column(Integer, default=0)
    progress_total: Mapped[int] = mapped_column(Integer, default=0)
    phase: Mapped[JobPhase] = mapped_column(str_enum(JobPhase, "job_phase", 32), default=JobPhase.QUEUED)
    # cost and result
    cost_estimate: Mapped[float] = mapped_column(Float)
    gpu_seconds: Mapped[float | None] = mapped_column(Float)
    output_path: Mapped[str | None] = mapped_column(Text)  # the delivering process's disk copy, if it wrote one
    output_bytes: Mapped[int | None] = mapped_column(BigInteger)
    error: Mapped[str | None] = mapped_column(Text)  # user-facing
    error_detail: Mapped[str | None] = mapped_column(Text)  # internal (traceback, worker notes)
    # times
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UtcDateTime())  # start of the current/last attempt
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    delivered_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    delivery_error: Mapped[str | None] = mapped_column(Text)  # why the result could not be posted (video kept)
    # Discord delivery
    status_message_id: Mapped[int | None] = mapped_column(BigInteger)
    result_message_id: Mapped[int | None] = mapped_column(BigInteger)
    reply_to_message_id: Mapped[int | None] = mapped_column(BigInteger)
    interaction_token: Mapped[str | None] = mapped_column(Text)
    interaction_expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    application_id: Mapped[int | None] = mapped_column(BigInteger)
    upload_limit_bytes: Mapped[int] = mapped_column(BigInteger)
    # content safety (jobs.safety): the requester's spoiler choice, and the worker's classifier verdicts
    spoiler: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    input_verdict: Mapped[str | None] = mapped_column(String(16))  # Verdict value; None = not checked
    output_verdict: Mapped[str | None] = mapped_column(String(16))
    safety_seconds: Mapped[float | None] = mapped_column(Float)  # the classifier's time, apart from generation
    withheld_at: Mapped[datetime | None] = mapped_column(UtcDateTime())  # an unsafe video not posted; bytes gone

    @property
    def params(self) -> GenerationParams:
        """The generation parameters as one value (the model included)."""
        return GenerationParams.of(self)

    def __repr__(self) -> str:
        return f"<Job {self.id} {self.status.value} user={self.user_id} attempt={self.attempt}>"


class InputImage(Base):
    """One distinct input image (content-addressed), kept while some job holds a reference to it.

    ``refs`` counts the jobs whose ``input_released_at`` is NULL and whose ``input_sha256`` is this one; it is
    changed only in the transactions that add or drop such a reference (``jobs.blobs``), which lock this row,
    so concurrent requests with the same image cannot delete each other's input.
    """

    __tablename__ = "input_images"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    data: Mapped[bytes | None] = mapped_column(LargeBinary)  # NULL when an object store holds the bytes
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    refs: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)


class JobVideo(Base):
    """The finished MP4 of a succeeded job, written in the transaction that marks it succeeded."""

    __tablename__ = "job_videos"

    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    data: Mapped[bytes | None] = mapped_column(LargeBinary)  # NULL when an object store holds the bytes
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)


CLAIM_ORDER = (Job.priority.desc(), Job.round.asc(), Job.id.asc())
"""The order in which queued jobs are claimed (the operator first, then round robin, then age), written once: the claim,
the queue positions and the admin queue listing all use it."""


class QuotaAccount(Base):
    """One row per user who ever enqueued: the row lock that serialises that user's admissions.

    Budget usage is derived, never cached: used = charges in the ledger over the last 24 h,
    reserved = estimates of the user's queued and running jobs. Locking this row first makes the
    check-and-insert race-free on PostgreSQL; SQLite serialises writers with BEGIN IMMEDIATE.
    """

    __tablename__ = "quota_accounts"

    user_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    last_enqueue_at: Mapped[datetime | None] = mapped_column(UtcDateTime())


class QuotaLedger(Base):
    """Append-only record of quota movements; unique on (job, kind) so a retried settle charges once."""

    __tablename__ = "quota_ledger"
    __table_args__ = (
        UniqueConstraint("job_id", "kind"),
        Index("ix_quota_ledger_user_id_kind_created_at", "user_id", "kind", "created_at"),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(BigInteger)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    kind: Mapped[LedgerKind] = mapped_column(str_enum(LedgerKind, "ledger_kind"))
    amount: Mapped[float] = mapped_column(Float)  # GPU-seconds, >= 0
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)


class UserLimit(Base):
    """Per-user override set by an admin: budget, pending cap, ban. NULL fields fall back to tiers/defaults."""

    __tablename__ = "user_limits"

    user_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    daily_gpu_seconds: Mapped[float | None] = mapped_column(Float)
    max_pending: Mapped[int | None] = mapped_column(Integer)
    banned: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    ban_reason: Mapped[str | None] = mapped_column(Text)
    updated_by: Mapped[int | None] = mapped_column(BigInteger)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)


class RoleTier(Base):
    """A Discord role that grants a budget and pending cap; a user's effective limit is the max over tiers."""

    __tablename__ = "role_tiers"

    role_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    guild_id: Mapped[int | None] = mapped_column(BigInteger, index=True)
    name: Mapped[str] = mapped_column(String(100), default="")
    daily_gpu_seconds: Mapped[float] = mapped_column(Float)
    max_pending: Mapped[int] = mapped_column(Integer)
    updated_by: Mapped[int | None] = mapped_column(BigInteger)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)


class GuildSettings(Base):
    """Per-server settings set by admins: caps on resolution, frames and steps, and a pause switch."""

    __tablename__ = "guild_settings"

    guild_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    max_resolution: Mapped[str | None] = mapped_column(String(16))  # e.g. "512p"
    max_frames: Mapped[int | None] = mapped_column(Integer)
    max_steps: Mapped[int | None] = mapped_column(Integer)
    paused: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    mention_replies: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    unsafe_policy: Mapped[str | None] = mapped_column(String(16))  # jobs.safety.UnsafePolicy; None = the operator's
    spoiler_all: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())  # every result
    models: Mapped[list[str] | None] = mapped_column(JSON)  # model keys this server may use; None = every enabled
    updated_by: Mapped[int | None] = mapped_column(BigInteger)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)


class BlockedTerm(Base):
    """A word or phrase refused in prompts (``jobs.safety``): one server's list, or with ``guild_id``
    :data:`BOT_WIDE_LIST` the operator's run-time list for every server (beside the PROMPT_BLOCKLIST setting)."""

    __tablename__ = "blocked_terms"

    guild_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    term: Mapped[str] = mapped_column(String(100), primary_key=True)  # normalised (jobs.safety.normalize_term)
    added_by: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)


BOT_WIDE_LIST = 0
"""``BlockedTerm.guild_id`` of the operator's bot-wide list (no Discord snowflake is 0)."""


class Report(Base):
    """A member's report of a result (once per member and job), open until an admin resolves it."""

    __tablename__ = "reports"
    __table_args__ = (
        UniqueConstraint("job_id", "reporter_id"),
        Index("ix_reports_guild_id_resolved_at", "guild_id", "resolved_at"),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    guild_id: Mapped[int | None] = mapped_column(BigInteger)  # the job's server
    reporter_id: Mapped[int] = mapped_column(BigInteger, index=True)
    reported_user_id: Mapped[int] = mapped_column(BigInteger, index=True)  # who made the video
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    resolved_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    resolved_by: Mapped[int | None] = mapped_column(BigInteger)
    resolution: Mapped[str | None] = mapped_column(String(16))  # deleted, banned, dismissed


class QueueState(Base):
    """The global queue switch (one row, id 1): while paused, claims return None; new jobs are still queued."""

    __tablename__ = "queue_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    paused: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    reason: Mapped[str | None] = mapped_column(Text)
    changed_by: Mapped[int | None] = mapped_column(BigInteger)
    changed_at: Mapped[datetime | None] = mapped_column(UtcDateTime())


class AuditLog(Base):
    """One admin action (limits, tiers, bans, pause, clear, cancel of someone else's job, settings)."""

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_created_at", "created_at"),)

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    actor_id: Mapped[int | None] = mapped_column(BigInteger)  # None = the system
    action: Mapped[str] = mapped_column(String(64))
    target_user_id: Mapped[int | None] = mapped_column(BigInteger, index=True)
    guild_id: Mapped[int | None] = mapped_column(BigInteger)
    job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"))
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    scope: Mapped[str] = mapped_column(String(16), default=AUDIT_SCOPE_BOT, server_default=AUDIT_SCOPE_BOT)
    """``bot`` (an operator's bot-wide action) or ``server`` (an action on ``guild_id`` alone)."""


class GuildBan(Base):
    """A user a server's admins banned from using the bot in that server (other servers are not affected)."""

    __tablename__ = "guild_bans"

    guild_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    user_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    reason: Mapped[str | None] = mapped_column(Text)
    banned_by: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)


class WebSignInLink(Base):
    """A single-use sign-in link for the web page, given to a Discord user by the bot; only its hash is kept.
    It carries the member's role ids as Discord sent them with ``/web``, so the page applies the same tiers."""

    __tablename__ = "web_sign_in_links"

    token_sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(BigInteger)
    guild_id: Mapped[int | None] = mapped_column(BigInteger)  # the server /web was used in (None: a DM)
    role_ids: Mapped[list[int]] = mapped_column(JSON, default=list, server_default="[]")  # the member's roles there
    operator: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())  # the printed link
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime())
    used_at: Mapped[datetime | None] = mapped_column(UtcDateTime())


class WebSession(Base):
    """A signed-in browser: acts as ``user_id`` (with the link's roles) until ``expires_at`` or sign-out; only the
    token's hash is kept. ``csrf_token`` must accompany every state-changing request of this session."""

    __tablename__ = "web_sessions"
    __table_args__ = (Index("ix_web_sessions_user_id", "user_id"),)

    token_sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(BigInteger)
    guild_id: Mapped[int | None] = mapped_column(BigInteger)  # from the link: where the roles below were read
    role_ids: Mapped[list[int]] = mapped_column(JSON, default=list, server_default="[]")  # they select tiers
    csrf_token: Mapped[str] = mapped_column(String(64))
    operator: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())  # from the link
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime())
    ended_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    roles_checked_at: Mapped[datetime | None] = mapped_column(UtcDateTime())  # role_ids read from Discord then


class AppOperator(Base):
    """The Discord application's owner, or each member of the team that owns it, as the bot last read them from
    Discord at login: the bot's operators besides OPERATOR_USER_IDS, known without Discord (the page, the CLI)."""

    __tablename__ = "app_operators"

    user_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    source: Mapped[str] = mapped_column(String(16))  # "owner" or "team"
    recorded_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)


class WorkerState(str, enum.Enum):
    """What a worker reports about itself in the registry."""

    STARTING = "starting"
    LOADING = "loading"
    IDLE = "idle"
    BUSY = "busy"
    STOPPING = "stopping"
    STOPPED = "stopped"
    CRASHED = "crashed"


class Worker(Base):
    """Registry row of each worker process (``jobs.workers``): host, pid, state, model, GPU, current job and the
    heartbeat its own thread stamps every few seconds. Rescuers requeue the running jobs of a worker whose heartbeat
    is older than ``WORKER_DEAD_AFTER`` or whose row says it stopped or crashed (``jobs.maintenance``). A worker that
    cannot start records why (``failure_reason``); video generation counts as unavailable while no worker is alive
    and one says why (``jobs.stats.unavailable_reason``)."""

    __tablename__ = "workers"

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    state: Mapped[WorkerState] = mapped_column(str_enum(WorkerState, "worker_state"))
    model: Mapped[str | None] = mapped_column(String(255))  # where the loaded model came from (hub id or folder)
    loadable_models: Mapped[list[str]] = mapped_column(JSON, default=list, server_default="[]")
    """The model keys this worker may load (``I2V_MODELS`` narrowed by ``WORKER_MODELS``), in its order."""
    loaded_model: Mapped[str | None] = mapped_column(String(32))
    """The model key it holds on its GPU now; None while it holds none (starting, or between an unload and a load)."""
    switches: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    """Model switches (unload one, load another) since the row was made."""
    switch_seconds: Mapped[float] = mapped_column(Float, default=0.0, server_default="0")
    """Seconds spent in those switches, in all."""
    gpu_name: Mapped[str | None] = mapped_column(String(255))
    gpu_memory_bytes: Mapped[int | None] = mapped_column(BigInteger)
    current_job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"))
    restarts: Mapped[int] = mapped_column(Integer, default=0)
    started_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    last_heartbeat_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    jobs_done: Mapped[int] = mapped_column(Integer, default=0)
    failure_reason: Mapped[str | None] = mapped_column(Text)
    """One line: why this worker's last start failed (the exception's message); cleared once it is idle."""
    unavailable_since: Mapped[datetime | None] = mapped_column(UtcDateTime())
    """Set by its supervisor after repeated start failures (it then retries slowly); cleared once it is idle."""
    download_model: Mapped[str | None] = mapped_column(String(32))
    """The model key whose files it is downloading now (its first load of it); None while it downloads nothing."""
    download_done_bytes: Mapped[int | None] = mapped_column(BigInteger)
    download_total_bytes: Mapped[int | None] = mapped_column(BigInteger)
    """Bytes of that download done and in all (the total grows while the hub announces further files)."""
