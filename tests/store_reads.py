"""Reads of the job store that only tests make: whole rows, the audit log, invariants and what a user still has kept.

Each takes a session; the caller owns the transaction. The product reads the same tables through ``jobs.queue``,
``jobs.listings`` and ``jobs.stats``.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from sqlalchemy.orm import aliased

from jobs.db import normalize_url
from jobs.errors import JobNotFound
from jobs.models import (
    PENDING_STATUSES,
    AuditLog,
    GuildSettings,
    Job,
    JobVideo,
    LedgerKind,
    QuotaLedger,
    RoleTier,
    Worker,
)


async def get_job(session: AsyncSession, job_id: int) -> Job:
    """The job with this id (fresh from the database); raises JobNotFound."""
    job = await session.get(Job, job_id, populate_existing=True)
    if job is None:
        raise JobNotFound(job_id)
    return job


DEFAULT_LIST_LIMIT = 50


MAX_LIST_LIMIT = 500


async def list_actions(
    session: AsyncSession,
    *,
    limit: int = DEFAULT_LIST_LIMIT,
    target_user_id: int | None = None,
    guild_id: int | None = None,
    action: str | None = None,
) -> list[AuditLog]:
    """The newest audit rows first, optionally filtered by target user, guild or action."""
    if not 1 <= limit <= MAX_LIST_LIMIT:
        raise ValueError(f"limit must be between 1 and {MAX_LIST_LIMIT}, got {limit}")
    stmt = select(AuditLog).order_by(AuditLog.created_at.desc(), AuditLog.id.desc()).limit(limit)
    if target_user_id is not None:
        stmt = stmt.where(AuditLog.target_user_id == target_user_id)
    if guild_id is not None:
        stmt = stmt.where(AuditLog.guild_id == guild_id)
    if action is not None:
        stmt = stmt.where(AuditLog.action == action)
    return list((await session.scalars(stmt)).all())


async def get_guild_settings(session: AsyncSession, guild_id: int) -> GuildSettings | None:
    """The guild's settings row, or None when an admin never changed anything (no caps, not paused)."""
    return await session.get(GuildSettings, guild_id, populate_existing=True)


def is_sqlite(url_or_engine: str | AsyncEngine) -> bool:
    """True if the URL or engine is SQLite."""
    if isinstance(url_or_engine, AsyncEngine):
        return url_or_engine.dialect.name == "sqlite"
    return make_url(normalize_url(url_or_engine)).get_backend_name() == "sqlite"


async def list_role_tiers(session: AsyncSession, *, guild_id: int | None = None) -> list[RoleTier]:
    """Role tiers, biggest budget first (all, or one guild's)."""
    stmt = select(RoleTier).order_by(RoleTier.daily_gpu_seconds.desc(), RoleTier.role_id)
    if guild_id is not None:
        stmt = stmt.where(RoleTier.guild_id == guild_id)
    return list((await session.scalars(stmt)).all())


async def ledger_consistent(session: AsyncSession, user_id: int) -> bool:
    """Audit check: the user's open reservations (reserve rows without a release or refund) are exactly
    the user's pending jobs, and no job has more than one row of a kind (enforced by the unique key)."""
    closing = aliased(QuotaLedger)
    open_jobs = select(QuotaLedger.job_id).where(
        QuotaLedger.user_id == user_id,
        QuotaLedger.kind == LedgerKind.RESERVE,
        ~select(closing.id)
        .where(closing.job_id == QuotaLedger.job_id, closing.kind.in_([LedgerKind.RELEASE, LedgerKind.REFUND]))
        .exists(),
    )
    open_ids = set((await session.scalars(open_jobs)).all())
    pending_ids = set(
        (await session.scalars(select(Job.id).where(Job.user_id == user_id, Job.status.in_(PENDING_STATUSES)))).all()
    )
    return open_ids == pending_ids


async def kept_bytes_of_user(session: AsyncSession, user_id: int) -> tuple[int, int]:
    """(input images, videos) the store still keeps for ``user_id``'s jobs: what a deletion should bring to 0."""
    inputs = len(
        list(await session.scalars(select(Job.id).where(Job.user_id == user_id, Job.input_released_at.is_(None))))
    )
    videos = len(
        list(
            await session.scalars(
                select(JobVideo.job_id).join(Job, Job.id == JobVideo.job_id).where(Job.user_id == user_id)
            )
        )
    )
    return inputs, videos


async def list_workers(session: AsyncSession) -> list[Worker]:
    """All registered workers, most recent heartbeat first."""
    stmt = select(Worker).order_by(Worker.last_heartbeat_at.desc(), Worker.id).execution_options(populate_existing=True)
    return list((await session.scalars(stmt)).all())
