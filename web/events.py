"""Progress pushed to the page: ``GET /api/jobs/{id}/events`` is a server-sent event stream of the job's state.

The server reads the job once every ``EVENT_INTERVAL_SECONDS`` and sends an event only when what the page shows
changed (status, phase, step, position); a comment line keeps idle connections open. The stream ends after the
job's final state, and the page closes its EventSource then, so the browser does not reconnect; it also ends after
``STREAM_MAX_SECONDS`` (the browser opens a new one after ``RECONNECT_MS``). Each user holds at most a few streams
at once (``web.limits.StreamSlots``).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from jobs.models import PENDING_STATUSES, JobStatus
from jobs.queue import find_job, queue_positions
from jobs.workers import model_downloads
from web.context import Sessions
from web.render import job_json

EVENT_INTERVAL_SECONDS = 1.0  # the store is read once a second per open stream
KEEPALIVE_SECONDS = 15.0  # a comment line at least this often
STREAM_MAX_SECONDS = 600.0  # a stream ends after this even while its job waits; the browser opens a new one
RECONNECT_MS = 5000  # the browser's EventSource waits this long before it opens the next stream
SESSION_CHECK_SECONDS = 5.0  # an open stream ends this soon after its session does (sign-out elsewhere, a ban)

StillSignedIn = Callable[[], Awaitable[bool]]


def _shown(data: dict[str, Any]) -> tuple[Any, ...]:
    return (
        data["status"],
        data["phase"],
        data["step"],
        data["position"],
        data["cancel_requested"],
        data["model_download"],
    )


async def job_state(readers: Sessions, job_id: int, *, dead_after_s: float) -> dict[str, Any] | None:
    """The job as the page shows it, with its place in the queue and, while queued, the download of its model by a
    worker alive within ``dead_after_s``; None when it does not exist."""
    async with readers() as session:
        job = await find_job(session, job_id)
        if job is None:
            return None
        place = (await queue_positions(session)).get(job_id) if job.status in PENDING_STATUSES else None
        downloads = await model_downloads(session, dead_after_s=dead_after_s) if job.status == JobStatus.QUEUED else {}
        return job_json(
            job,
            position=place.position if place else None,
            eta_seconds=place.eta_seconds if place else None,
            downloads=downloads,
        )


async def stream_job(
    request: web.Request,
    readers: Sessions,
    job_id: int,
    *,
    signed_in: StillSignedIn,
    dead_after_s: float,
    max_seconds: float | None = None,
) -> web.StreamResponse:
    """Send the job's state as events until it is final, the page goes away, the session ends (``signed_in``
    asked every ``SESSION_CHECK_SECONDS``), or ``max_seconds`` (default ``STREAM_MAX_SECONDS``) have passed."""
    max_seconds = STREAM_MAX_SECONDS if max_seconds is None else max_seconds
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-store",
            "X-Accel-Buffering": "no",
        }
    )
    await response.prepare(request)
    await response.write(f"retry: {RECONNECT_MS}\n\n".encode())
    last: tuple[Any, ...] | None = None
    quiet_since = started = checked = time.monotonic()
    while time.monotonic() - started < max_seconds:
        if time.monotonic() - checked >= SESSION_CHECK_SECONDS:
            checked = time.monotonic()
            if not await signed_in():
                await response.write(b"event: signed-out\ndata: {}\n\n")
                break
        state = await job_state(readers, job_id, dead_after_s=dead_after_s)
        if state is None:
            await response.write(b"event: gone\ndata: {}\n\n")
            break
        if _shown(state) != last:
            last = _shown(state)
            quiet_since = time.monotonic()
            await response.write(f"data: {json.dumps(state)}\n\n".encode())
            if not state["pending"]:
                break
        elif time.monotonic() - quiet_since >= KEEPALIVE_SECONDS:
            quiet_since = time.monotonic()
            await response.write(b": waiting\n\n")
        await asyncio.sleep(EVENT_INTERVAL_SECONDS)
    return response
