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
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from generator.model_spaces import display_name
from jobs.models import utcnow
from jobs.stats import ModelDownload, worker_infos
from jobs.workers import LIVE_STATES, unavailable_reason
from web.cache import Cached
from web.context import Sessions

log = logging.getLogger(__name__)

HEALTH_CACHE_SECONDS = 1.0  # an open endpoint: a flood of probes reads the store at most once a second

WorkerProblem = Callable[[], "str | None"]
"""Returns why the app's own worker cannot run (the supervisor's failure reason), or None."""


async def health_report(
    readers: Sessions, *, dead_after: float, worker_problem: WorkerProblem, detailed: bool = True
) -> tuple[int, dict[str, Any]]:
    """(HTTP status, JSON body) of the health check; without ``detailed`` (anyone but the operator) the body
    names no worker, host or failure: only the verdict, its kind of cause and how many workers are alive."""
    status, body = await _health_report(readers, dead_after=dead_after, worker_problem=worker_problem)
    if detailed:
        return status, body
    public: dict[str, Any] = {"status": body["status"], "workers": len(body.get("workers", []))}
    downloading = [w["downloading"] for w in body.get("workers", []) if "downloading" in w]
    if downloading:  # names no worker or host: which model and how far, as a queued job's page says
        public["downloading"] = downloading
    if status != 200:
        public["reason"] = body["reason"].split(":", 1)[0]
    return status, public


async def _health_report(
    readers: Sessions, *, dead_after: float, worker_problem: WorkerProblem
) -> tuple[int, dict[str, Any]]:
    now = utcnow()
    try:
        async with readers() as session:
            workers = await worker_infos(session, now=now, stale_after_seconds=dead_after)
    except Exception as error:  # noqa: BLE001 - any driver error means the database does not answer
        log.warning("health check: the database did not answer: %s", error)
        return 503, {"status": "unavailable", "reason": f"the database does not answer: {type(error).__name__}"}
    live = [w for w in workers if w.state in LIVE_STATES and not w.stale]
    shown = [
        {"id": w.worker_id, "state": w.state.value, "job": w.current_job_id}
        | ({"downloading": download_line(w.download)} if w.download else {})
        for w in live
    ]
    problem = worker_problem() or unavailable_reason(workers, now=now, dead_after_s=dead_after)
    if problem:
        return 503, {"status": "unavailable", "reason": f"video generation is unavailable: {problem}", "workers": shown}
    if not live:
        return 503, {
            "status": "unavailable",
            "reason": f"no worker is alive (none heartbeat in the last {dead_after:.0f} s)",
            "workers": [],
        }
    return 200, {"status": "ok", "database": "ok", "workers": shown}


def download_line(download: ModelDownload) -> str:
    """``downloading model I2VGen-XL: 1.2 of 5.1 GB (24 %)``."""
    return f"downloading model {display_name(download.model)}: {download.text()}"


class Health:
    """``/healthz``: anyone gets the verdict (computed at most once per ``HEALTH_CACHE_SECONDS``), the operator
    ``is_operator(request)`` the details."""

    def __init__(
        self,
        readers: Sessions,
        *,
        dead_after: float,
        worker_problem: WorkerProblem,
        is_operator: Callable[[web.Request], Awaitable[bool]],
    ) -> None:
        self.readers = readers
        self.dead_after = dead_after
        self.worker_problem = worker_problem
        self.is_operator = is_operator
        self._public: Cached[tuple[int, dict[str, Any]]] = Cached(HEALTH_CACHE_SECONDS, self._report)

    async def _report(self) -> tuple[int, dict[str, Any]]:
        return await health_report(
            self.readers, dead_after=self.dead_after, worker_problem=self.worker_problem, detailed=False
        )

    async def handler(self, request: web.Request) -> web.Response:
        if await self.is_operator(request):
            status, body = await health_report(
                self.readers, dead_after=self.dead_after, worker_problem=self.worker_problem
            )
        else:
            status, body = await self._public.get()
        return web.json_response(body, status=status, headers={"Cache-Control": "no-store"})
