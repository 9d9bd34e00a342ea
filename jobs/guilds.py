"""Per-server settings: caps on resolution, frames and steps, the models allowed, a pause switch, mention replies."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from generator.model_spaces import MODEL_KEYS
from jobs.audit import record_action
from jobs.models import GuildSettings, utcnow

UNSET: Any = object()
"""Marker for "leave this setting as it is" in ``update_guild_settings``."""


async def get_guild_settings(session: AsyncSession, guild_id: int) -> GuildSettings | None:
    """The guild's settings row, or None when an admin never changed anything (no caps, not paused)."""
    return await session.get(GuildSettings, guild_id, populate_existing=True)


async def allowed_models(session: AsyncSession, guild_id: int | None, enabled: Sequence[str]) -> list[str]:
    """The enabled models (in their order, the default first) that the server ``guild_id`` allows; all of them
    in a DM or a server whose admins set no list."""
    if guild_id is None:
        return list(enabled)
    server = await session.scalar(select(GuildSettings.models).where(GuildSettings.guild_id == guild_id))
    return [key for key in enabled if server is None or key in server]


def _check_models(models: Any) -> Any:
    if models is None or models is UNSET:
        return models
    keys = list(dict.fromkeys(models))
    if not keys or any(key not in MODEL_KEYS for key in keys):
        raise ValueError(f"models must be None or a non-empty list of {', '.join(MODEL_KEYS)}, got {models!r}")
    return keys


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
    models: Sequence[str] | None = UNSET,
    now: datetime | None = None,
) -> GuildSettings:
    """Change the given settings (None clears a cap, or the model list: every enabled model); audited as
    ``update_guild_settings``."""
    models = _check_models(models)
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
        ("models", models),
    ):
        if value is not UNSET:
            setattr(row, name, value)
            changes[name] = value
    row.updated_by, row.updated_at = by, now
    await record_action(session, actor_id=by, action="update_guild_settings", guild_id=guild_id, detail=changes, now=now)
    return row
