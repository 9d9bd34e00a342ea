"""Who is asking, and whether a state-changing request really comes from the page.

Every visitor signs in; no address grants anything (a reverse proxy on this machine connects from 127.0.0.1 for
everyone on the internet).

- Members: the bot's ``/web`` command gives a Discord user a single-use link (``jobs.web_sessions``); redeeming it
  sets an HttpOnly, SameSite=Strict session cookie, and the page acts as that user (their quota, pending cap, bans,
  history), with the member's role ids the link carried (role tiers, exactly as in Discord). Operator ids
  (OPERATOR_USER_IDS, a role in OPERATOR_ROLE_IDS, or the application's owner as the bot recorded it) get the
  console.
- The operator: at every start the app prints a single-use link (:func:`operator_link`; ``python -m bot web-link``
  makes another from the store alone) whose session has the operator's rights, acting as the first operator.
- CSRF: every POST must carry the session's token in ``X-CSRF-Token``, and any Origin header must be the page's
  origin (WEB_PUBLIC_URL behind a reverse proxy, else the address the request came to). A form on another site can
  send neither.
"""

from __future__ import annotations

import hmac
import html
import logging
from dataclasses import dataclass
from urllib.parse import parse_qs

from aiohttp import web
from aiohttp.typedefs import Handler

from jobs.control import refuse_banned
from jobs.errors import Banned
from jobs.web_sessions import (
    FirstOperator,
    app_operators,
    create_link,
    current_roles,
    end_session,
    end_user_sessions,
    find_session,
    first_operator,
    redeem_link,
)
from web.config import WebConfig
from web.context import Sessions
from web.limits import BODY_TOO_LARGE, SIGN_IN_BODY_CAP_BYTES, read_capped

log = logging.getLogger(__name__)

SESSION_COOKIE = "i2v_session"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
OPEN_PATHS = frozenset({"/healthz", "/metrics"})  # monitoring: no session, no user data
PUBLIC_PATHS = frozenset({"/", "/signin", "/console"})  # the pages themselves show only the sign-in prompt
SIGN_IN_FIRST = (
    "Sign in first: use the bot's /web command in Discord to get a personal sign-in link "
    "(the operator: the link the app printed at start, or python -m bot web-link)."
)
LINK_USED = "This sign-in link was already used or has expired. Use /web in Discord for a new one."
CSRF_REFUSED = "Refused: this request did not come from the i2v page (missing or wrong CSRF token)."


@dataclass(frozen=True)
class WebUser:
    """The Discord user a request acts as."""

    user_id: int
    is_operator: bool
    csrf_token: str
    role_ids: frozenset[int] = frozenset()  # the Discord member's roles, from the sign-in link (select tiers)
    guild_id: int | None = None  # the server the sign-in link was made in (None: a DM, or the operator's link)


USER: web.RequestKey[WebUser | None] = web.RequestKey("user")
"""The request's signed-in user (``Auth.middleware`` sets it), or None."""


def member_of(
    config: WebConfig,
    user_id: int,
    role_ids: frozenset[int],
    csrf_token: str = "",
    *,
    owners: frozenset[int] = frozenset(),
    operator_link: bool = False,
    guild_id: int | None = None,
) -> WebUser:
    """A signed-in Discord member with these roles: the operator by id (OPERATOR_USER_IDS, or the application's
    ``owners`` as recorded), by a role (OPERATOR_ROLE_IDS), or by the operator's link, as in Discord."""
    operator = (
        operator_link
        or user_id in config.operator_user_ids
        or user_id in owners
        or bool(role_ids & config.operator_role_ids)
    )
    return WebUser(user_id, operator, csrf_token, role_ids=role_ids, guild_id=guild_id)


async def operator_link(
    sessions: Sessions, config: WebConfig, port: int | None = None, *, user_id: int | None = None
) -> tuple[str, FirstOperator]:
    """A fresh single-use sign-in link (WEB_OPERATOR_LINK_TTL_SECONDS) with the operator's rights, acting as the
    first operator (configured ids, else the recorded owner, else the local operator account), or as ``user_id``
    with that user's own rights."""
    async with sessions.begin() as session:
        if user_id is None:
            who = await first_operator(session, config.operator_user_ids)
        else:
            owners = await app_operators(session)
            source = "setting" if user_id in config.operator_user_ids else "owner" if user_id in owners else "member"
            who = FirstOperator(user_id, source)
        token = await create_link(
            session, who.user_id, ttl_seconds=config.operator_link_ttl_seconds, operator=user_id is None
        )
    return f"{config.base_url(port)}/signin?token={token}", who


def _public(path: str) -> bool:
    return path in PUBLIC_PATHS or path.startswith("/static/")


def page_origin(config: WebConfig, request: web.Request) -> str:
    """The page's origin as the browser sees it: WEB_PUBLIC_URL, else the scheme and Host of this request."""
    return config.public_url or f"{request.scheme}://{request.host}"


def csrf_ok(config: WebConfig, request: web.Request, user: WebUser | None) -> bool:
    """The request carries the right token and, if the browser named one, this page's origin."""
    origin = request.headers.get("Origin")
    if origin is not None and origin != page_origin(config, request):
        return False
    if user is None:
        return False
    sent = request.headers.get(CSRF_HEADER, "")
    return bool(sent) and hmac.compare_digest(sent, user.csrf_token)


def error(status: int, message: str) -> web.Response:
    """A JSON refusal the page shows as it is."""
    return web.json_response({"error": message}, status=status)


class Auth:
    """The middleware and the sign-in routes."""

    def __init__(self, config: WebConfig, sessions: Sessions, readers: Sessions) -> None:
        self.config = config
        self.sessions = sessions
        self.readers = readers

    async def user_of(self, request: web.Request) -> WebUser | None:
        """The user of this request, or None without a live session."""
        token = request.cookies.get(SESSION_COOKIE)
        if not token:
            return None
        async with self.readers() as session:
            row = await find_session(session, token)
            if row is None:
                return None
            owners = await app_operators(session)
        # roles the bot could not re-read from Discord within the re-check period lapse (tiers, operator by role)
        roles = current_roles(row, valid_seconds=self.config.roles_valid_seconds)
        return member_of(
            self.config,
            row.user_id,
            roles,
            row.csrf_token,
            owners=owners,
            operator_link=row.operator,
            guild_id=row.guild_id,
        )

    async def is_operator(self, request: web.Request) -> bool:
        """Whether the request carries a live operator session (``/healthz`` shows its details only then)."""
        user = await self.user_of(request)
        return user is not None and user.is_operator

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in OPEN_PATHS:
            return await handler(request)
        user = await self.user_of(request)
        request[USER] = user
        if request.method not in SAFE_METHODS and request.path != "/signin" and not csrf_ok(self.config, request, user):
            log.warning(
                "refused %s %s: %s",
                request.method,
                request.path,
                "not signed in" if user is None else "CSRF check failed",
            )
            return error(401 if user is None else 403, SIGN_IN_FIRST if user is None else CSRF_REFUSED)
        if user is None and not _public(request.path):
            return error(401, SIGN_IN_FIRST)
        return await handler(request)

    # -- routes ------------------------------------------------------------------------------------------------

    async def sign_in_page(self, request: web.Request) -> web.Response:
        """GET /signin?token=...: a page with a button, so a link preview that fetches the URL spends nothing."""
        token = request.query.get("token", "")
        safe = "".join(ch for ch in token if ch.isalnum() or ch in "-_")[:100]
        page = SIGN_IN_HTML.replace("{token}", safe)
        return web.Response(text=page, content_type="text/html", headers={"Cache-Control": "no-store"})

    async def sign_in(self, request: web.Request) -> web.Response:
        """POST /signin (the form): redeem the link once; set the session cookie and go to the page."""
        origin = request.headers.get("Origin")
        if origin is not None and origin != page_origin(self.config, request):
            log.warning("refused a sign-in from origin %r", origin[:100])
            return error(403, CSRF_REFUSED)
        body = await read_capped(request, SIGN_IN_BODY_CAP_BYTES)
        if body is None:
            return error(413, BODY_TOO_LARGE)
        form = parse_qs(body.decode("ascii", "replace"), max_num_fields=4)
        token = (form.get("token") or [""])[0][:200]
        try:
            async with self.sessions.begin() as session:
                signed = await redeem_link(session, token, session_ttl_seconds=self.config.session_ttl_seconds)
                if signed is not None and not signed.operator:  # banned since the link was made: rolled back
                    await refuse_banned(session, signed.user_id, signed.guild_id)
        except Banned as exc:
            log.info("a sign-in link of a banned user was refused")
            return web.Response(
                text=MESSAGE_HTML.replace("{message}", html.escape(str(exc))), status=403, content_type="text/html"
            )
        if signed is None:
            log.info("a sign-in link was refused (unknown, used or expired)")
            return web.Response(text=MESSAGE_HTML.replace("{message}", LINK_USED), status=403, content_type="text/html")
        log.info("web sign-in of user %s%s", signed.user_id, " with the operator's link" if signed.operator else "")
        response = web.HTTPSeeOther(f"{self.config.public_url or ''}/")
        response.set_cookie(
            SESSION_COOKIE,
            signed.session_token,
            httponly=True,
            samesite="Strict",
            secure=self.config.secure_cookies,
            max_age=int(self.config.session_ttl_seconds),
            path="/",
        )
        raise response

    async def sign_out(self, request: web.Request) -> web.Response:
        """POST /api/signout: end the session now; ``?everywhere=1`` ends every session of the user (other
        browsers, a lost phone)."""
        token = request.cookies.get(SESSION_COOKIE)
        user = request[USER]
        ended = 0
        if token:
            async with self.sessions.begin() as session:
                if request.query.get("everywhere") and user is not None:
                    ended = await end_user_sessions(session, user.user_id)
                    log.info("user %s signed out everywhere (%d sessions)", user.user_id, ended)
                else:
                    ended = int(await end_session(session, token))
        response = web.json_response({"signed_out": True, "sessions_ended": ended})
        response.del_cookie(SESSION_COOKIE, path="/")
        return response


SIGN_IN_HTML = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Sign in - i2v</title>
<link rel="stylesheet" href="/static/style.css"></head><body><main class="narrow"><h1>i2v</h1>
<p>Sign in to make videos with your Discord account's quota.</p>
<form method="post" action="/signin"><input type="hidden" name="token" value="{token}">
<button id="signin" type="submit">Sign in</button></form></main></body></html>"""
MESSAGE_HTML = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>i2v</title>
<link rel="stylesheet" href="/static/style.css"></head><body><main class="narrow"><h1>i2v</h1>
<p id="message">{message}</p></main></body></html>"""
