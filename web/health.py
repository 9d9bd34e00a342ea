"""``GET /healthz``: 200 with a short JSON body when the database answers and a worker is alive or loading, 503
with the reason otherwise.

A worker counts as alive when its registry row (``jobs.stats.worker_infos``) is starting, loading, idle or busy
and heartbeat within WORKER_DEAD_AFTER seconds. ``worker_problem`` is the hook through which the app's worker
supervisor tells why no worker can start (its one-line failure reason); it wins over the registry, where a
worker that cannot start (embedded or on another machine) records its reason (``jobs.workers.unavailable_reason``).
Either way the body's ``reason`` reads "video generation is unavailable: <reason>".
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from aiohttp import web

from jobs.models import WorkerState, utcnow
from jobs.stats import worker_infos
from jobs.workers import unavailable_reason

log = logging.getLogger(__name__)

LIVE_WORKER_STATES = frozenset({WorkerState.STARTING, WorkerState.LOADING, WorkerState.IDLE, WorkerState.BUSY})

WorkerProblem = Callable[[], "str | None"]
"""Returns why the app's own worker cannot run (the supervisor's failure reason), or None."""


def no_problem() -> str | None:
    """The default ``worker_problem`` hook: nothing known beyond the worker registry."""
    return None


async def health_report(readers: Any, *, dead_after: float, worker_problem: WorkerProblem) -> tuple[int, dict[str, Any]]:
    """(HTTP status, JSON body) of the health check."""
    now = utcnow()
    try:
        async with readers() as session:
            workers = await worker_infos(session, now=now, stale_after_seconds=dead_after)
    except Exception as error:  # any driver error means the database does not answer
        log.warning("health check: the database did not answer: %s", error)
        return 503, {"status": "unavailable", "reason": f"the database does not answer: {type(error).__name__}"}
    live = [w for w in workers if w.state in LIVE_WORKER_STATES and not w.stale]
    shown = [{"id": w.worker_id, "state": w.state.value, "job": w.current_job_id} for w in live]
    problem = worker_problem() or unavailable_reason(workers, now=now, dead_after_s=dead_after)
    if problem:
        return 503, {"status": "unavailable", "reason": f"video generation is unavailable: {problem}",
                     "workers": shown}
    if not live:
        return 503, {"status": "unavailable",
                     "reason": f"no worker is alive (none heartbeat in the last {dead_after:.0f} s)", "workers": []}
    return 200, {"status": "ok", "database": "ok", "workers": shown}


def health_handler(readers: Any, *, dead_after: float, worker_problem: WorkerProblem) -> Any:
    """The aiohttp handler for ``/healthz``."""

    async def healthz(request: web.Request) -> web.Response:
        status, body = await health_report(readers, dead_after=dead_after, worker_problem=worker_problem)
        return web.json_response(body, status=status, headers={"Cache-Control": "no-store"})

    return healthz
