"""Two real worker processes on one database (a SQLite file, then PostgreSQL): 20 jobs, each done exactly once."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from jobs.models import JobStatus, LedgerKind, WorkerState
from tests.worker.workerharness import Db, WorkerPool, enqueue_jobs, files_in, make_input, wait_until, worker_env

pytestmark = pytest.mark.slow

JOBS = 20
STARTUP_TIMEOUT_S = 90.0
RUN_TIMEOUT_S = 120.0


async def test_two_workers_do_each_job_exactly_once(db_url: str, tmp_path: Path, worker_pool: WorkerPool) -> None:
    output_dir = tmp_path / "outputs"
    names = ("worker-a", "worker-b")
    procs = [worker_pool.start(worker_env(db_url, output_dir, WORKER_ID=name), name=name) for name in names]
    db = Db(db_url)
    try:

        async def both_idle() -> bool:
            rows = [await db.worker(name) for name in names]
            return all(row is not None and row.state == WorkerState.IDLE for row in rows)

        # enqueue only once both have loaded the model, so both really compete for the same jobs
        await wait_until(both_idle, timeout=STARTUP_TIMEOUT_S, what="both workers to be idle", interval=0.2)
        ids = await enqueue_jobs(db_url, JOBS, make_input(tmp_path / "inputs"))

        async def all_done() -> bool:
            return all(job.status == JobStatus.SUCCEEDED for job in (await db.jobs(ids)).values())

        await wait_until(all_done, timeout=RUN_TIMEOUT_S, what=f"all {JOBS} jobs to succeed", interval=0.2)
        for proc in procs:
            proc.signal(signal.SIGTERM)
        for proc in procs:
            assert await proc.wait(timeout=30) == 0, proc.log()[-3000:]

        jobs = await db.jobs(ids)
        by_worker = {name: 0 for name in names}
        for job_id, job in jobs.items():
            assert job.status == JobStatus.SUCCEEDED and job.attempt == 1, (job_id, job.status, job.attempt)
            assert job.worker_id is not None, job_id  # a succeeded job names the worker that ran it
            by_worker[job.worker_id] += 1
            assert job.output_bytes and len(await db.video(job_id) or b"") == job.output_bytes
            kinds = [kind for kind, _ in await db.ledger(job_id)]
            assert kinds == [LedgerKind.RESERVE, LedgerKind.RELEASE, LedgerKind.CHARGE], (job_id, kinds)
        assert sum(by_worker.values()) == JOBS and all(by_worker.values()), by_worker
        # each worker's log shows exactly the jobs it finished, and no job was finished by both
        finished = [
            {int(line.split("job ", 1)[1].split(" ", 1)[0]) for line in proc.log().splitlines() if " done: " in line}
            for proc in procs
        ]
        assert not finished[0] & finished[1] and finished[0] | finished[1] == set(ids), finished
        jobs_done = 0
        for name in names:
            row = await db.worker(name)
            assert row is not None, name
            jobs_done += row.jobs_done
        assert jobs_done == JOBS
        assert files_in(output_dir) == []  # the workers keep nothing on disk
    finally:
        await db.close()
