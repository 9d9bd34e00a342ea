"""Who is asking, and whether a state-changing request really comes from the page.

- Loopback only (WEB_HOST 127.0.0.1, the default): whoever reaches the page is the bot's operator, acting as
  WEB_USER_ID. The Host header must name this machine, so a web site that rebinds its DNS name to 127.0.0.1
  cannot read the page from the user's browser.
- Any other WEB_HOST: sign-in is required. The bot's ``/web`` command gives a Discord user a single-use link
  (``jobs.web_sessions``); redeeming it sets an HttpOnly, SameSite=Strict session cookie, and the page acts as
  that user (their quota, pending cap, bans, history), with the member's role ids the link carried (role tiers,
  exactly as in Discord). Operator ids (OPERATOR_USER_IDS, or a role in OPERATOR_ROLE_IDS) get the console.
- CSRF: every POST must carry the session's token (local mode: the server's) in ``X-CSRF-Token``, and any Origin
  header must be this page's origin. A form on another site can send neither.
"""

from __future__ import annotations

import hmac
import logging
import secrets
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from jobs.web_sessions import end_session, find_session, redeem_link

log = logging.getLogger(__name__)

SESSION_COOKIE = "i2v_session"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
PUBLIC_PATHS = frozenset({"/", "/healthz", "/metrics", "/signin", "/console", "/api/me"})
SIGN_IN_FIRST = "Sign in first: use the bot's /web command in Discord to get a personal sign-in link."
LINK_USED = "This sign-in link was already used or has expired. Use /web in Discord for a new one."
CSRF_REFUSED = "Refused: this request did not come from the i2v page (missing or wrong CSRF token)."


@dataclass(frozen=True)
class WebUser:
    """The Discord user a request acts as."""

    user_id: int
    is_operator: bool
    csrf_token: str
    signed_in: bool  # False: the loopback-only operator
    role_ids: frozenset[int] = frozenset()  # the Discord member's roles, from the sign-in link (select tiers)


def member_of(config: Any, user_id: int, role_ids: frozenset[int], csrf_token: str = "") -> WebUser:
    """A signed-in Discord member with these roles: the operator by id (OPERATOR_USER_IDS) or by a role
    (OPERATOR_ROLE_IDS), as in Discord."""
    operator = user_id in config.operator_user_ids or bool(role_ids & config.operator_role_ids)
    return WebUser(user_id, operator, csrf_token, signed_in=True, role_ids=role_ids)


def _public(path: str) -> bool:
    return path in PUBLIC_PATHS or path.startswith("/static/")


def _own_origin(request: web.Request) -> str:
    return f"{request.scheme}://{request.host}"


def csrf_ok(request: web.Request, user: WebUser | None) -> bool:
    """The request carries the right token and, if the browser named one, this page's origin."""
    origin = request.headers.get("Origin")
    if origin is not None and origin != _own_origin(request):
        return False
    if user is None:
        return False
    sent = request.headers.get(CSRF_HEADER, "")
    return bool(sent) and hmac.compare_digest(sent, user.csrf_token)


def error(status: int, message: str) -> web.Response:
    """A JSON refusal the page shows as it is."""
    return web.json_response({"error": message}, status=status)


class Auth:
    """The middleware and the sign-in routes; ``config`` is a ``web.config.WebConfig``."""

    def __init__(self, config: Any, sessions: Any, readers: Any) -> None:
        self.config = config
        self.sessions = sessions
        self.readers = readers
        self.local_csrf = secrets.token_hex(32)
        self.local_hosts: set[str] = set()

    def allow_port(self, port: int) -> None:
        """Record the bound port: a loopback page answers only to Host names of this machine."""
        self.local_hosts = {f"{name}:{port}" for name in ("127.0.0.1", "localhost", "[::1]")}

    async def user_of(self, request: web.Request) -> WebUser | None:
        """The user of this request, or None when sign-in is required and there is no live session."""
        if not self.config.sign_in_required:
            return WebUser(self.config.web_user_id, True, self.local_csrf, signed_in=False)
        token = request.cookies.get(SESSION_COOKIE)
        if not token:
            return None
        async with self.readers() as session:
            row = await find_session(session, token)
        if row is None:
            return None
        return member_of(self.config, row.user_id, frozenset(int(role) for role in row.role_ids or ()),
                         row.csrf_token)

    @web.middleware
    async def middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if not self.config.sign_in_required and request.host not in self.local_hosts:
            log.warning("refused a request for host %r on the loopback-only page", request.host)
            return error(421, "This page answers only to 127.0.0.1 or localhost.")
        if request.path in ("/healthz", "/metrics"):
            return await handler(request)
        user = await self.user_of(request)
        request["user"] = user
        if request.method not in SAFE_METHODS and request.path != "/signin" and not csrf_ok(request, user):
            log.warning("refused %s %s: %s", request.method, request.path,
                        "not signed in" if user is None else "CSRF check failed")
            return error(401 if user is None else 403, SIGN_IN_FIRST if user is None else CSRF_REFUSED)
        if user is None and not _public(request.path):
            return error(401, SIGN_IN_FIRST)
        return await handler(request)

    # -- routes ------------------------------------------------------------------------------------------------

    async def sign_in_page(self, request: web.Request) -> web.Response:
        """GET /signin?token=...: a page with a button, so a link preview that fetches the URL spends nothing."""
        token = request.query.get("token", "")
        safe = "".join(ch for ch in token if ch.isalnum() or ch in "-_")[:100]
        html = SIGN_IN_HTML.replace("{token}", safe)
        return web.Response(text=html, content_type="text/html", headers={"Cache-Control": "no-store"})

    async def sign_in(self, request: web.Request) -> web.Response:
        """POST /signin (the form): redeem the link once; set the session cookie and go to the page."""
        origin = request.headers.get("Origin")
        if origin is not None and origin != _own_origin(request):
            return error(403, CSRF_REFUSED)
        form = await request.post()
        token = str(form.get("token", ""))[:200]
        async with self.sessions.begin() as session:
            signed = await redeem_link(session, token, session_ttl_seconds=self.config.session_ttl_seconds)
        if signed is None:
            log.info("a sign-in link was refused (unknown, used or expired)")
            return web.Response(text=MESSAGE_HTML.replace("{message}", LINK_USED), status=403,
                                content_type="text/html")
        log.info("web sign-in of user %s", signed.user_id)
        response = web.HTTPSeeOther("/")
        response.set_cookie(SESSION_COOKIE, signed.session_token, httponly=True, samesite="Strict",
                            secure=(self.config.public_url or "").startswith("https://"),
                            max_age=int(self.config.session_ttl_seconds), path="/")
        raise response

    async def sign_out(self, request: web.Request) -> web.Response:
        """POST /api/signout: end the session now."""
        token = request.cookies.get(SESSION_COOKIE)
        if token:
            async with self.sessions.begin() as session:
                await end_session(session, token)
        response = web.json_response({"signed_out": True})
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
