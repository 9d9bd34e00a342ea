"""What the fake records: every HTTP request (with uploaded file bytes) and every gateway frame from the client."""

from __future__ import annotations

import dataclasses
from typing import Any


@dataclasses.dataclass(frozen=True)
class RecordedFile:
    """One uploaded multipart file part (``files[n]``)."""

    field: str
    """The multipart field name, e.g. ``files[0]``."""
    filename: str
    content_type: str
    data: bytes

    @property
    def size(self) -> int:
        """Length of the uploaded bytes."""
        return len(self.data)


@dataclasses.dataclass
class RecordedRequest:
    """One HTTP request the fake answered (REST, CDN, or a faulted one)."""

    method: str
    path: str
    """Path below ``/api/v10`` for REST (``/channels/1/messages``), or the full path for the CDN (``/cdn/...``)."""
    query: dict[str, str]
    headers: dict[str, str]
    json: Any
    """The JSON body, or the parsed ``payload_json`` part of a multipart body; None without a body."""
    files: list[RecordedFile]
    time: float
    """``time.monotonic()`` when the request arrived."""
    wall_time: float
    """``time.time()`` when the request arrived."""
    status: int = 0
    """The status the fake answered with (0 until answered)."""
    response: Any = None
    """The JSON the fake answered with (None for 204 or bytes)."""
    fault: str | None = None
    """Name of the injected fault that answered this request, if any."""

    @property
    def is_multipart(self) -> bool:
        """Whether the body was multipart (files attached)."""
        return bool(self.files) or "multipart/" in self.headers.get("Content-Type", "")

    @property
    def has_bot_auth(self) -> bool:
        """Whether the request carried ``Authorization: Bot <token>`` (webhook/interaction calls do not)."""
        return self.headers.get("Authorization", "").startswith("Bot ")

    def describe(self) -> str:
        """One line for failure messages."""
        body = "" if self.json is None else f" json={str(self.json)[:160]}"
        files = f" files={[f.filename for f in self.files]}" if self.files else ""
        fault = f" fault={self.fault}" if self.fault else ""
        return f"{self.method} {self.path} -> {self.status}{fault}{body}{files}"


@dataclasses.dataclass(frozen=True)
class GatewayFrame:
    """One frame the client sent over the gateway websocket."""

    connection: int
    """1 for the first websocket connection, 2 for the next (after a reconnect), ..."""
    op: int
    data: Any
    time: float
