"""What the page's handlers share, typed: the settings, the store's two session makers, what only the app process
knows (:class:`AppFacts`), and the per-user bounds. ``web.server.WebServer`` builds one :class:`PageContext` and
hands it to the sign-in routes, the page's API and the console; no handler reaches into the server itself.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from web.config import WebConfig
from web.limits import PageLimits

log = logging.getLogger(__name__)

Sessions = async_sessionmaker[AsyncSession]
"""The store's session maker: ``sessions.begin()`` for writes, the read-only engine's for reads."""


class AppFacts(Protocol):
    """What only the app process knows, asked each time it is needed (the bot, or the page-only app)."""

    def worker_problem(self) -> str | None:
        """Why the app's own embedded worker cannot run (its supervisor's reason), or None."""

    def gateway_latency(self) -> float | None:
        """Discord's gateway latency in seconds, or None without a connected Discord client."""

    async def delete_message(self, channel_id: int, guild_id: int | None, message_id: int) -> None:
        """Remove a message the bot posted in Discord (does nothing without a Discord client)."""


class NoAppFacts:
    """An app that knows nothing beyond the store (tests, tools): no worker of its own, no Discord."""

    def worker_problem(self) -> str | None:
        return None

    def gateway_latency(self) -> float | None:
        return None

    async def delete_message(self, channel_id: int, guild_id: int | None, message_id: int) -> None:
        log.info("no Discord client in this process: message %s in channel %s stays", message_id, channel_id)


@dataclass(frozen=True)
class PageContext:
    """Everything a handler of the page may use."""

    config: WebConfig
    sessions: Sessions
    readers: Sessions
    facts: AppFacts
    limits: PageLimits
