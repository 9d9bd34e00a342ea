"""The queue's switches and the server scope's powers: what holds jobs back, and who a server shut out.

- **Pause holds.** The bot-wide switch (``queue_state``, set by the operator) and each server's switch
  (``guild_settings.paused``, set by that server's admins) never refuse a request: it is queued as usual and
  :func:`claimable` keeps the worker from claiming it until the switch that holds it is off. Running jobs finish.
  :func:`pause_state` tells the request path what to tell the user.
- **Server bans.** A server's admins can stop a user from making videos *in that server* (:func:`ban_from_guild`);
  :func:`refuse_if_banned_here` is checked by admission; a bot-wide ban is :func:`jobs.quota.ban_user`.

Every change is audited with scope ``server`` in the caller's transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from jobs.audit import record_action
from jobs.errors import Banned
from jobs.models import (
    AUDIT_SCOPE_SERVER,
    QUEUE_STATE_ROW_ID,
    GuildBan,
    GuildSettings,
    Job,
    JobStatus,
    QueueState,
    utcnow,
)

__all__ = (
    "BannedHere",
    "PauseState",
    "ban_from_guild",
    "claimable",
    "pause_guild",
    "pause_state",
    "refuse_if_banned_here",
    "resume_guild",
    "unban_from_guild",
)


class BannedHere(Banned):
    """The user is banned from making videos in this server (by its admins)."""

    code = "banned_here"

    def __init__(self, reason: str | None) -> None:
        super().__init__(reason)
        text = "You are not allowed to make videos with this bot in this server"
        self.message = f"{text}: {reason}." if reason else f"{text}."
        self.args = (self.message,)


@dataclass(frozen=True)
class PauseState:
    """What holds a new job of one server back: the bot-wide switch (with its reason) and the server's."""

    bot_paused: bool
    bot_reason: str | None
    guild_paused: bool

    @property
    def held(self) -> bool:
        """Whether a job queued now would wait for a resume."""
        return self.bot_paused or self.guild_paused


def claimable() -> tuple[Any, ...]:
    """WHERE conditions (on :class:`Job`) that leave out jobs held by a pause: the bot-wide switch, or the switch
    of the job's server. For the claim statement, next to ``status = 'queued'``."""
    bot_paused = select(QueueState.id).where(QueueState.id == QUEUE_STATE_ROW_ID, QueueState.paused.is_(True))
    guild_paused = select(GuildSettings.guild_id).where(
        GuildSettings.guild_id == Job.guild_id, GuildSettings.paused.is_(True)
    )
    return (~bot_paused.exists(), ~guild_paused.exists())


async def pause_state(session: AsyncSession, guild_id: int | None) -> PauseState:
    """The switches that would hold a job of ``guild_id`` queued now."""
    row = (
        await session.execute(select(QueueState.paused, QueueState.reason).where(QueueState.id == QUEUE_STATE_ROW_ID))
    ).first()
    guild_paused = False
    if guild_id is not None:
        paused = select(GuildSettings.paused).where(GuildSettings.guild_id == guild_id)
        guild_paused = bool(await session.scalar(paused))
    return PauseState(bot_paused=bool(row and row.paused), bot_reason=row.reason if row else None,
                      guild_paused=guild_paused)


async def _set_guild_paused(
    session: AsyncSession, guild_id: int, paused: bool, *, by: int | None, reason: str | None, now: datetime | None
) -> bool:
    now = now or utcnow()
    row = await session.get(GuildSettings, guild_id, with_for_update=True, populate_existing=True)
    if row is None:
        row = GuildSettings(guild_id=guild_id, paused=False, mention_replies=False)
        session.add(row)
    changed = bool(row.paused) != paused
    row.paused, row.updated_by, row.updated_at = paused, by, now
    await record_action(
        session,
        actor_id=by,
        action="pause_server" if paused else "resume_server",
        guild_id=guild_id,
        detail={"reason": reason, "changed": changed},
        now=now,
        scope=AUDIT_SCOPE_SERVER,
    )
    return changed


async def pause_guild(
    session: AsyncSession, guild_id: int, *, by: int | None, reason: str | None = None, now: datetime | None = None
) -> bool:
    """Hold this server's queued jobs (new ones are still accepted); False if it was already paused."""
    return await _set_guild_paused(session, guild_id, True, by=by, reason=reason, now=now)


async def resume_guild(session: AsyncSession, guild_id: int, *, by: int | None, now: datetime | None = None) -> bool:
    """Let this server's queued jobs start again; False if it was not paused."""
    return await _set_guild_paused(session, guild_id, False, by=by, reason=None, now=now)


async def refuse_if_banned_here(session: AsyncSession, user_id: int, guild_id: int | None) -> None:
    """Raise :class:`BannedHere` if the server's admins banned ``user_id`` from using the bot there."""
    if guild_id is None:
        return
    ban = await session.get(GuildBan, (guild_id, user_id))
    if ban is not None:
        raise BannedHere(ban.reason)


async def ban_from_guild(
    session: AsyncSession, guild_id: int, user_id: int, *, reason: str | None, by: int, now: datetime | None = None
) -> tuple[bool, list[int]]:
    """Ban ``user_id`` from making videos in ``guild_id`` and cancel (with a refund) their jobs queued there; a
    running one finishes. Returns (newly banned, cancelled job ids); audited as ``ban_from_server``."""
    from jobs.queue import CancelOutcome, cancel_job

    now = now or utcnow()
    row = await session.get(GuildBan, (guild_id, user_id), with_for_update=True)
    newly = row is None
    if row is None:
        row = GuildBan(guild_id=guild_id, user_id=user_id, created_at=now)
        session.add(row)
    row.reason, row.banned_by = reason, by
    queued = list(
        await session.scalars(
            select(Job.id)
            .where(Job.user_id == user_id, Job.guild_id == guild_id, Job.status == JobStatus.QUEUED)
            .order_by(Job.id)
        )
    )
    cancelled = [job_id for job_id in queued if await cancel_job(session, job_id, now=now) == CancelOutcome.CANCELLED]
    await record_action(
        session,
        actor_id=by,
        action="ban_from_server",
        target_user_id=user_id,
        guild_id=guild_id,
        detail={"reason": reason, "cancelled": cancelled},
        now=now,
        scope=AUDIT_SCOPE_SERVER,
    )
    return newly, cancelled


async def unban_from_guild(
    session: AsyncSession, guild_id: int, user_id: int, *, by: int, now: datetime | None = None
) -> bool:
    """Lift a server ban; False if there was none. Audited as ``unban_from_server``."""
    result = await session.execute(
        delete(GuildBan).where(GuildBan.guild_id == guild_id, GuildBan.user_id == user_id).returning(GuildBan.user_id)
    )
    if result.first() is None:
        return False
    await record_action(
        session, actor_id=by, action="unban_from_server", target_user_id=user_id, guild_id=guild_id, now=now,
        scope=AUDIT_SCOPE_SERVER,
    )
    return True
