"""Web sessions keep only the rights the member still has: while the bot is connected it re-reads, at least every
WEB_ROLE_RECHECK_SECONDS, the roles of each member signed in with a link from a server, through Discord's member
endpoint (``GET /guilds/{guild}/members/{user}``: REST, no privileged intent), and stores them on their sessions
(``jobs.web_sessions.record_roles``). A member who left the server has no roles there. When Discord cannot be asked
(disconnected, an error), nothing is stored, and the page lets roles not read within two periods lapse
(``jobs.web_sessions.current_roles``): role tiers and operator-by-role end with them.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from typing import TYPE_CHECKING

import discord

from jobs.models import utcnow
from jobs.web_sessions import record_roles, sessions_to_recheck

if TYPE_CHECKING:
    from bot.app import I2VBot

log = logging.getLogger(__name__)

MAX_WAKE_SECONDS = 60.0  # the loop looks for sessions due at least this often
MIN_WAKE_SECONDS = 0.5
MEMBERS_PER_PASS = 100  # member reads per pass (discord.py keeps to Discord's rate limits)


async def recheck_roles(bot: I2VBot) -> int:
    """One pass: re-read the roles of members whose sessions are due; returns how many were read."""
    now = utcnow()
    due_before = now - timedelta(seconds=bot.settings.web_role_recheck)
    async with bot.readers() as session:
        due = await sessions_to_recheck(session, checked_before=due_before, limit=MEMBERS_PER_PASS, now=now)
    read = 0
    for user_id, guild_id in due:
        try:
            member = await bot.http.get_member(guild_id, user_id)
            roles = [int(role) for role in member.get("roles", [])]
        except discord.NotFound:
            roles = []  # no longer a member (or the server is gone): no roles there
        except (discord.HTTPException, OSError, TimeoutError) as error:
            log.warning("could not re-read the roles of user %s in server %s: %s", user_id, guild_id, error)
            continue  # not stored: the page lets them lapse if this goes on
        async with bot.sessions.begin() as session:
            await record_roles(session, user_id, guild_id, roles)
        read += 1
        log.debug("re-read the roles of web user %s in server %s: %d roles", user_id, guild_id, len(roles))
    return read


class RoleRecheck:
    """The bot's background task running :func:`recheck_roles` while it is connected."""

    def __init__(self, bot: I2VBot) -> None:
        self.bot = bot
        self._task: asyncio.Task[None] | None = None

    @property
    def wake_seconds(self) -> float:
        return max(MIN_WAKE_SECONDS, min(MAX_WAKE_SECONDS, self.bot.settings.web_role_recheck / 4))

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="web-role-recheck")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.wake_seconds)
            if not self.bot.is_ready():
                continue
            try:
                await recheck_roles(self.bot)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("re-reading web members' roles failed; trying again later")
