"""Per-server settings: caps on resolution, frames and steps, a pause switch, mention replies."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from jobs.audit import record_action
from jobs.models import GuildSettings, utcnow

UNSET: Any = object()
"""Marker for "leave this setting as it is" in ``update_guild_settings``."""


async def get_guild_settings(session: AsyncSession, guild_id: int) -> GuildSettings | None:
    """The guild's settings row, or None when an admin never changed anything (no caps, not paused)."""
    return await session.get(GuildSettings, guild_id, populate_existing=True)


def _check_cap(name: str, value: Any) -> None:
    if value is None or value is UNSET:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be None or a positive integer, got {value!r}")


async def update_guild_settings(
    session: AsyncSession,
    guild_id: int,
    *,
    by: int | None,
    max_resolution: str | None = UNSET,
    max_frames: int | None = UNSET,
    max_steps: int | None = UNSET,
    paused: bool = UNSET,
    mention_replies: bool = UNSET,
    now: datetime | None = None,
) -> GuildSettings:
    """Change the given settings (None clears a cap); audited as ``update_guild_settings``."""
    _check_cap("max_frames", max_frames)
    _check_cap("max_steps", max_steps)
    if max_resolution not in (None, UNSET):
        text = str(max_resolution).strip().lower()
        if not text.endswith("p") or not text[:-1].isdigit():
            raise ValueError(f"max_resolution must look like '512p', got {max_resolution!r}")
        max_resolution = text
    now = now or utcnow()
    row = await session.get(GuildSettings, guild_id, with_for_update=True)
    if row is None:
        row = GuildSettings(guild_id=guild_id, paused=False, mention_replies=False)
        session.add(row)
    changes: dict[str, Any] = {}
    for name, value in (
        ("max_resolution", max_resolution),
        ("max_frames", max_frames),
        ("max_steps", max_steps),
        ("paused", paused),
        ("mention_replies", mention_replies),
    ):
        if value is not UNSET:
            setattr(row, name, value)
            changes[name] = value
    row.updated_by, row.updated_at = by, now
    await record_action(session, actor_id=by, action="update_guild_settings", guild_id=guild_id, detail=changes, now=now)
    return row
