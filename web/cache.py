"""A value computed at most once per period, shared by the requests that ask meanwhile (``/metrics``,
``/healthz``: open endpoints, so a flood of scrapes costs the store one read per period)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Cached(Generic[T]):
    """``await get()``: the last value of ``compute()`` while younger than ``max_age_s``, else a fresh one
    (concurrent callers wait for the same computation)."""

    def __init__(self, max_age_s: float, compute: Callable[[], Awaitable[T]]) -> None:
        self.max_age_s = max_age_s
        self.compute = compute
        self._value: T | None = None
        self._at: float | None = None
        self._lock = asyncio.Lock()

    async def get(self) -> T:
        async with self._lock:
            now = time.monotonic()
            if self._at is None or now - self._at >= self.max_age_s:
                self._value = await self.compute()
                self._at = time.monotonic()
            return self._value  # type: ignore[return-value]  # set above
