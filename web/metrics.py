"""``GET /metrics`` in the Prometheus text format (``prometheus-client``); every name starts with ``i2v_``.

The job and worker figures are read from the store at each scrape (one snapshot, so they agree with each other
and hold for every process sharing the database): jobs by state (the queue depth is ``state="queued"``), jobs
finished by outcome, GPU-seconds used, wait and generation time histograms by preset, workers by state and their
restarts. The app adds what only it knows through hooks: Discord's gateway latency and the event-loop lag.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from sqlalchemy import func, select

from jobs.models import Job, JobStatus, Worker, WorkerState
from jobs.stats import NO_PRESET

DURATION_BUCKETS_SECONDS = (1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)
LAG_SAMPLE_INTERVAL_SECONDS = 0.5  # how often the event-loop lag is sampled
FINISHED = (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)

Latency = Callable[[], "float | None"]


@dataclass
class Snapshot:
    """What one scrape reads from the store."""

    by_state: dict[str, int]
    gpu_seconds: float
    waits: dict[str, list[float]]
    generations: dict[str, list[float]]
    workers: dict[str, int]
    restarts: int
    extra: dict[str, float | None] = field(default_factory=dict)


async def read_snapshot(session: Any) -> Snapshot:
    """Read the figures (a few aggregate queries and one pass over finished jobs' times)."""
    counts = dict((await session.execute(select(Job.status, func.count(Job.id)).group_by(Job.status))).all())
    by_state = {status.value: int(counts.get(status, 0)) for status in JobStatus}
    gpu = float(await session.scalar(select(func.coalesce(func.sum(Job.gpu_seconds), 0.0))) or 0.0)
    waits: dict[str, list[float]] = {}
    generations: dict[str, list[float]] = {}
    rows = await session.execute(
        select(Job.preset, Job.created_at, Job.started_at, Job.finished_at, Job.status)
        .where(Job.status.in_(FINISHED), Job.started_at.is_not(None))
    )
    for preset, created, started, finished, status in rows:
        name = preset or NO_PRESET
        waits.setdefault(name, []).append(max(0.0, (started - created).total_seconds()))
        if status == JobStatus.SUCCEEDED and finished is not None:
            generations.setdefault(name, []).append(max(0.0, (finished - started).total_seconds()))
    worker_counts = dict((await session.execute(
        select(Worker.state, func.count(Worker.id)).group_by(Worker.state))).all())
    restarts = int(await session.scalar(select(func.coalesce(func.sum(Worker.restarts), 0))) or 0)
    return Snapshot(
        by_state=by_state, gpu_seconds=gpu, waits=waits, generations=generations,
        workers={state.value: int(worker_counts.get(state, 0)) for state in WorkerState}, restarts=restarts,
    )


def _histogram(name: str, doc: str, samples: dict[str, list[float]]) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, doc, labels=["preset"])
    for preset, values in sorted(samples.items()):
        buckets = [(str(bound), sum(1 for v in values if v <= bound)) for bound in DURATION_BUCKETS_SECONDS]
        buckets.append(("+Inf", len(values)))
        family.add_metric([preset], buckets, sum_value=sum(values))
    return family


class _SnapshotCollector:
    def __init__(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot

    def collect(self) -> Iterable[Any]:
        s = self.snapshot
        jobs = GaugeMetricFamily("i2v_jobs", "Jobs in the store by state (state=queued is the queue depth).",
                                 labels=["state"])
        for state, count in s.by_state.items():
            jobs.add_metric([state], count)
        yield jobs
        finished = CounterMetricFamily("i2v_jobs_finished", "Jobs finished, by outcome.", labels=["outcome"])
        for status in FINISHED:
            finished.add_metric([status.value], s.by_state.get(status.value, 0))
        yield finished
        yield CounterMetricFamily("i2v_gpu_seconds", "GPU-seconds measured for finished jobs.", value=s.gpu_seconds)
        yield _histogram("i2v_job_wait_seconds", "Seconds from enqueue to the start of the last attempt.", s.waits)
        yield _histogram("i2v_job_generation_seconds", "Seconds from start to finish of succeeded jobs.",
                         s.generations)
        workers = GaugeMetricFamily("i2v_workers", "Worker processes in the registry by state.", labels=["state"])
        for state, count in s.workers.items():
            workers.add_metric([state], count)
        yield workers
        yield CounterMetricFamily("i2v_worker_restarts", "Worker restarts recorded in the registry.", value=s.restarts)
        for name, value in sorted(s.extra.items()):
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


def metrics_handler(readers: Any, *, gateway_latency: Latency, loop_lag: LoopLag) -> Any:
    """The aiohttp handler for ``/metrics``."""

    async def metrics(request: web.Request) -> web.Response:
        async with readers() as session:
            snapshot = await read_snapshot(session)
        snapshot.extra = {
            "i2v_discord_gateway_latency_seconds": gateway_latency(),
            "i2v_event_loop_lag_seconds": loop_lag.last,
        }
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_SnapshotCollector(snapshot))  # type: ignore[arg-type]
        body = generate_latest(registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST, "Cache-Control": "no-store"})

    return metrics
