"""Cancel and SIGTERM against a real worker process (tiny model, slowed by the step-sleep test hook, real SQLite)."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from generator.supervisor import WorkerSupervisor
from generator.worker_child import GIVE_BACK_ALLOWANCE_S
from jobs.models import JobStatus, LedgerKind
from jobs.transitions import CancelOutcome, cancel_job
from tests.worker.workerharness import (
    STEPS,
    Db,
    WorkerPool,
    enqueue_jobs,
    files_in,
    make_input,
    pid_alive,
    wait_until,
    worker_env,
)

pytestmark = pytest.mark.slow

STEP_S = 0.4  # seconds per denoising step (test hook)
STARTUP_TIMEOUT_S = 60.0
LONG_JOB_STEPS = 40  # steps of the job a short stop grace must give back (>= 20 s of test-hook sleep alone)


async def test_cancel_stops_within_a_step_and_sigterm_gives_back_uncharged(
    sqlite_url: str, tmp_path: Path, worker_pool: WorkerPool
) -> None:
    cancelled, given_back = await enqueue_jobs(sqlite_url, 2, make_input(tmp_path / "inputs"))
    output_dir = tmp_path / "outputs"
    env = worker_env(
        sqlite_url,
        output_dir,
        WORKER_ID="stop-worker",
        I2V_PROGRESS_INTERVAL_S=0,
        I2V_FAULT_SLEEP_PER_STEP=STEP_S,
        I2V_GRACE_SECONDS=0.5,
    )
    proc = worker_pool.start(env, name="stop")
    db = Db(sqlite_url)
    try:
        # Cancel the first job mid-denoising.
        async def reached_step_3():
            job = await db.job(cancelled)
            return job.progress_step if job.status == JobStatus.RUNNING and job.progress_step >= 3 else 0

        step_at_cancel = await wait_until(reached_step_3, timeout=STARTUP_TIMEOUT_S, what="job 1 at step 3")
        requested_at = time.monotonic()
        assert await db.run(lambda s: cancel_job(s, cancelled)) == CancelOutcome.REQUESTED

        async def is_cancelled() -> bool:
            return (await db.job(cancelled)).status == JobStatus.CANCELLED

        await wait_until(is_cancelled, timeout=10, what="job 1 to end cancelled", interval=0.02)
        took = time.monotonic() - requested_at
        job = await db.job(cancelled)
        # it stopped at the step that was running when the cancel came, or the one after it at most
        assert step_at_cancel <= job.progress_step <= step_at_cancel + 1, (step_at_cancel, job.progress_step)
        assert took < 2 * STEP_S + 1.0, took
        assert job.phase == "cancelled" and job.output_path is None
        ledger = await db.ledger(cancelled)
        assert [kind for kind, _ in ledger] == [LedgerKind.RESERVE, LedgerKind.RELEASE, LedgerKind.CHARGE], ledger
        charged = ledger[-1][1]
        assert charged == job.gpu_seconds
        assert STEP_S * step_at_cancel <= charged < STEP_S * STEPS, charged  # the time used, not the whole job

        # The worker goes on with the second job; SIGTERM it mid-denoising with a 0.5 s grace period.
        async def second_running() -> bool:
            job = await db.job(given_back)
            return job.status == JobStatus.RUNNING and job.progress_step >= 2

        await wait_until(second_running, timeout=10, what="job 2 to be denoising")
        proc.signal(signal.SIGTERM)
        assert await proc.wait(timeout=10) == 0, proc.log()[-3000:]
        job = await db.job(given_back)
        # given back: the attempt stays counted (attempts only increase), the give-back is recorded apart
        assert (job.status, job.attempt, job.releases, job.worker_id) == (JobStatus.QUEUED, 1, 1, None), job
        assert [kind for kind, _ in await db.ledger(given_back)] == [LedgerKind.RESERVE]  # reserved, not charged
        assert await db.video(given_back) is None and files_in(output_dir) == []
        assert "given back to the queue uncharged" in proc.log()
        assert not pid_alive(proc.pid)
        worker = await db.worker("stop-worker")
        assert worker is not None and worker.state.value == "stopped"
    finally:
        await db.close()


async def test_sigterm_through_the_supervisor_cli_lets_a_job_finish(
    sqlite_url: str, tmp_path: Path, worker_pool: WorkerPool
) -> None:
    """``python -m generator.supervisor`` gets SIGTERM mid-job: it passes SIGTERM on, and the worker, with a 30 s
    grace period, finishes the job, claims nothing more and exits; then the supervisor exits 0."""
    step_s = 0.3
    first, second = await enqueue_jobs(sqlite_url, 2, make_input(tmp_path / "inputs"))
    output_dir = tmp_path / "outputs"
    # default progress interval (1 s) and a 30 s grace period
    env = worker_env(
        sqlite_url, output_dir, WORKER_ID="cli-worker", I2V_FAULT_SLEEP_PER_STEP=step_s, I2V_GRACE_SECONDS=30
    )
    env.pop("I2V_PROGRESS_INTERVAL_S", None)
    proc = worker_pool.start(env, "--stop-grace", "45", name="supervisor", module="generator.supervisor")
    db = Db(sqlite_url)
    try:

        async def running() -> bool:
            job = await db.job(first)
            return job.status == JobStatus.RUNNING and job.progress_step >= 2

        await wait_until(running, timeout=STARTUP_TIMEOUT_S, what="job 1 to be denoising")
        proc.signal(signal.SIGTERM)
        assert await proc.wait(timeout=30) == 0, proc.log()[-3000:]
        jobs = await db.jobs([first, second])
        done, untouched = jobs[first], jobs[second]
        assert done.status == JobStatus.SUCCEEDED and done.attempt == 1
        assert len(await db.video(first) or b"") == done.output_bytes and files_in(output_dir) == []
        assert untouched.status == JobStatus.QUEUED and untouched.attempt == 0  # no claim after SIGTERM
        assert not pid_alive(proc.pid)
        worker = await db.worker("cli-worker")
        assert worker is not None
        assert worker.state.value == "stopped" and not pid_alive(worker.pid) and worker.pid != proc.pid
        # progress writes were throttled to about one a second (plus the forced phase changes)
        writes = proc.progress(first)
        generation_s = STEPS * step_s
        assert 2 <= len(writes) <= generation_s / 1.0 + 4, writes
        assert writes[-1][2] == "encoding" and writes[-1][0] == STEPS
    finally:
        await db.close()


async def test_supervisor_stop_gives_a_long_job_back_before_its_grace_ends(sqlite_url: str, tmp_path: Path) -> None:
    """``WorkerSupervisor.stop(grace)`` shorter than the grace the child was started with (its stop_grace_s, 30 s):
    when ``grace`` ends the worker gets a second SIGTERM, gives the job back uncharged at its next step and exits 0
    within the give-back allowance, so nothing has to be killed. The job has 40 steps of at least 0.5 s, so it
    cannot finish within the 5 s grace on any machine."""
    (job_id,) = await enqueue_jobs(sqlite_url, 1, make_input(tmp_path / "inputs"), steps=LONG_JOB_STEPS)
    env = {
        key: value
        for key, value in worker_env(sqlite_url, tmp_path / "outputs").items()
        if key.startswith(("I2V_", "OMP_", "MKL_"))
    }
    env.pop("I2V_MODEL")
    env.update({"I2V_FAULT_SLEEP_PER_STEP": "0.5", "I2V_GRACE_SECONDS": "30"})
    supervisor = WorkerSupervisor(
        sqlite_url,
        "tiny",
        tmp_path / "outputs",
        worker_id="stopped-by-supervisor",
        extra_env=env,
        log_path=tmp_path / "worker.log",
        state_poll_interval_s=0.1,
    )
    db = Db(sqlite_url)
    try:
        await supervisor.start()

        async def denoising() -> bool:
            job = await db.job(job_id)
            return job.status == JobStatus.RUNNING and job.progress_step >= 2

        await wait_until(denoising, timeout=STARTUP_TIMEOUT_S, what="the job to be denoising")
        assert supervisor.state.phase == "busy" and supervisor.state.job_id == job_id, supervisor.state
        child = supervisor.state.pid
        assert child is not None  # busy: a worker process runs the job
        grace = 5.0
        started = time.monotonic()
        code = await supervisor.stop(grace)
        took = time.monotonic() - started
        assert code == 0, (tmp_path / "worker.log").read_text()[-3000:]
        assert grace <= took < grace + GIVE_BACK_ALLOWANCE_S, took  # after the second SIGTERM, before any SIGKILL
        job = await db.job(job_id)
        # given back uncharged: the attempt stays counted (attempts only increase), the give-back in releases
        assert (job.status, job.attempt, job.releases) == (JobStatus.QUEUED, 1, 1), job
        assert [kind for kind, _ in await db.ledger(job_id)] == [LedgerKind.RESERVE]
        assert not pid_alive(child)
        assert supervisor.state.phase == "stopped" and supervisor.state.pid is None
        log = (tmp_path / "worker.log").read_text()
        assert "second stop request" in log and "given back to the queue uncharged" in log
    finally:
        if supervisor.running:
            await supervisor.stop(0)
        await db.close()
