"""Faults the fake injects on demand: HTTP errors, rate limits, slow answers, exhausted rate-limit buckets."""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Literal

FaultKind = Literal["status", "rate_limit", "slow", "exhaust"]


@dataclasses.dataclass
class Fault:
    """A rule matched against each REST request; the first live matching rule answers it.

    ``path`` is a regular expression searched in the path below ``/api/v10`` (``None`` matches all);
    ``method`` an HTTP verb (``None`` matches all); ``times`` how many requests it affects (``None`` = forever).
    """

    kind: FaultKind
    method: str | None = None
    path: str | None = None
    times: int | None = 1
    status: int = 500
    code: int = 0
    message: str = "fake fault"
    errors: dict[str, Any] | None = None
    """For ``status``: the ``errors`` object of the body (a 400 / 50035 names the fields it refuses there)."""
    retry_after: float = 0.0
    """Seconds, for ``rate_limit`` (body ``retry_after`` and ``Retry-After``) and ``exhaust`` (reset-after)."""
    is_global: bool = False
    delay: float = 0.0
    """Seconds, for ``slow``: the request is answered normally after this long."""
    hits: int = 0
    """How many requests this rule has affected so far."""

    def __post_init__(self) -> None:
        if self.method is not None:
            self.method = self.method.upper()
        if self.times is not None and self.times < 1:
            raise ValueError(f"Fault.times must be >= 1 or None, got {self.times!r}")
        if self.path is not None:
            re.compile(self.path)

    @property
    def live(self) -> bool:
        """Whether the rule still applies to new requests."""
        return self.times is None or self.hits < self.times

    def matches(self, method: str, path: str) -> bool:
        """Whether this live rule applies to ``method path``."""
        if not self.live:
            return False
        if self.method is not None and self.method != method:
            return False
        return self.path is None or re.search(self.path, path) is not None

    def error_body(self) -> dict[str, Any]:
        """The JSON body of a ``status`` fault."""
        body: dict[str, Any] = {"message": self.message, "code": self.code}
        if self.errors is not None:
            body["errors"] = self.errors
        return body

    def rate_limit_body(self) -> dict[str, Any]:
        """The JSON body Discord sends with a 429."""
        body: dict[str, Any] = {
            "message": "You are being rate limited.",
            "retry_after": self.retry_after,
            "global": self.is_global,
        }
        if self.is_global:
            body["code"] = 0
        return body
