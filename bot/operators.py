"""Who the bot's operator is: the Discord application's owner (or its team's admins and developers), read from
Discord at every start, plus whoever ``OPERATOR_USER_IDS`` / ``OPERATOR_ROLE_IDS`` add.

So a bot set up with nothing but ``DISCORD_TOKEN`` has an operator: the person who made the application. The owner
read is recorded in the store (``jobs.web_sessions``) for the web page and ``python -m bot web-link``; when Discord
cannot be asked at start, the owner recorded last time stands in. :class:`Operators` is what
``bot.permissions`` checks (it has the ``operator_user_ids`` / ``operator_role_ids`` the checks read).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import discord

from jobs.web_sessions import app_operators, record_app_operators

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

    from bot.settings import BotSettings

log = logging.getLogger(__name__)

TEAM_OPERATOR_ROLES = frozenset({discord.TeamMemberRole.admin, discord.TeamMemberRole.developer})
"""A team member with one of these roles may change the application, so runs the bot; read-only members do not."""


@dataclass(frozen=True)
class Operators:
    """The operator's user ids and role ids, and where each came from."""

    owner_ids: frozenset[int] = frozenset()  # the application's owner, or its team's admins and developers
    owner_source: str | None = None  # "owner", "team", "recorded" (Discord could not be asked), None (unknown)
    owner_names: dict[int, str] = field(default_factory=dict)  # user id -> Discord name, where known
    configured_user_ids: frozenset[int] = frozenset()  # OPERATOR_USER_IDS (and the older ADMIN_USER_IDS)
    operator_role_ids: frozenset[int] = frozenset()  # OPERATOR_ROLE_IDS (and the older ADMIN_ROLE_IDS)

    @classmethod
    def from_settings(cls, settings: BotSettings) -> Operators:
        """Only what the settings name (before the owner is read)."""
        return cls(
            configured_user_ids=frozenset(settings.operator_user_ids),
            operator_role_ids=frozenset(settings.operator_role_ids),
        )

    @property
    def operator_user_ids(self) -> frozenset[int]:
        """Every user who is the operator by id: the owner(s) and the configured ones."""
        return self.owner_ids | self.configured_user_ids

    def describe(self) -> str:
        """The start-up line's account of who the operator is."""
        source = {
            "owner": "the application's owner",
            "team": "the application's team",
            "recorded": "the application's owner as last recorded",
        }.get(self.owner_source or "", "")
        parts = [f"{self.owner_names.get(user_id, 'user')} ({user_id}, {source})" for user_id in sorted(self.owner_ids)]
        parts += [f"user {user_id} (OPERATOR_USER_IDS)" for user_id in sorted(self.configured_user_ids)]
        parts += [f"role {role_id} (OPERATOR_ROLE_IDS)" for role_id in sorted(self.operator_role_ids)]
        return ", ".join(parts) if parts else "none (the application's owner could not be read; set OPERATOR_USER_IDS)"


def owners_of(app: discord.AppInfo) -> tuple[str, dict[int, str]]:
    """("owner" or "team", {user id: name}) of the application: its owner, or its team's accepted admins and
    developers (a team-owned application's ``owner`` is a stand-in user for the team, not a person)."""
    if app.team is not None:
        members = {
            member.id: member.name
            for member in app.team.members
            if member.role in TEAM_OPERATOR_ROLES and member.membership_state == discord.TeamMembershipState.accepted
        }
        return "team", members
    return "owner", {app.owner.id: app.owner.name}


async def read_operators(
    client: discord.Client, sessions: async_sessionmaker[AsyncSession], settings: BotSettings
) -> Operators:
    """Ask Discord for the application's owner (``GET /oauth2/applications/@me``), record it in the store, and
    return the operators; if Discord cannot answer, the owner recorded last time (logged)."""
    base = Operators.from_settings(settings)
    try:
        app = await client.application_info()
    except (discord.HTTPException, OSError) as error:
        async with sessions() as session:
            recorded = await app_operators(session)
        log.warning(
            "could not read the application's owner from Discord (%s); operators: %s",
            error,
            "the owner recorded last time" if recorded else "only OPERATOR_USER_IDS / OPERATOR_ROLE_IDS",
        )
        return Operators(
            owner_ids=recorded,
            owner_source="recorded" if recorded else None,
            configured_user_ids=base.configured_user_ids,
            operator_role_ids=base.operator_role_ids,
        )
    source, names = owners_of(app)
    if names:
        async with sessions.begin() as session:
            await record_app_operators(session, names, source=source)
    return Operators(
        owner_ids=frozenset(names),
        owner_source=source,
        owner_names=names,
        configured_user_ids=base.configured_user_ids,
        operator_role_ids=base.operator_role_ids,
    )
