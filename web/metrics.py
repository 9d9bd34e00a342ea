"""``GET /metrics`` in the Prometheus text format (``prometheus-client``); every name starts with ``i2v_``.

The job and worker figures are read from the store at most every ``METRICS_CACHE_SECONDS``
(``jobs.stats.read_metrics_snapshot``: a few aggregate
queries, the histograms counted in SQL, so they hold for every process sharing the database): jobs by state (the
queue depth is ``state="queued"``), jobs finished by outcome, GPU-seconds used, wait and generation time histograms
by preset, workers by state and their restarts. The app adds what only it knows through hooks: Discord's gateway
latency and the event-loop lag; the bot's delivery counts its upload retries in ``UPLOAD_RETRIES``.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Iterable
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

from jobs.models import JobStatus
from jobs.stats import Histogram, MetricsSnapshot, read_metrics_snapshot
from web.cache import Cached
from web.context import Sessions

METRICS_CACHE_SECONDS = 5.0  # the store's aggregates are read at most this often, however often scraped
LAG_SAMPLE_INTERVAL_SECONDS = 0.5  # how often the event-loop lag is sampled
FINISHED = (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)
UPLOAD_RETRY_REASONS = ("timeout", "connection", "server_error")
"""Why a result upload was tried again (``bot.delivery``): it timed out (it may have landed: the channel is read
first), the connection failed, or Discord answered a 5xx that discord.py does not retry itself (503)."""

Latency = Callable[[], "float | None"]


def _upload_retries_counter() -> Counter:
    counter = Counter(
        "i2v_upload_retries", "Result uploads to Discord tried again by the bot, by reason.", ["reason"], registry=None
    )
    for reason in UPLOAD_RETRY_REASONS:
        counter.labels(reason=reason)  # every reason shows, at 0 until it happens
    return counter


UPLOAD_RETRIES = _upload_retries_counter()
"""This process's upload retries: ``bot.delivery`` counts them, every scrape of this process shows them (only the
bot process uploads to Discord)."""


def _histogram(name: str, doc: str, histograms: dict[str, Histogram]) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, doc, labels=["preset"])
    for preset, histogram in sorted(histograms.items()):
        buckets = [(str(bound), count) for bound, count in zip(histogram.bounds, histogram.cumulative, strict=True)]
        buckets.append(("+Inf", histogram.count))
        family.add_metric([preset], buckets, sum_value=histogram.sum_seconds)
    return family


class _SnapshotCollector:
    def __init__(self, snapshot: MetricsSnapshot, extra: dict[str, float | None]) -> None:
        self.snapshot = snapshot
        self.extra = extra

    def collect(self) -> Iterable[Any]:
        s = self.snapshot
        jobs = GaugeMetricFamily(
            "i2v_jobs", "Jobs in the store by state (state=queued is the queue depth).", labels=["state"]
        )
        for status, count in s.by_state.items():
            jobs.add_metric([status.value], count)
        yield jobs
        finished = CounterMetricFamily("i2v_jobs_finished", "Jobs finished, by outcome.", labels=["outcome"])
        for status in FINISHED:
            finished.add_metric([status.value], s.by_state.get(status, 0))
        yield finished
        yield CounterMetricFamily("i2v_gpu_seconds", "GPU-seconds measured for finished jobs.", value=s.gpu_seconds)
        yield _histogram("i2v_job_wait_seconds", "Seconds from enqueue to the start of the last attempt.", s.waits)
        yield _histogram("i2v_job_generation_seconds", "Seconds from start to finish of succeeded jobs.", s.generations)
        workers = GaugeMetricFamily("i2v_workers", "Worker processes in the registry by state.", labels=["state"])
        for state, count in s.workers.items():
            workers.add_metric([state.value], count)
        yield workers
        yield CounterMetricFamily("i2v_worker_restarts", "Worker restarts recorded in the registry.", value=s.restarts)
        yield CounterMetricFamily(
            "i2v_model_switches",
            "Model switches of the workers (one model unloaded, another loaded), summed over the registry.",
            value=s.model_switches,
        )
        yield CounterMetricFamily(
            "i2v_model_switch_seconds", "Seconds the workers spent switching models.", value=s.model_switch_seconds
        )
        for name, value in sorted(self.extra.items()):
            if value is not None and math.isfinite(value):
                yield GaugeMetricFamily(name, EXTRA_DOCS.get(name, name), value=value)


EXTRA_DOCS = {
    "i2v_discord_gateway_latency_seconds": "Discord gateway heartbeat latency (absent without a Discord client).",
    "i2v_event_loop_lag_seconds": "How late the app's event loop last woke a timer.",
}


class LoopLag:
    """Samples how late the event loop runs a timer (the web server's own sampler)."""

    def __init__(self) -> None:
        self.last: float | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="web-loop-lag")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            start = time.monotonic()
            await asyncio.sleep(LAG_SAMPLE_INTERVAL_SECONDS)
            self.last = max(0.0, time.monotonic() - start - LAG_SAMPLE_INTERVAL_SECONDS)


def metrics_handler(readers: Sessions, *, gateway_latency: Latency, loop_lag: LoopLag) -> Handler:
    """The aiohttp handler for ``/metrics``: the store's figures are read at most once per
    ``METRICS_CACHE_SECONDS`` (an open endpoint), this process's own at every scrape."""

    async def read() -> MetricsSnapshot:
        async with readers() as session:
            return await read_metrics_snapshot(session)

    snapshots = Cached(METRICS_CACHE_SECONDS, read)

    async def metrics(request: web.Request) -> web.Response:
        snapshot = await snapshots.get()
        extra = {
            "i2v_discord_gateway_latency_seconds": gateway_latency(),
            "i2v_event_loop_lag_seconds": loop_lag.last,
        }
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_SnapshotCollector(snapshot, extra))
        registry.register(UPLOAD_RETRIES)
        body = generate_latest(registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST, "Cache-Control": "no-store"})

    return metrics
