"""Byte ranges of a stored video or image (``Range: bytes=...``): 206 with ``Content-Range``, 416 when the range
lies outside the bytes, 200 for the whole. Safari and iOS play a ``<video>`` only from a server that answers 206.

The bytes are read from the store a chunk at a time (``jobs.blobs`` ``read_*_range``), so no request holds a
whole video in memory, and a player that asks for the last few KiB gets only those.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping

from aiohttp import web

CHUNK_BYTES = 1024 * 1024  # bytes read from the store and sent per step
RANGE = re.compile(r"^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$")
MAX_RANGE_DIGITS = 15  # a petabyte; longer numbers are not a byte offset of anything we keep

ReadRange = Callable[[int, int], Awaitable["bytes | None"]]
"""``read(start, length)``: that many bytes from ``start`` (fewer at the end), or None when the bytes are gone."""


class Unsatisfiable(ValueError):
    """The Range header names no byte of the blob (416)."""


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """(first, last) byte, inclusive, of a single ``bytes=`` range of a blob of ``size`` bytes; None to send the
    whole (no header, another unit, several ranges, or a form we do not read); raises ``Unsatisfiable``."""
    if not header:
        return None
    match = RANGE.match(header)
    if match is None:
        if header.strip().lower().startswith("bytes") and "," not in header:
            raise Unsatisfiable(header)
        return None  # several ranges, or another unit: the whole blob is a correct answer
    first_text, last_text = match.groups()
    if len(first_text) > MAX_RANGE_DIGITS or len(last_text) > MAX_RANGE_DIGITS or not (first_text or last_text):
        raise Unsatisfiable(header)
    if not first_text:  # bytes=-N: the last N bytes
        suffix = int(last_text)
        if suffix == 0 or size == 0:
            raise Unsatisfiable(header)
        return max(0, size - suffix), size - 1
    first = int(first_text)
    last = int(last_text) if last_text else size - 1
    if first >= size or last < first:
        raise Unsatisfiable(header)
    return first, min(last, size - 1)


async def send_blob(
    request: web.Request, *, size: int, read: ReadRange, content_type: str, headers: Mapping[str, str]
) -> web.StreamResponse:
    """Answer ``request`` with the blob (or the range it asked for), reading it ``CHUNK_BYTES`` at a time."""
    base = {**headers, "Accept-Ranges": "bytes", "Content-Type": content_type}
    try:
        wanted = parse_range(request.headers.get("Range"), size)
    except Unsatisfiable:
        return web.Response(status=416, headers={**base, "Content-Range": f"bytes */{size}"})
    first, last = wanted if wanted is not None else (0, size - 1)
    length = max(0, last - first + 1)
    response = web.StreamResponse(status=206 if wanted is not None else 200, headers=base)
    if wanted is not None:
        response.headers["Content-Range"] = f"bytes {first}-{last}/{size}"
    response.content_length = length
    await response.prepare(request)
    if request.method == "HEAD":
        return response
    offset = first
    while offset <= last:
        chunk = await read(offset, min(CHUNK_BYTES, last - offset + 1))
        if not chunk:  # deleted while it was being sent: the client sees a short body and retries
            break
        await response.write(chunk)
        offset += len(chunk)
    await response.write_eof()
    return response
