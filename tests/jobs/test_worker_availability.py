"""The worker registry's start-failure record and the "video generation is unavailable" verdict read from it, on
both SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from jobs.models import WorkerState, utcnow
from jobs.requests import availability_notice
from jobs.stats import ModelDownload, worker_infos
from jobs.workers import (
    find_worker,
    forget_stale_failures,
    generation_unavailable,
    mark_stopped,
    model_downloads,
    record_download,
    record_start_failure,
    register_worker,
    unavailable_reason,
    upsert_worker,
)

DEAD_AFTER_S = 15.0
REASON = "the model could not be loaded: I2V_MODEL '/models/x' looks like a folder but there is no such folder"


async def test_a_failed_start_makes_generation_unavailable_until_a_worker_is_idle(
    db_sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    async with db_sessionmaker.begin() as s:
        assert await generation_unavailable(s, dead_after_s=DEAD_AFTER_S) is None  # no worker, nothing known wrong
        # the child died before registering (a bad setting): the supervisor creates the row
        await record_start_failure(s, "gpu-0", host="h", pid=41, reason=REASON + "\nsecond line", unavailable=False)
    async with db_sessionmaker() as s:
        row = await find_worker(s, "gpu-0")
        assert row is not None and row.state == WorkerState.CRASHED and row.unavailable_since is None
        assert row.failure_reason == REASON  # one line
        assert await generation_unavailable(s, dead_after_s=DEAD_AFTER_S) == REASON
        notice = await availability_notice(s, own_problem=None, dead_after_s=DEAD_AFTER_S)
        assert notice is not None and notice.startswith("⚠️ Video generation is unavailable right now: " + REASON)
        assert "stays queued" in notice
        own = await availability_notice(s, own_problem="invalid setting: I2V_DTYPE", dead_after_s=DEAD_AFTER_S)
        assert own is not None and "invalid setting: I2V_DTYPE" in own and REASON not in own  # the own reason wins

    async with db_sessionmaker.begin() as s:
        await record_start_failure(s, "gpu-0", host="h", pid=42, reason=REASON, unavailable=True)
    async with db_sessionmaker() as s:
        failed = await find_worker(s, "gpu-0")
        assert failed is not None and failed.unavailable_since is not None
        since = failed.unavailable_since
    async with db_sessionmaker.begin() as s:  # a later failure keeps the time the unavailability began
        await record_start_failure(s, "gpu-0", host="h", pid=43, reason=REASON, unavailable=True)
        # a retry that is loading does not count as alive while the supervisor is unavailable
        await upsert_worker(
            s,
            "gpu-0",
            host="h",
            pid=44,
            state=WorkerState.LOADING,
            gpu_name=None,
            gpu_memory_bytes=None,
            current_job_id=None,
        )
    async with db_sessionmaker() as s:
        retrying = await find_worker(s, "gpu-0")
        assert retrying is not None and retrying.unavailable_since == since
        assert await generation_unavailable(s, dead_after_s=DEAD_AFTER_S) == REASON

    async with db_sessionmaker.begin() as s:  # the fixed worker is idle: the record is cleared
        await upsert_worker(
            s,
            "gpu-0",
            host="h",
            pid=44,
            state=WorkerState.IDLE,
            gpu_name="H100",
            gpu_memory_bytes=None,
            current_job_id=None,
        )
    async with db_sessionmaker() as s:
        row = await find_worker(s, "gpu-0")
        assert row is not None and row.failure_reason is None and row.unavailable_since is None
        assert await generation_unavailable(s, dead_after_s=DEAD_AFTER_S) is None
        assert await availability_notice(s, own_problem=None, dead_after_s=DEAD_AFTER_S) is None


async def test_one_live_worker_is_enough_and_a_stopped_supervisor_clears_its_record(
    db_sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    async with db_sessionmaker.begin() as s:
        await record_start_failure(s, "broken", host="a", pid=7, reason=REASON, unavailable=True)
        await upsert_worker(
            s,
            "good",
            host="b",
            pid=8,
            state=WorkerState.IDLE,
            gpu_name=None,
            gpu_memory_bytes=None,
            current_job_id=None,
        )
    async with db_sessionmaker() as s:
        assert await generation_unavailable(s, dead_after_s=DEAD_AFTER_S) is None
        infos = await worker_infos(s, now=utcnow(), stale_after_seconds=DEAD_AFTER_S)
        assert {w.worker_id: w.failure_reason for w in infos} == {"broken": REASON, "good": None}
        # the good one stops heartbeating: the broken one's reason is the news
        later = utcnow() + timedelta(seconds=DEAD_AFTER_S + 1)
        assert unavailable_reason(infos, now=later, dead_after_s=DEAD_AFTER_S) == REASON
    async with db_sessionmaker.begin() as s:
        assert await mark_stopped(s, "broken") is True
        assert await mark_stopped(s, "never-registered") is False
    async with db_sessionmaker() as s:
        row = await find_worker(s, "broken")
        assert row is not None and row.state == WorkerState.STOPPED and row.failure_reason is None
        later = utcnow() + timedelta(seconds=DEAD_AFTER_S + 1)
        infos = await worker_infos(s, now=later, stale_after_seconds=DEAD_AFTER_S)
        assert unavailable_reason(infos, now=later, dead_after_s=DEAD_AFTER_S) is None


async def test_a_dead_processes_failure_record_is_forgotten_on_its_host(
    db_sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    """A supervisor that was killed while unavailable leaves its record; the next start on that host forgets it (a
    live supervisor's record, and other hosts', stay)."""
    async with db_sessionmaker.begin() as s:
        await record_start_failure(s, "old-run", host="gpu-host", pid=1001, reason=REASON, unavailable=True)
        await record_start_failure(s, "retrying", host="gpu-host", pid=1002, reason=REASON, unavailable=True)
        await record_start_failure(s, "elsewhere", host="other", pid=1001, reason=REASON, unavailable=False)
        forgotten = await forget_stale_failures(s, "gpu-host", alive=lambda pid: pid == 1002)
    assert forgotten == ["old-run"]
    async with db_sessionmaker() as s:
        old_run, retrying, elsewhere = [await find_worker(s, w) for w in ("old-run", "retrying", "elsewhere")]
    assert old_run is not None and retrying is not None and elsewhere is not None
    assert old_run.state == WorkerState.STOPPED and old_run.failure_reason is None
    assert retrying.failure_reason == REASON and elsewhere.failure_reason == REASON


async def test_a_download_is_told_while_its_worker_lives_and_not_by_the_next_process(
    db_sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    async with db_sessionmaker.begin() as s:
        await register_worker(s, "gpu-0", host="h", pid=50, model="m", loadable_models=["i2vgenxl"])
        await record_download(s, "gpu-0", model="i2vgenxl", done_bytes=10, total_bytes=40)
        await register_worker(s, "gpu-1", host="h", pid=51, model="m", loadable_models=["i2vgenxl"])
        await record_download(s, "gpu-1", model="i2vgenxl", done_bytes=30, total_bytes=40)
    async with db_sessionmaker() as s:
        downloads = await model_downloads(s, dead_after_s=DEAD_AFTER_S)
        assert downloads == {"i2vgenxl": ModelDownload("i2vgenxl", 30, 40)}  # the furthest of the two
        assert downloads["i2vgenxl"].text() == "0.0 of 0.0 GB (75 %)"
        later = utcnow() + timedelta(seconds=DEAD_AFTER_S + 1)  # both stopped heartbeating: nothing is told
        assert await model_downloads(s, dead_after_s=DEAD_AFTER_S, now=later) == {}
    async with db_sessionmaker.begin() as s:  # a new process of gpu-1, and gpu-0 finished its download
        await register_worker(s, "gpu-1", host="h", pid=52, model="m", loadable_models=["i2vgenxl"])
        await record_download(s, "gpu-0", model=None)
    async with db_sessionmaker() as s:
        assert await model_downloads(s, dead_after_s=DEAD_AFTER_S) == {}
