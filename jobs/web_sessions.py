"""Sign-in for the web page: single-use expiring links the bot gives a Discord user, and browser sessions.

Only SHA-256 hashes of the tokens are stored, so a copy of the database signs nobody in. A link is redeemed by
one conditional UPDATE (``used_at IS NULL AND expires_at > now``), so two browsers racing for one link cannot
both win. A session carries its own CSRF token, which every state-changing request must repeat.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from jobs.models import WebSession, WebSignInLink, utcnow

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


def token_hash(token: str) -> str:
    """The stored form of a token."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def _positive(name: str, seconds: float) -> timedelta:
    if not isinstance(seconds, (int, float)) or seconds <= 0:
        raise ValueError(f"{name} must be a positive number of seconds, got {seconds!r}")
    return timedelta(seconds=float(seconds))


async def create_link(
    session: AsyncSession, user_id: int, *, ttl_seconds: float = DEFAULT_LINK_TTL_SECONDS, now: datetime | None = None
) -> str:
    """A new single-use sign-in token for ``user_id`` (put it in the link); expired links are swept here."""
    now = now or utcnow()
    ttl = _positive("ttl_seconds", ttl_seconds)
    await session.execute(delete(WebSignInLink).where(WebSignInLink.expires_at < now))
    token = secrets.token_urlsafe(TOKEN_BYTES)
    session.add(WebSignInLink(token_sha256=token_hash(token), user_id=user_id, created_at=now, expires_at=now + ttl))
    await session.flush()
    return token


async def redeem_link(
    session: AsyncSession, token: str, *, session_ttl_seconds: float = DEFAULT_SESSION_TTL_SECONDS,
    now: datetime | None = None,
) -> SignedIn | None:
    """Use the link once: a new session for its user, or None when the token is unknown, used or expired."""
    now = now or utcnow()
    ttl = _positive("session_ttl_seconds", session_ttl_seconds)
    user_id = (
        await session.execute(
            update(WebSignInLink)
            .where(WebSignInLink.token_sha256 == token_hash(token), WebSignInLink.used_at.is_(None),
                   WebSignInLink.expires_at > now)
            .values(used_at=now)
            .returning(WebSignInLink.user_id)
        )
    ).scalar()
    if user_id is None:
        return None
    await session.execute(delete(WebSession).where(WebSession.expires_at < now))
    session_token, csrf = secrets.token_urlsafe(TOKEN_BYTES), secrets.token_hex(TOKEN_BYTES)
    session.add(WebSession(token_sha256=token_hash(session_token), user_id=user_id, csrf_token=csrf,
                           created_at=now, expires_at=now + ttl))
    await session.flush()
    return SignedIn(session_token=session_token, csrf_token=csrf, user_id=int(user_id), expires_at=now + ttl)


async def find_session(session: AsyncSession, token: str, *, now: datetime | None = None) -> WebSession | None:
    """The live session of this cookie token (not ended, not expired), or None."""
    now = now or utcnow()
    return await session.scalar(
        select(WebSession).where(WebSession.token_sha256 == token_hash(token), WebSession.ended_at.is_(None),
                                 WebSession.expires_at > now)
    )


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
