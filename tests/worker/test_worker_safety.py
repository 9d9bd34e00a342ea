"""The image safety check in a real worker process on the tiny model: an input the classifier calls unsafe fails
before generation with nothing charged; with SAFETY_MODEL=none no check runs (the hooks that would flag both the
input and the output change nothing)."""

from __future__ import annotations

from pathlib import Path

import pytest

from jobs.models import Job, JobStatus, LedgerKind
from tests.worker.workerharness import Db, WorkerPool, enqueue_jobs, make_input, worker_env

pytestmark = pytest.mark.slow


async def _drain(pool: WorkerPool, url: str, tmp_path: Path, **env: str) -> tuple[Job, list[tuple[LedgerKind, float]]]:
    (job_id,) = await enqueue_jobs(url, 1, make_input(tmp_path / "inputs"))
    proc = pool.start(worker_env(url, tmp_path / "outputs", **env), "--drain", name="safety")
    assert await proc.wait() == 0, proc.log()[-3000:]
    db = Db(url)
    try:
        return await db.job(job_id), await db.ledger(job_id)
    finally:
        await db.close()


async def test_an_unsafe_input_is_refused_before_generation_and_not_charged(
    sqlite_url: str, tmp_path: Path, worker_pool: WorkerPool
) -> None:
    job, ledger = await _drain(worker_pool, sqlite_url, tmp_path, I2V_FAULT_UNSAFE_INPUT="1")
    assert job.status == JobStatus.FAILED and "safety check flagged this picture" in (job.error or ""), job.error
    assert (job.input_verdict, job.output_verdict) == ("unsafe", None)
    assert not job.gpu_seconds and (job.safety_seconds or 0) > 0
    assert [kind for kind, _ in ledger] == [LedgerKind.RESERVE, LedgerKind.REFUND], ledger
    assert job.progress_step == 0  # no denoising step ran


async def test_safety_model_none_runs_no_check(sqlite_url: str, tmp_path: Path, worker_pool: WorkerPool) -> None:
    job, _ = await _drain(
        worker_pool, sqlite_url, tmp_path, SAFETY_MODEL="none", I2V_FAULT_UNSAFE_INPUT="1", I2V_FAULT_UNSAFE_OUTPUT="1"
    )
    assert job.status == JobStatus.SUCCEEDED, job.error
    assert (job.input_verdict, job.output_verdict, job.safety_seconds) == (None, None, None)
