"""What holds a queued job back: the bot-wide pause switch and its server's switch.

A pause never refuses a request: the job is queued as usual and :func:`claimable` keeps every worker from claiming
it until the switch that holds it is off; running jobs finish. :func:`pause_state` tells the request path what to
tell the user. The switches themselves are flipped by ``jobs.control``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from jobs.models import QUEUE_STATE_ROW_ID, GuildSettings, Job, QueueState


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

    def notice(self) -> str | None:
        """What a requester is told when a pause holds their new job (None when nothing does)."""
        if self.bot_paused:
            reason = f" ({self.bot_reason})" if self.bot_reason else ""
            return f"⏸️ The queue is paused by the bot's operator{reason}: this job waits and starts after resume."
        if self.guild_paused:
            return "⏸️ The queue is paused on this server by its admins: this job waits and starts after resume."
        return None


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
        guild_paused = bool(await session.scalar(select(GuildSettings.paused).where(GuildSettings.guild_id == guild_id)))
    return PauseState(bot_paused=bool(row and row.paused), bot_reason=row.reason if row else None,
                      guild_paused=guild_paused)
