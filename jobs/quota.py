"""GPU-seconds quotas: effective limits, status, the ledger, and the admin's limit/tier/ban tools.

A job's cost is estimated at enqueue (``jobs.admission.estimate_cost``, linear in pixels x frames x steps plus a
fixed overhead, calibrated from recently measured jobs by ``jobs.admission.calibrate``) and reserved with the job; on
success the reservation is released and the measured GPU-seconds charged; failures are refunded; a running job
that is cancelled is charged the time it used. The budget is a rolling 24-hour window over charges.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from sqlalchemy import ColumnElement, Select, delete, func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from jobs.audit import record_action
from jobs.db import locked_row
from jobs.models import (
    AUDIT_SCOPE_BOT,
    PENDING_STATUSES,
    Job,
    LedgerKind,
    QuotaLedger,
    RoleTier,
    UserLimit,
    utcnow,
)
from jobs.web_sessions import end_user_sessions

BUDGET_WINDOW = timedelta(hours=24)
"""Charges older than this no longer count against a budget."""
BUDGET_EPSILON_S = 1e-6
"""Float slack when comparing a sum of costs to a budget (GPU-seconds)."""


class QuotaSettings(Protocol):
    """The settings a quota policy is built from (``bot.settings.BotSettings``, ``web.config.WebConfig``)."""

    @property
    def quota_daily_gpu_seconds(self) -> float: ...

    @property
    def quota_max_pending(self) -> int: ...

    @property
    def queue_max_length(self) -> int | None: ...

    @property
    def prompt_blocklist(self) -> tuple[str, ...]: ...

    @property
    def models(self) -> tuple[str, ...]: ...


@dataclass(frozen=True)
class QuotaPolicy:
    """The defaults and facts the bot knows about a requester (from settings and the interaction)."""

    daily_gpu_seconds: float
    max_pending: int
    role_ids: frozenset[int] = frozenset()
    is_admin: bool = False
    max_queue_length: int | None = None
    """Cap on all queued jobs (everyone's); None = no cap."""
    prompt_blocklist: tuple[str, ...] = ()
    """The PROMPT_BLOCKLIST setting's terms (normalised, ``jobs.safety.parse_blocklist``), checked at admission."""
    models: tuple[str, ...] = ()
    """The enabled model keys (``I2V_MODELS``), checked at admission with the server's own list; empty = any."""

    def __post_init__(self) -> None:
        if not isinstance(self.daily_gpu_seconds, (int, float)) or self.daily_gpu_seconds < 0:
            raise ValueError(f"daily_gpu_seconds must be >= 0, got {self.daily_gpu_seconds!r}")
        if isinstance(self.max_pending, bool) or not isinstance(self.max_pending, int) or self.max_pending < 1:
            raise ValueError(f"max_pending must be an integer >= 1, got {self.max_pending!r}")
        if self.max_queue_length is not None and (
            not isinstance(self.max_queue_length, int) or self.max_queue_length < 1
        ):
            raise ValueError(f"max_queue_length must be None or an integer >= 1, got {self.max_queue_length!r}")
        object.__setattr__(self, "role_ids", frozenset(int(r) for r in self.role_ids))

    @classmethod
    def of_requester(
        cls, settings: QuotaSettings, *, role_ids: Iterable[int] = (), is_admin: bool = False
    ) -> QuotaPolicy:
        """The rules for one requester, from the app's settings and the Discord member's role ids (which select
        tiers): the one recipe for Discord's commands and the web page's signed-in users alike."""
        return cls(
            daily_gpu_seconds=settings.quota_daily_gpu_seconds,
            max_pending=settings.quota_max_pending,
            role_ids=frozenset(role_ids),
            is_admin=is_admin,  # queue priority: the operator's only, never a server admin's
            max_queue_length=settings.queue_max_length,
            prompt_blocklist=tuple(settings.prompt_blocklist),
            models=tuple(settings.models),
        )


@dataclass(frozen=True)
class EffectiveLimits:
    """What applies to one user: override > best role tier > policy default."""

    budget: float
    max_pending: int
    banned: bool
    ban_reason: str | None
    budget_source: str  # "override" | "tier" | "default"


@dataclass(frozen=True)
class QuotaStatus:
    """A user's budget position, as /quota shows it (GPU-seconds; refill_at None = nothing to wait for)."""

    budget: float
    used: float
    reserved: float
    remaining: float
    refill_at: datetime | None
    pending: int
    max_pending: int
    banned: bool = False


class LimitOverride(Protocol):
    """A user's own limits (a ``UserLimit`` row, or a result row with the same names)."""

    daily_gpu_seconds: float | None
    max_pending: int | None
    banned: bool
    ban_reason: str | None


def combine_limits(
    policy: QuotaPolicy, *, tier: tuple[float | None, int | None] | None, override: LimitOverride | None
) -> EffectiveLimits:
    """A per-user override wins, else the best of the user's tier roles (``tier``: the max budget and max
    pending cap over them, None for both when none has a tier), else the policy's defaults."""
    budget, max_pending, source = float(policy.daily_gpu_seconds), policy.max_pending, "default"
    if tier is not None and tier[0] is not None and tier[1] is not None:
        budget, max_pending, source = float(tier[0]), int(tier[1]), "tier"
    if override is not None:
        if override.daily_gpu_seconds is not None:
            budget, source = float(override.daily_gpu_seconds), "override"
        if override.max_pending is not None:
            max_pending = override.max_pending
    return EffectiveLimits(
        budget=budget,
        max_pending=max_pending,
        banned=bool(override is not None and override.banned),
        ban_reason=override.ban_reason if override is not None else None,
        budget_source=source,
    )


def best_tier(policy: QuotaPolicy) -> Select[float | None, int | None] | None:
    """The max budget and max pending cap over the policy's roles that have a tier (None: no roles)."""
    if not policy.role_ids:
        return None
    return select(
        func.max(RoleTier.daily_gpu_seconds).label("budget"), func.max(RoleTier.max_pending).label("max_pending")
    ).where(RoleTier.role_id.in_(sorted(policy.role_ids)))


async def effective_limits(session: AsyncSession, user_id: int, policy: QuotaPolicy) -> EffectiveLimits:
    """Resolve the user's budget and pending cap (``combine_limits``)."""
    override = await session.get(UserLimit, user_id, populate_existing=True)
    tier_query = best_tier(policy)
    tier = None
    if tier_query is not None:
        budget, max_pending = (await session.execute(tier_query)).one()
        tier = (budget, max_pending)
    return combine_limits(policy, tier=tier, override=override)


def in_window(user_id: int, now: datetime) -> tuple[ColumnElement[bool], ...]:
    """The user's charges that still count at ``now`` (index ix_quota_ledger_user_id_kind_created_at)."""
    return (
        QuotaLedger.user_id == user_id,
        QuotaLedger.kind == LedgerKind.CHARGE,
        QuotaLedger.created_at > now - BUDGET_WINDOW,
    )


async def charges_in_window(session: AsyncSession, user_id: int, now: datetime) -> list[tuple[datetime, float]]:
    """The user's charges that still count at ``now``, oldest first: (charged_at, GPU-seconds)."""
    rows = await session.execute(
        select(QuotaLedger.created_at, QuotaLedger.amount)
        .where(*in_window(user_id, now))
        .order_by(QuotaLedger.created_at)
    )
    return [(r.created_at, float(r.amount)) for r in rows]


async def pending_usage(session: AsyncSession, user_id: int) -> tuple[int, float]:
    """(number of queued + running jobs, sum of their reserved estimates) for the user."""
    count, reserved = (
        await session.execute(
            select(func.count(Job.id), func.coalesce(func.sum(Job.cost_estimate), 0.0)).where(
                Job.user_id == user_id, Job.status.in_(PENDING_STATUSES)
            )
        )
    ).one()
    return int(count), float(reserved)


def refill_time(
    charges: list[tuple[datetime, float]], budget: float, reserved: float, needed: float
) -> datetime | None:
    """When enough old charges leave the window for ``needed`` to fit; None if waiting cannot help."""
    remaining = budget - sum(a for _, a in charges) - reserved
    if remaining + BUDGET_EPSILON_S >= needed:
        return None
    for charged_at, amount in charges:
        remaining += amount
        if remaining + BUDGET_EPSILON_S >= needed:
            return charged_at + BUDGET_WINDOW
    return None


async def quota_status(
    session: AsyncSession, user_id: int, policy: QuotaPolicy, *, now: datetime | None = None
) -> QuotaStatus:
    """The user's budget, used (24 h), reserved, remaining, next refill, and pending count."""
    now = now or utcnow()
    limits = await effective_limits(session, user_id, policy)
    charges = await charges_in_window(session, user_id, now)
    pending, reserved = await pending_usage(session, user_id)
    used = sum(a for _, a in charges)
    remaining = max(0.0, limits.budget - used - reserved)
    refill_at = charges[0][0] + BUDGET_WINDOW if charges else None
    return QuotaStatus(
        budget=limits.budget,
        used=used,
        reserved=reserved,
        remaining=remaining,
        refill_at=refill_at,
        pending=pending,
        max_pending=limits.max_pending,
        banned=limits.banned,
    )


async def add_ledger(
    session: AsyncSession, *, user_id: int, job_id: int, kind: LedgerKind, amount: float, now: datetime
) -> None:
    """Append one ledger row (unique per job and kind; a duplicate raises IntegrityError)."""
    if amount < 0:
        raise ValueError(f"ledger amount must be >= 0, got {amount!r} ({kind.value} for job {job_id})")
    await session.execute(
        insert(QuotaLedger).values(user_id=user_id, job_id=job_id, kind=kind, amount=float(amount), created_at=now)
    )


def _check_limit_values(daily_gpu_seconds: float | None, max_pending: int | None) -> None:
    if daily_gpu_seconds is not None and (not isinstance(daily_gpu_seconds, (int, float)) or daily_gpu_seconds < 0):
        raise ValueError(f"daily_gpu_seconds must be None or >= 0, got {daily_gpu_seconds!r}")
    if max_pending is not None and (
        isinstance(max_pending, bool) or not isinstance(max_pending, int) or max_pending < 1
    ):
        raise ValueError(f"max_pending must be None or an integer >= 1, got {max_pending!r}")


async def set_user_limit(
    session: AsyncSession,
    user_id: int,
    *,
    daily_gpu_seconds: float | None,
    max_pending: int | None,
    by: int | None,
    now: datetime | None = None,
) -> UserLimit:
    """Set (or with None, clear) a user's budget and pending-cap overrides; audited as ``set_user_limit``."""
    _check_limit_values(daily_gpu_seconds, max_pending)
    now = now or utcnow()
    row = await locked_row(session, UserLimit, user_id, user_id=user_id, banned=False, updated_at=now)
    row.daily_gpu_seconds = None if daily_gpu_seconds is None else float(daily_gpu_seconds)
    row.max_pending = max_pending
    row.updated_by, row.updated_at = by, now
    await record_action(
        session,
        actor_id=by,
        action="set_user_limit",
        target_user_id=user_id,
        detail={"daily_gpu_seconds": row.daily_gpu_seconds, "max_pending": max_pending},
        now=now,
    )
    return row


async def ban_user(
    session: AsyncSession, user_id: int, *, reason: str | None, by: int | None, now: datetime | None = None
) -> UserLimit:
    """Ban a user from enqueueing (queued jobs stay; admins may cancel them) and end their web sessions; audited
    as ``ban_user``."""
    now = now or utcnow()
    row = await locked_row(session, UserLimit, user_id, user_id=user_id, banned=False, updated_at=now)
    row.banned, row.ban_reason = True, (reason or None)
    row.updated_by, row.updated_at = by, now
    ended = await end_user_sessions(session, user_id, now=now)  # their open pages get 401 on the next request
    await record_action(
        session,
        actor_id=by,
        action="ban_user",
        target_user_id=user_id,
        detail={"reason": reason, **({"web_sessions_ended": ended} if ended else {})},
        now=now,
    )
    return row


async def unban_user(session: AsyncSession, user_id: int, *, by: int | None, now: datetime | None = None) -> bool:
    """Lift a ban; False if the user was not banned. Audited as ``unban_user``."""
    now = now or utcnow()
    row = await session.get(UserLimit, user_id, with_for_update=True, populate_existing=True)
    if row is None or not row.banned:
        return False
    row.banned, row.ban_reason = False, None
    row.updated_by, row.updated_at = by, now
    await record_action(session, actor_id=by, action="unban_user", target_user_id=user_id, now=now)
    return True


async def set_role_tier(
    session: AsyncSession,
    role_id: int,
    *,
    guild_id: int | None,
    name: str,
    daily_gpu_seconds: float,
    max_pending: int,
    by: int | None,
    now: datetime | None = None,
) -> RoleTier:
    """Create or replace the tier granted by a Discord role; audited as ``set_role_tier``."""
    if daily_gpu_seconds is None or max_pending is None:
        raise ValueError("a role tier needs both daily_gpu_seconds and max_pending")
    _check_limit_values(daily_gpu_seconds, max_pending)
    now = now or utcnow()
    row = await locked_row(session, RoleTier, role_id, role_id=role_id)
    row.guild_id, row.name = guild_id, name
    row.daily_gpu_seconds, row.max_pending = float(daily_gpu_seconds), max_pending
    row.updated_by, row.updated_at = by, now
    await record_action(
        session,
        actor_id=by,
        action="set_role_tier",
        guild_id=guild_id,
        detail={
            "role_id": role_id,
            "name": name,
            "daily_gpu_seconds": float(daily_gpu_seconds),
            "max_pending": max_pending,
        },
        now=now,
        scope=AUDIT_SCOPE_BOT,  # tiers are the operator's, whichever server the role lives in
    )
    return row


async def remove_role_tier(session: AsyncSession, role_id: int, *, by: int | None, now: datetime | None = None) -> bool:
    """Delete a role tier; False if there was none. Audited as ``remove_role_tier``."""
    now = now or utcnow()
    result = await session.execute(delete(RoleTier).where(RoleTier.role_id == role_id).returning(RoleTier.guild_id))
    row = result.first()
    if row is None:
        return False
    await record_action(
        session,
        actor_id=by,
        action="remove_role_tier",
        guild_id=row.guild_id,
        detail={"role_id": role_id},
        now=now,
        scope=AUDIT_SCOPE_BOT,
    )
    return True
