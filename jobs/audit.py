"""The admin audit log: who changed what, and when."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from jobs.models import AUDIT_SCOPE_BOT, AUDIT_SCOPE_SERVER, AuditLog, utcnow

MAX_ACTION_CHARS = 64


async def record_action(
    session: AsyncSession,
    *,
    actor_id: int | None,
    action: str,
    target_user_id: int | None = None,
    guild_id: int | None = None,
    job_id: int | None = None,
    detail: dict[str, Any] | None = None,
    now: datetime | None = None,
    scope: str | None = None,
) -> AuditLog:
    """Add one audit row in the caller's transaction (``actor_id=None`` means the system) and flush it.

    ``scope`` is ``bot`` (bot-wide, the operator's) or ``server`` (an action on ``guild_id`` alone); left out, it
    is ``server`` when a ``guild_id`` is given and ``bot`` otherwise.
    """
    if scope is None:
        scope = AUDIT_SCOPE_SERVER if guild_id is not None else AUDIT_SCOPE_BOT
    if scope not in (AUDIT_SCOPE_BOT, AUDIT_SCOPE_SERVER):
        raise ValueError(f"scope must be {AUDIT_SCOPE_BOT!r} or {AUDIT_SCOPE_SERVER!r}, got {scope!r}")
    if not isinstance(action, str) or not action or len(action) > MAX_ACTION_CHARS:
        raise ValueError(f"action must be a non-empty string of at most {MAX_ACTION_CHARS} chars, got {action!r}")
    if detail is not None and not isinstance(detail, dict):
        raise TypeError(f"detail must be a dict, got {type(detail).__name__}")
    row = AuditLog(
        actor_id=actor_id,
        action=action,
        target_user_id=target_user_id,
        guild_id=guild_id,
        job_id=job_id,
        detail=dict(detail or {}),
        created_at=now or utcnow(),
        scope=scope,
    )
    session.add(row)
    await session.flush()
    return row
