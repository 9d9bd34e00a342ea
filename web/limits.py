"""Bounds on what one visitor can make the page do: request bodies per route (refused before they are read),
requests per user per minute for the costly routes, and open event streams per user.

All of it lives in this process's memory: one web server per app process, and every counted request is signed in,
so the tables hold at most one entry per signed-in user.
"""

from __future__ import annotations

import json
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

SIGN_IN_BODY_CAP_BYTES = 1024  # POST /signin carries one token
JSON_BODY_CAP_BYTES = 16 * 1024  # every other POST but an upload carries a few small fields
UPLOAD_PATHS = frozenset({"/api/jobs", "/api/images/check"})  # multipart forms with an image
MAX_DB_INT = 2**63 - 1  # ids are BIGINT: a larger number names nothing and must not reach the database

BODY_TOO_LARGE = "Refused: the request body is larger than this address accepts."
BAD_JSON = "Refused: the request body is not a JSON object."
TOO_MANY = "Slow down: too many requests of this kind in the last minute. Try again in a moment."
TOO_MANY_STREAMS = "Too many open progress streams: close another tab of this page first."


class BadRequest(ValueError):
    """A request the page never sends (400 with this sentence)."""


def body_cap(method: str, path: str, upload_cap: int, form_overhead: int) -> int:
    """The largest body the route ``method path`` accepts, in bytes."""
    if method != "POST":
        return 0
    if path == "/signin":
        return SIGN_IN_BODY_CAP_BYTES
    if path in UPLOAD_PATHS:
        return upload_cap + form_overhead
    return JSON_BODY_CAP_BYTES


async def read_capped(request: web.Request, cap: int) -> bytes | None:
    """The request's body, or None when it is (or declares itself) longer than ``cap`` bytes: never reads more
    than ``cap`` + one chunk."""
    declared = request.content_length
    if declared is not None and declared > cap:
        return None
    body = bytearray()
    while chunk := await request.content.read(cap + 1 - len(body)):
        body += chunk
        if len(body) > cap:
            return None
    return bytes(body)


async def read_json(request: web.Request) -> dict[str, Any]:
    """The JSON object in the body (an empty body is ``{}``); raises ``web.HTTPRequestEntityTooLarge`` over
    ``JSON_BODY_CAP_BYTES`` and ``BadRequest`` for anything but a JSON object."""
    body = await read_capped(request, JSON_BODY_CAP_BYTES)
    if body is None:
        raise web.HTTPRequestEntityTooLarge(
            max_size=JSON_BODY_CAP_BYTES,
            actual_size=request.content_length or 0,
            text=json.dumps({"error": BODY_TOO_LARGE}),
            content_type="application/json",
        )
    if not body.strip():
        return {}
    try:
        value = json.loads(body)
    except (ValueError, RecursionError):
        raise BadRequest(BAD_JSON) from None
    if not isinstance(value, dict):
        raise BadRequest(BAD_JSON)
    return value


def whole_number(text: Any, name: str) -> int:
    """A positive id that fits the database's BIGINT; ``BadRequest`` naming ``name`` otherwise."""
    value = str(text).strip()
    if not value.isascii() or not value.isdigit() or len(value) > len(str(MAX_DB_INT)):
        raise BadRequest(f"{name} must be a whole number")
    number = int(value)
    if not 0 < number <= MAX_DB_INT:
        raise BadRequest(f"{name} must be between 1 and {MAX_DB_INT}")
    return number


@dataclass
class RateLimit:
    """At most ``per_minute`` events per key in any 60 seconds (a sliding window of their times)."""

    per_minute: int
    window_s: float = 60.0
    _events: dict[int, deque[float]] = field(default_factory=dict)

    def allow(self, key: int, now: float | None = None) -> bool:
        """Count one event for ``key``; False (not counted) when the key is over its limit."""
        now = time.monotonic() if now is None else now
        events = self._events.setdefault(key, deque())
        while events and now - events[0] >= self.window_s:
            events.popleft()
        if len(events) >= self.per_minute:
            return False
        events.append(now)
        if len(self._events) > 1024:  # forget idle keys now and then
            self._events = {k: v for k, v in self._events.items() if v and now - v[-1] < self.window_s}
        return True


@dataclass
class StreamSlots:
    """Open event streams per user, at most ``per_user`` at once."""

    per_user: int
    _open: dict[int, int] = field(default_factory=dict)

    def count(self, user_id: int) -> int:
        return self._open.get(user_id, 0)

    @contextmanager
    def hold(self, user_id: int) -> Iterator[bool]:
        """Yield True while a slot is held for ``user_id`` (released on exit), False when all are taken."""
        if self.count(user_id) >= self.per_user:
            yield False
            return
        self._open[user_id] = self.count(user_id) + 1
        try:
            yield True
        finally:
            left = self._open[user_id] - 1
            if left:
                self._open[user_id] = left
            else:
                del self._open[user_id]


CHECKS_PER_MINUTE = 30  # image checks per user (each decodes an image)
CREATES_PER_MINUTE = 12  # new jobs per user (each decodes and stores an image); the pending cap bounds the queue
STREAMS_PER_USER = 4  # open event streams per user (a few tabs)


@dataclass
class PageLimits:
    """The per-user bounds of one web server."""

    checks: RateLimit = field(default_factory=lambda: RateLimit(CHECKS_PER_MINUTE))
    creates: RateLimit = field(default_factory=lambda: RateLimit(CREATES_PER_MINUTE))
    streams: StreamSlots = field(default_factory=lambda: StreamSlots(STREAMS_PER_USER))
