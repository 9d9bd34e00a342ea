"""The store's figures behind /metrics, aggregated in SQL, on a migrated SQLite file and on PostgreSQL.

Jobs are written with known timestamps; every histogram is checked against the finished jobs by preset, bucket by
bucket, and then scraped through the real /metrics handler.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
import pytest_asyncio
from aiohttp import ClientSession, web
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from jobs.listings import NO_PRESET
from jobs.models import Job, JobSource, JobStatus, Worker, WorkerState
from jobs.stats import DURATION_BUCKETS_SECONDS, read_metrics_snapshot
from web.metrics import UPLOAD_RETRY_REASONS, LoopLag, metrics_handler

Sessions = async_sessionmaker[AsyncSession]
T0 = datetime(2026, 11, 24, 12, 0, 0, tzinfo=UTC)

# (preset, status, wait seconds or None if never started, generation seconds or None, gpu seconds)
JOBS: list[tuple[str | None, JobStatus, float | None, float | None, float | None]] = [
    ("quick", JobStatus.SUCCEEDED, 0.5, 10.0, 9.5),  # a generation exactly on the 10 s bound counts in le=10
    ("quick", JobStatus.SUCCEEDED, 3.25, 45.125, 44.0),
    ("quick", JobStatus.FAILED, 7.0, 2.0, 1.5),  # a wait, but no generation: it failed
    ("quick", JobStatus.CANCELLED, 1.0, 0.75, 0.5),  # the same for a cancelled one
    ("quick", JobStatus.RUNNING, 2.0, None, None),  # not finished: in no histogram
    ("quick", JobStatus.QUEUED, None, None, None),
    (None, JobStatus.SUCCEEDED, 4000.0, 1.5, 1.25),  # past the last bound: only in +Inf
    (None, JobStatus.SUCCEEDED, -3.0, 0.001, 0.5),  # a clock step made the wait negative: counts as 0
    ("high", JobStatus.CANCELLED, None, None, None),  # cancelled while queued: never started
    ("high", JobStatus.SUCCEEDED, 600.0, 1800.0, 1790.0),
]


def _job(
    index: int, preset: str | None, status: JobStatus, wait: float | None, generation: float | None, gpu: float | None
) -> Job:
    created = T0 + timedelta(minutes=index)
    started = created + timedelta(seconds=wait) if wait is not None else None
    finished = None
    if status in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED):
        finished = (started or created) + timedelta(seconds=generation or 0.0)
    return Job(
        user_id=100 + index,
        guild_id=1,
        channel_id=2,
        source=JobSource.SLASH,
        prompt="p",
        negative_prompt="",
        preset=preset,
        resolution="512p",
        frames=8,
        fps=8,
        steps=30,
        guidance=9.0,
        seed=index,
        width=512,
        height=512,
        input_sha256="0" * 64,
        status=status,
        priority=0,
        round=0,
        attempt=0 if started is None else 1,
        cost_estimate=10.0,
        gpu_seconds=gpu,
        created_at=created,
        started_at=started,
        finished_at=finished,
        upload_limit_bytes=10 * 1024 * 1024,
    )


def _expected(kind: str) -> dict[str, list[float]]:
    """The observations the histograms must hold, worked out in Python from JOBS."""
    finished = (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)
    samples: dict[str, list[float]] = {}
    for preset, status, wait, generation, _ in JOBS:
        if status not in finished or wait is None:
            continue
        if kind == "wait":
            samples.setdefault(preset or NO_PRESET, []).append(max(0.0, wait))
        elif status == JobStatus.SUCCEEDED and generation is not None:
            samples.setdefault(preset or NO_PRESET, []).append(generation)
    return samples


@pytest_asyncio.fixture
async def filled(db_sessionmaker: Sessions) -> Sessions:
    async with db_sessionmaker.begin() as session:
        session.add_all(_job(i, *row) for i, row in enumerate(JOBS))
        now = T0 + timedelta(hours=3)
        session.add_all(
            [
                Worker(
                    id="w-idle",
                    host="h",
                    pid=1,
                    state=WorkerState.IDLE,
                    restarts=2,
                    switches=3,
                    switch_seconds=4.5,
                    started_at=now,
                    last_heartbeat_at=now,
                ),
                Worker(
                    id="w-busy",
                    host="h",
                    pid=2,
                    state=WorkerState.BUSY,
                    restarts=1,
                    switches=1,
                    switch_seconds=2.0,
                    started_at=now,
                    last_heartbeat_at=now,
                ),
                Worker(
                    id="w-gone",
                    host="h",
                    pid=3,
                    state=WorkerState.STOPPED,
                    restarts=4,
                    started_at=now,
                    last_heartbeat_at=now,
                ),
            ]
        )
    return db_sessionmaker


async def test_histograms_equal_the_finished_jobs_by_preset(filled: Sessions) -> None:
    async with filled() as session:
        snapshot = await read_metrics_snapshot(session)
    for histograms, kind in ((snapshot.waits, "wait"), (snapshot.generations, "generation")):
        expected = _expected(kind)
        assert sorted(histograms) == sorted(expected), kind
        for preset, values in expected.items():
            histogram = histograms[preset]
            assert histogram.count == len(values), (kind, preset)
            assert histogram.sum_seconds == pytest.approx(sum(values), abs=1e-3), (kind, preset)
            assert histogram.bounds == DURATION_BUCKETS_SECONDS
            assert list(histogram.cumulative) == [sum(1 for v in values if v <= b) for b in DURATION_BUCKETS_SECONDS]
    # worked out by hand for the job on the bound and the one past every bound
    assert snapshot.generations["quick"].cumulative[DURATION_BUCKETS_SECONDS.index(10.0)] == 1
    assert snapshot.waits[NO_PRESET].cumulative[-1] == 1 and snapshot.waits[NO_PRESET].count == 2
    assert snapshot.waits["quick"].count == 4 and snapshot.generations["quick"].count == 2
    assert snapshot.by_state == {
        JobStatus.QUEUED: 1,
        JobStatus.RUNNING: 1,
        JobStatus.SUCCEEDED: 5,
        JobStatus.FAILED: 1,
        JobStatus.CANCELLED: 2,
    }
    assert snapshot.gpu_seconds == pytest.approx(sum(row[4] or 0.0 for row in JOBS))
    assert snapshot.workers[WorkerState.IDLE] == 1 and snapshot.workers[WorkerState.BUSY] == 1
    assert snapshot.workers[WorkerState.STOPPED] == 1 and snapshot.restarts == 7


async def test_an_empty_store_has_no_histograms(db_sessionmaker: Sessions) -> None:
    async with db_sessionmaker() as session:
        snapshot = await read_metrics_snapshot(session)
    assert snapshot.waits == {} and snapshot.generations == {}
    assert set(snapshot.by_state.values()) == {0} and snapshot.gpu_seconds == 0.0 and snapshot.restarts == 0


async def test_bounds_are_checked(db_sessionmaker: Sessions) -> None:
    async with db_sessionmaker() as session:
        for bad in ((), (5.0, 5.0), (10.0, 1.0)):
            with pytest.raises(ValueError, match="strictly increasing"):
                await read_metrics_snapshot(session, bounds=bad)


@pytest_asyncio.fixture
async def scrape(filled: Sessions) -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_get("/metrics", metrics_handler(filled, gateway_latency=lambda: 0.125, loop_lag=LoopLag()))
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        async with ClientSession() as http, http.get(f"http://127.0.0.1:{port}/metrics") as response:
            assert response.status == 200 and response.content_type == "text/plain"
            yield await response.text()
    finally:
        await runner.cleanup()


async def test_metrics_scrape_shows_the_histograms_by_preset(scrape: str) -> None:
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(scrape)
        for s in family.samples
    }
    for kind, name in (("wait", "i2v_job_wait_seconds"), ("generation", "i2v_job_generation_seconds")):
        for preset, values in _expected(kind).items():
            assert samples[(f"{name}_count", (("preset", preset),))] == len(values)
            for bound in DURATION_BUCKETS_SECONDS:
                key = (f"{name}_bucket", (("le", str(bound)), ("preset", preset)))
                assert samples[key] == sum(1 for v in values if v <= bound), (key, values)
            assert samples[(f"{name}_bucket", (("le", "+Inf"), ("preset", preset)))] == len(values)
    assert samples[("i2v_jobs_finished_total", (("outcome", "succeeded"),))] == 5
    assert samples[("i2v_jobs", (("state", "queued"),))] == 1
    assert samples[("i2v_worker_restarts_total", ())] == 7
    assert samples[("i2v_model_switches_total", ())] == 4
    assert samples[("i2v_model_switch_seconds_total", ())] == 6.5
    assert samples[("i2v_discord_gateway_latency_seconds", ())] == 0.125
    for reason in UPLOAD_RETRY_REASONS:
        assert ("i2v_upload_retries_total", (("reason", reason),)) in samples
