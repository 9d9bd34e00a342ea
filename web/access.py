"""The access log (one line per request: method, path, status, milliseconds, user id, client address) and the
client's address behind a reverse proxy.

A forwarded header (``X-Forwarded-For``, ``Forwarded``, ``X-Real-IP``) is believed only when the connection comes
from an address in WEB_TRUSTED_PROXIES; anyone else could write any address there. The address is used for the
log only: no address grants anything (``web.auth``).
"""

from __future__ import annotations

import ipaddress
import logging
import re
import time
from collections.abc import Awaitable, Callable, Sequence

from aiohttp import web
from aiohttp.typedefs import Middleware

from web.auth import USER
from web.config import IPNetwork

log = logging.getLogger("web.access")

FORWARDED_FOR = re.compile(r'for\s*=\s*"?\[?([0-9A-Fa-f:.]+)\]?(?::\d+)?"?', re.IGNORECASE)
MAX_LOGGED_PATH_CHARS = 200

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text.strip().strip('"[]'))
    except ValueError:
        return None


def _trusted(address: ipaddress.IPv4Address | ipaddress.IPv6Address | None, proxies: Sequence[IPNetwork]) -> bool:
    return address is not None and any(address in network for network in proxies)


def client_address(request: web.Request, proxies: Sequence[IPNetwork]) -> str:
    """The client's address: the peer's, or, when the peer is a trusted proxy, the nearest untrusted address its
    forwarded headers name (walking the proxy chain from the right)."""
    peer = request.remote or "-"
    if not _trusted(_address(peer), proxies):
        return peer
    chain: list[str] = []
    for value in request.headers.getall("Forwarded", []):
        chain += FORWARDED_FOR.findall(value)
    if not chain:
        for value in request.headers.getall("X-Forwarded-For", []):
            chain += [part.strip() for part in value.split(",") if part.strip()]
    if not chain and (real := request.headers.get("X-Real-IP")):
        chain = [real]
    for hop in reversed(chain):
        address = _address(hop)
        if address is None:
            return peer  # a hop we cannot read: the proxy's own address is the last one we know
        if not _trusted(address, proxies):
            return str(address)
    return str(_address(chain[0])) if chain else peer


def access_log(proxies: Sequence[IPNetwork]) -> Middleware:
    """The outermost middleware: logs each request once, after its answer."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        start = time.monotonic()
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        finally:
            user = request.get(USER)
            log.info(
                "%s %s %d %.1fms user=%s client=%s",
                request.method,
                request.path[:MAX_LOGGED_PATH_CHARS],
                status,
                (time.monotonic() - start) * 1000.0,
                user.user_id if user is not None else "-",
                client_address(request, proxies),
            )

    return middleware
