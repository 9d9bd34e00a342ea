"""Who the bot's operator is, as far as the store knows: the Discord application's owner (or its team's members),
recorded by the bot each time it logs in, so the page and ``python -m bot web-link`` know the operator without
reaching Discord. OPERATOR_USER_IDS and OPERATOR_ROLE_IDS (the settings) add to them; the caller passes those.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from jobs.models import AppOperator, utcnow

LOCAL_OPERATOR_ID = 1  # the local operator account: no snowflake is 1 (a machine that never met Discord)
SOURCES = ("owner", "team")  # AppOperator.source: the application's owner, or a member of its owning team


@dataclass(frozen=True)
class FirstOperator:
    """The user the operator's sign-in link acts as, and where that id came from."""

    user_id: int
    source: str  # "setting" (OPERATOR_USER_IDS), "owner", "team" or "local"


async def record_app_operators(
    session: AsyncSession, user_ids: Iterable[int], *, source: str, now: datetime | None = None
) -> frozenset[int]:
    """Replace the recorded owner(s) with ``user_ids`` (the owner, or the team's members) read from Discord."""
    if source not in SOURCES:
        raise ValueError(f"source must be one of {SOURCES}, got {source!r}")
    ids = frozenset(int(user_id) for user_id in user_ids)
    if any(user_id <= 0 for user_id in ids):
        raise ValueError(f"user ids must be positive, got {sorted(ids)!r}")
    now = now or utcnow()
    await session.execute(delete(AppOperator))
    for user_id in sorted(ids):
        session.add(AppOperator(user_id=user_id, source=source, recorded_at=now))
    await session.flush()
    return ids


async def app_operators(session: AsyncSession) -> frozenset[int]:
    """The owner(s) the bot last recorded (empty before its first login)."""
    return frozenset(int(user_id) for user_id in await session.scalars(select(AppOperator.user_id)))


async def first_operator(session: AsyncSession, configured: Iterable[int]) -> FirstOperator:
    """Who the operator's link acts as: the lowest configured operator id, else the recorded owner (the lowest
    team member's id), else the local operator account."""
    ids = sorted(int(user_id) for user_id in configured)
    if ids:
        return FirstOperator(ids[0], "setting")
    row = await session.scalar(select(AppOperator).order_by(AppOperator.source, AppOperator.user_id).limit(1))
    if row is not None:
        return FirstOperator(int(row.user_id), row.source)
    return FirstOperator(LOCAL_OPERATOR_ID, "local")
