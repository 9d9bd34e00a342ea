"""The store benchmark's code path runs (a few jobs) on both back ends, so bench/store.py cannot rot."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from sqlalchemy import func, select

from jobs.db import make_engine, make_sessionmaker
from jobs.models import Job, JobStatus, LedgerKind, QuotaLedger

BENCH = Path(__file__).resolve().parents[2] / "bench" / "store.py"


def _load_bench():
    spec = importlib.util.spec_from_file_location("bench_store", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


async def test_bench_lifecycle_completes_every_job(db_url: str) -> None:
    bench = _load_bench()
    result = await bench.run(db_url, "test", jobs=6, workers=2)
    assert result.jobs == 6 and result.seconds > 0 and result.jobs_per_second > 0
    engine = make_engine(db_url)
    try:
        async with make_sessionmaker(engine)() as s:
            done = await s.scalar(
                select(func.count(Job.id)).where(
                    Job.status == JobStatus.SUCCEEDED, Job.progress_step == bench.PROGRESS_WRITES
                )
            )
            charges = await s.scalar(select(func.count(QuotaLedger.id)).where(QuotaLedger.kind == LedgerKind.CHARGE))
    finally:
        await engine.dispose()
    assert done == 6 and charges == 6


async def test_bench_worker_processes_complete_every_job(db_url: str, monkeypatch) -> None:
    """--processes: separate worker processes (spawned, so the bench must be importable by name) share the jobs."""
    import asyncio
    import importlib

    monkeypatch.syspath_prepend(str(BENCH.parents[1]))  # spawned children inherit sys.path
    bench = importlib.import_module("bench.store")
    result = await asyncio.to_thread(bench.run_processes, db_url, "test", 4, 2, 3)
    assert result.jobs == 4 and result.processes == 2 and result.seconds > 0 and result.cpu_seconds > 0
    engine = make_engine(db_url)
    try:
        async with make_sessionmaker(engine)() as s:
            rows = (
                await s.execute(
                    select(Job.worker_id, func.count(Job.id))
                    .where(Job.status == JobStatus.SUCCEEDED, Job.progress_step == 3)
                    .group_by(Job.worker_id)
                )
            ).all()
    finally:
        await engine.dispose()
    assert sorted(rows) == [("bench-10", 2), ("bench-11", 2)]


async def test_progress_write_commits_asynchronously_on_postgres_only(pg_url: str) -> None:
    """The PostgreSQL heartbeat transaction (and only it) skips the commit's WAL flush wait; the next
    transaction on the same connection is durable again, and the write itself is fenced as before."""
    from sqlalchemy import text

    from jobs.admission import enqueue_job
    from jobs.progress import report_progress
    from jobs.transitions import claim_next_job
    from tests.jobs.storehelpers import GENEROUS, IMAGE, new_job

    engine = make_engine(pg_url, pool_size=1, max_overflow=0)
    sessions = make_sessionmaker(engine)
    try:
        async with sessions() as s, s.begin():
            await enqueue_job(s, new_job(1), GENEROUS, image=IMAGE)
        async with sessions() as s, s.begin():
            job = await claim_next_job(s, "w", lease_seconds=60)
            assert job is not None
            assert (await s.execute(text("SHOW synchronous_commit"))).scalar() == "on"
        async with sessions() as s, s.begin():
            ack = await report_progress(
                s, job.id, job.attempt, worker_id="w", step=3, total=10, phase="denoising", lease_seconds=60
            )
            assert ack.ok and (await s.execute(text("SHOW synchronous_commit"))).scalar() == "off"
        async with sessions() as s, s.begin():  # same pooled connection: the setting was transaction-local
            assert (await s.execute(text("SHOW synchronous_commit"))).scalar() == "on"
            reported = await s.get(Job, job.id)
            assert reported is not None and reported.progress_step == 3
            stale = await report_progress(
                s, job.id, job.attempt - 1, worker_id="w", step=4, total=10, phase="denoising", lease_seconds=60
            )
            assert not stale.ok
    finally:
        await engine.dispose()


async def test_driver_floor_runs_the_same_job_shape(db_url: str) -> None:
    """--floor: the bare-driver run does every job's insert, claim, progress writes and finish, on both back
    ends, so the ceiling printed beside the store's rate is measured, not assumed."""
    bench = _load_bench()
    from bench import driver_floor

    await driver_floor.prepare(db_url)
    result = await bench.run(db_url, "test", jobs=5, workers=2, writes=4, floor=True)
    assert result.floor and result.jobs == 5 and result.jobs_per_second > 0
    assert await driver_floor.counts(db_url) == {("succeeded", 4): 5}


async def test_driver_floor_worker_processes(db_url: str, monkeypatch) -> None:
    import asyncio
    import importlib

    monkeypatch.syspath_prepend(str(BENCH.parents[1]))
    bench = importlib.import_module("bench.store")
    from bench import driver_floor

    await driver_floor.prepare(db_url)
    result = await asyncio.to_thread(bench.run_processes, db_url, "test", 4, 2, 3, True)
    assert result.floor and result.processes == 2 and result.jobs == 4
    assert await driver_floor.counts(db_url) == {("succeeded", 3): 4}


async def test_race_controls_run(pg_url: str) -> None:
    """bench/races.py's negative controls run (a few jobs and users, so no race is expected): they cannot rot."""
    from bench.races import (
        REQUEST_COST_S,
        REQUESTS_PER_USER,
        admission_without_account_lock,
        claims_without_skip_locked,
    )

    claims = await claims_without_skip_locked(pg_url, 12)
    assert claims.jobs == 12 and claims.claims >= 12
    admission = await admission_without_account_lock(pg_url, 2)
    assert admission.users == 2 and 0 < admission.worst_admitted_s <= REQUEST_COST_S * REQUESTS_PER_USER
