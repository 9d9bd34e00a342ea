"""Sign-in for the web page: single-use expiring links the bot gives a Discord user, and browser sessions.

Only SHA-256 hashes of the tokens are stored, so a copy of the database signs nobody in. A link is redeemed by
one conditional UPDATE (``used_at IS NULL AND expires_at > now``), so two browsers racing for one link cannot
both win. A session carries its own CSRF token, which every state-changing request must repeat.

A link (and the session made from it) also carries the server ``/web`` was used in and the member's role ids
there, as Discord sent them: the page builds the user's quota policy from them (role tiers), as Discord does.
The roles are those of the moment the link was made; while the bot is connected it re-reads them from Discord
(:func:`sessions_to_recheck`, :func:`record_roles`), and roles not read within the re-check period lapse
(:func:`current_roles`). A ban ends the banned user's sessions at once (:func:`end_user_sessions`: every session
for a bot-wide ban, those of that server's links for a server's ban).

The operator's link (printed by the app at start, or by ``python -m bot web-link``) carries ``operator``: its
session has the operator's rights whoever it acts as (a machine with no operator configured has no Discord user
to name).

Who the operator is, as far as the store knows (:func:`first_operator`): the Discord application's owner (or its
team's members), recorded by the bot each time it logs in, so the page and ``python -m bot web-link`` know the
operator without reaching Discord. OPERATOR_USER_IDS and OPERATOR_ROLE_IDS (the settings) add to them; the caller
passes those.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from jobs.models import AppOperator, WebSession, WebSignInLink, utcnow

TOKEN_BYTES = 32  # random bytes per link or session token (256 bits)
DEFAULT_LINK_TTL_SECONDS = 600.0  # a sign-in link works once, within ten minutes
DEFAULT_SESSION_TTL_SECONDS = 7 * 24 * 3600.0  # a browser session lasts a week


@dataclass(frozen=True)
class SignedIn:
    """A redeemed link: the new session's cookie token, its CSRF token and the Discord user it acts as."""

    session_token: str
    csrf_token: str
    user_id: int
    expires_at: datetime
    guild_id: int | None = None
    role_ids: frozenset[int] = frozenset()
    operator: bool = False


def token_hash(token: str) -> str:
    """The stored form of a token."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def _live(now: datetime) -> tuple[Any, ...]:
    """WHERE conditions of a live session: not ended, not expired."""
    return (WebSession.ended_at.is_(None), WebSession.expires_at > now)


def _positive(name: str, seconds: float) -> timedelta:
    if not isinstance(seconds, (int, float)) or seconds <= 0:
        raise ValueError(f"{name} must be a positive number of seconds, got {seconds!r}")
    return timedelta(seconds=float(seconds))


def _role_list(role_ids: Iterable[int]) -> list[int]:
    roles = sorted({int(role) for role in role_ids})
    if any(role <= 0 for role in roles):
        raise ValueError(f"role ids must be positive, got {roles!r}")
    return roles


async def _issue(
    session: AsyncSession,
    kind: type[WebSignInLink] | type[WebSession],
    *,
    now: datetime,
    ttl: timedelta,
    **values: Any,
) -> str:
    """A new random token stored (as its hash) in a row of ``kind`` (a link or a session) with ``values``, valid
    for ``ttl``; the expired rows of that kind are swept first. Returns the token."""
    await session.execute(delete(kind).where(kind.expires_at < now))
    token = secrets.token_urlsafe(TOKEN_BYTES)
    session.add(kind(token_sha256=token_hash(token), created_at=now, expires_at=now + ttl, **values))
    await session.flush()
    return token


async def create_link(
    session: AsyncSession,
    user_id: int,
    *,
    guild_id: int | None = None,
    role_ids: Iterable[int] = (),
    ttl_seconds: float = DEFAULT_LINK_TTL_SECONDS,
    operator: bool = False,
    now: datetime | None = None,
) -> str:
    """A new single-use sign-in token for ``user_id`` (put it in the link), carrying the member's ``role_ids`` in
    ``guild_id`` (none: the defaults apply), and the operator's rights when ``operator``; expired links are swept
    here."""
    now = now or utcnow()
    ttl = _positive("ttl_seconds", ttl_seconds)
    roles = _role_list(role_ids)
    return await _issue(
        session, WebSignInLink, now=now, ttl=ttl, user_id=user_id, guild_id=guild_id, role_ids=roles, operator=operator
    )


async def redeem_link(
    session: AsyncSession,
    token: str,
    *,
    session_ttl_seconds: float = DEFAULT_SESSION_TTL_SECONDS,
    now: datetime | None = None,
) -> SignedIn | None:
    """Use the link once: a new session for its user (with the link's server and roles), or None when the token
    is unknown, used or expired."""
    now = now or utcnow()
    ttl = _positive("session_ttl_seconds", session_ttl_seconds)
    row = (
        await session.execute(
            update(WebSignInLink)
            .where(
                WebSignInLink.token_sha256 == token_hash(token),
                WebSignInLink.used_at.is_(None),
                WebSignInLink.expires_at > now,
            )
            .values(used_at=now)
            .returning(WebSignInLink.user_id, WebSignInLink.guild_id, WebSignInLink.role_ids, WebSignInLink.operator)
        )
    ).first()
    if row is None:
        return None
    user_id, guild_id, roles, operator = (
        int(row.user_id),
        row.guild_id,
        _role_list(row.role_ids or ()),
        bool(row.operator),
    )
    csrf = secrets.token_hex(TOKEN_BYTES)
    session_token = await _issue(
        session,
        WebSession,
        now=now,
        ttl=ttl,
        user_id=user_id,
        guild_id=guild_id,
        role_ids=roles,
        operator=operator,
        csrf_token=csrf,
        roles_checked_at=now,
    )
    return SignedIn(
        session_token=session_token,
        csrf_token=csrf,
        user_id=user_id,
        expires_at=now + ttl,
        guild_id=guild_id,
        role_ids=frozenset(roles),
        operator=operator,
    )


async def find_session(session: AsyncSession, token: str, *, now: datetime | None = None) -> WebSession | None:
    """The live session of this cookie token (not ended, not expired), or None."""
    now = now or utcnow()
    return await session.scalar(select(WebSession).where(WebSession.token_sha256 == token_hash(token), *_live(now)))


async def end_session(session: AsyncSession, token: str, *, now: datetime | None = None) -> bool:
    """Sign out: the session stops working at once. False when it was not live."""
    now = now or utcnow()
    row = (
        await session.execute(
            update(WebSession)
            .where(WebSession.token_sha256 == token_hash(token), WebSession.ended_at.is_(None))
            .values(ended_at=now)
            .returning(WebSession.user_id)
        )
    ).first()
    return row is not None


async def latest_roles(session: AsyncSession, user_id: int, *, now: datetime | None = None) -> frozenset[int]:
    """The role ids of ``user_id``'s newest live session (what the operator console knows of their tiers); none
    when they have no live session."""
    now = now or utcnow()
    roles = await session.scalar(
        select(WebSession.role_ids)
        .where(WebSession.user_id == user_id, *_live(now))
        .order_by(WebSession.created_at.desc())
        .limit(1)
    )
    return frozenset(_role_list(roles or ()))


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


SESSION_ID_CHARS = 16  # hex characters of a session's token hash that name it in the console


def session_id(row: WebSession) -> str:
    """How the console names a session (a prefix of its token's hash: no use for signing in)."""
    return row.token_sha256[:SESSION_ID_CHARS]


def current_roles(row: WebSession, *, valid_seconds: float, now: datetime | None = None) -> frozenset[int]:
    """The session's role ids while they were read from Discord within ``valid_seconds``; none after that (they
    lapse when they cannot be re-read)."""
    now = now or utcnow()
    checked = row.roles_checked_at
    if checked is None or now - checked > timedelta(seconds=valid_seconds):
        return frozenset()
    return frozenset(_role_list(row.role_ids or ()))


async def end_user_sessions(
    session: AsyncSession,
    user_id: int,
    *,
    guild_id: int | None = None,
    now: datetime | None = None,
) -> int:
    """End ``user_id``'s live sessions (only those signed in with a link from ``guild_id`` when given): a ban,
    or "sign out everywhere". Returns how many ended."""
    now = now or utcnow()
    conditions = [WebSession.user_id == user_id, *_live(now)]
    if guild_id is not None:
        conditions.append(WebSession.guild_id == guild_id)
    ended = await session.execute(
        update(WebSession)
        .where(*conditions)
        .values(ended_at=now)
        .returning(WebSession.token_sha256)
        .execution_options(synchronize_session=False)
    )
    return len(ended.all())


async def end_session_by_id(session: AsyncSession, sid: str, *, now: datetime | None = None) -> int | None:
    """End the live session the console names ``sid``; its user id, or None when there is none."""
    now = now or utcnow()
    if len(sid) != SESSION_ID_CHARS or any(ch not in "0123456789abcdef" for ch in sid):
        return None
    row = (
        await session.execute(
            update(WebSession)
            .where(WebSession.token_sha256.startswith(sid, autoescape=True), *_live(now))
            .values(ended_at=now)
            .returning(WebSession.user_id)
            .execution_options(synchronize_session=False)
        )
    ).first()
    return None if row is None else int(row.user_id)


async def live_sessions(session: AsyncSession, *, limit: int = 100, now: datetime | None = None) -> list[WebSession]:
    """The newest live sessions first (the console's list)."""
    now = now or utcnow()
    return list(
        await session.scalars(select(WebSession).where(*_live(now)).order_by(WebSession.created_at.desc()).limit(limit))
    )


async def sessions_to_recheck(
    session: AsyncSession,
    *,
    checked_before: datetime,
    limit: int = 100,
    now: datetime | None = None,
) -> list[tuple[int, int]]:
    """(user id, guild id) of live sessions from a server's link whose roles were last read before
    ``checked_before`` (or never), the oldest first."""
    now = now or utcnow()
    oldest = func.min(func.coalesce(WebSession.roles_checked_at, WebSession.created_at))
    rows = await session.execute(
        select(WebSession.user_id, WebSession.guild_id)
        .where(
            *_live(now),
            WebSession.guild_id.is_not(None),
            or_(WebSession.roles_checked_at.is_(None), WebSession.roles_checked_at < checked_before),
        )
        .group_by(WebSession.user_id, WebSession.guild_id)
        .order_by(oldest)
        .limit(limit)
    )
    return [(int(user_id), int(guild_id)) for user_id, guild_id in rows if guild_id is not None]


async def record_roles(
    session: AsyncSession,
    user_id: int,
    guild_id: int,
    role_ids: Iterable[int],
    *,
    now: datetime | None = None,
) -> int:
    """The member's roles in ``guild_id`` as just read from Discord (none: no longer a member) on every live
    session of theirs from that server's links. Returns how many sessions."""
    now = now or utcnow()
    roles = _role_list(role_ids)
    updated = await session.execute(
        update(WebSession)
        .where(WebSession.user_id == user_id, WebSession.guild_id == guild_id, *_live(now))
        .values(role_ids=roles, roles_checked_at=now)
        .returning(WebSession.token_sha256)
        .execution_options(synchronize_session=False)
    )
    return len(updated.all())
