"""The supervisor keeps a real worker (tiny model, real SQLite file) serving through SIGKILLs, a CUDA error, a hung
GPU call and a frozen process.

One run (one database, one supervisor: the slow set-up, a fresh interpreter that imports torch and loads the model,
is paid once for every case), in order: SIGKILL while the model loads, SIGKILL while job A is denoising, SIGKILL
while job B is being encoded, then job C hits a simulated sticky CUDA error (the process exits non-zero by itself),
then job D's generation hangs (the worker's stall check ends the process), then job E's worker freezes (SIGSTOP:
no heartbeat, no progress) and the supervisor's heartbeat check kills it. After each death the supervisor gives the
dead worker's jobs back and starts a new worker. Every job must still succeed exactly once, be charged once, and
show the retry in its attempt count.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from generator.supervisor import WorkerSupervisor
from generator.video import probe_mp4
from generator.worker_settings import EXIT_CUDA_ERROR, EXIT_STALLED
from jobs.models import JobStatus, LedgerKind
from tests.worker.workerharness import (
    FAST_ENV,
    Db,
    enqueue_jobs,
    files_in,
    make_input,
    pid_alive,
    wait_until,
)

pytestmark = pytest.mark.slow

WORKER_ID = "supervised-worker"
SLEEP_PER_STEP_S = 0.15
SLEEP_ENCODE_S = 1.5
LEASE_S = 60  # long on purpose: recovery must come from the supervisor giving the leases back, not from expiry
PHASE_TIMEOUT_S = 60.0
STALL_S = 4  # the worker's stall limit in this test (seconds without a step)
HANG_TIMEOUT_S = 2.5  # the supervisor kills a child whose heartbeat (every 0.25 s, own thread) is older than this


async def test_supervisor_recovers_from_kills_cuda_error_hang_and_freeze(sqlite_url: str, tmp_path: Path) -> None:
    a, b, c, d, e = ids = await enqueue_jobs(sqlite_url, 5, make_input(tmp_path / "inputs"))
    output_dir = tmp_path / "outputs"
    env = dict(FAST_ENV)
    env.pop("I2V_MODEL")
    env.update(
        {
            "I2V_LEASE_SECONDS": str(LEASE_S),
            "I2V_PROGRESS_INTERVAL_S": "0",
            "I2V_FAULT_SLEEP_LOAD": "0.5",
            "I2V_FAULT_SLEEP_PER_STEP": str(SLEEP_PER_STEP_S),
            "I2V_FAULT_SLEEP_ENCODE": str(SLEEP_ENCODE_S),
            "I2V_FAULT_CUDA_AT_STEP": f"{c}:2",
            "I2V_FAULT_HANG_AT_STEP": f"{d}:2",
            "I2V_FAULT_FREEZE_AT_STEP": f"{e}:2",
            "I2V_STALL_SECONDS": str(STALL_S),
        }
    )
    supervisor = WorkerSupervisor(
        sqlite_url,
        "tiny",
        output_dir,
        worker_id=WORKER_ID,
        extra_env=env,
        log_path=tmp_path / "worker.log",
        backoff_initial_s=0.1,
        backoff_max_s=0.5,
        state_poll_interval_s=0.05,
        stop_grace_s=15,
        hang_timeout_s=HANG_TIMEOUT_S,
    )
    db = Db(sqlite_url)
    pids: list[int] = []
    try:
        await supervisor.start()

        async def phase_is(phase: str) -> bool:
            return supervisor.state.phase == phase and supervisor.state.pid is not None

        def worker_pid() -> int:
            pid = supervisor.state.pid
            assert pid is not None, supervisor.state  # each phase waited for has a worker process
            return pid

        async def job_matches(job_id: int, predicate) -> bool:
            return predicate(await db.job(job_id))

        # 1. SIGKILL while the model loads: nothing was claimed, so nothing changes in the queue.
        await wait_until(lambda: phase_is("loading"), timeout=PHASE_TIMEOUT_S, what="the first worker to load")
        pids.append(worker_pid())
        os.kill(pids[-1], signal.SIGKILL)
        jobs = await db.jobs(ids)
        assert all(job.status == JobStatus.QUEUED and job.attempt == 0 for job in jobs.values())

        # 2. SIGKILL mid-denoising of job A.
        await wait_until(
            lambda: job_matches(a, lambda j: j.status == JobStatus.RUNNING and j.progress_step >= 3),
            timeout=PHASE_TIMEOUT_S,
            what="job A to be denoising",
        )
        pids.append(worker_pid())
        assert pids[-1] != pids[0]
        os.kill(pids[-1], signal.SIGKILL)

        # 3. SIGKILL while job B is being encoded (job A runs again first and succeeds).
        await wait_until(
            lambda: job_matches(b, lambda j: j.status == JobStatus.RUNNING and j.phase == "encoding"),
            timeout=PHASE_TIMEOUT_S,
            what="job B to be encoding",
        )
        pids.append(worker_pid())
        os.kill(pids[-1], signal.SIGKILL)

        # 4. Job C's first attempt hits a sticky CUDA error: the worker exits non-zero on its own.
        await wait_until(
            lambda: job_matches(c, lambda j: j.status == JobStatus.SUCCEEDED),
            timeout=PHASE_TIMEOUT_S * 2,
            what="job C to succeed after the CUDA error",
        )
        assert supervisor.state.restarts == 4, supervisor.state
        assert supervisor.state.last_exit_code == EXIT_CUDA_ERROR, supervisor.state  # the latest death: C's crash

        # 5. Job D's generation hangs at step 2: after STALL_S without a step the worker exits by itself.
        await wait_until(
            lambda: job_matches(d, lambda j: j.status == JobStatus.SUCCEEDED),
            timeout=PHASE_TIMEOUT_S * 2,
            what="job D to succeed after the hang",
        )
        assert supervisor.state.restarts == 5, supervisor.state
        assert supervisor.state.last_exit_code == EXIT_STALLED, supervisor.state
        assert supervisor.state.phase in ("idle", "busy"), supervisor.state

        # 6. Job E's worker freezes at step 2 (SIGSTOP): the heartbeat check kills it, a new worker redoes E.
        async def frozen() -> bool:
            job = await db.job(e)
            return (
                job.status == JobStatus.RUNNING
                and supervisor.state.pid is not None
                and Path(f"/proc/{supervisor.state.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "T"
            )

        await wait_until(frozen, timeout=PHASE_TIMEOUT_S, what="the worker to freeze mid-job")
        pids.append(worker_pid())
        await wait_until(
            lambda: job_matches(e, lambda j: j.status == JobStatus.SUCCEEDED),
            timeout=PHASE_TIMEOUT_S,
            what="job E to succeed in a new worker",
        )
        assert not pid_alive(pids[-1])
        assert supervisor.state.restarts == 6 and supervisor.state.last_exit_code == -signal.SIGKILL, supervisor.state
    finally:
        stop_code = await supervisor.stop(15)
        await db.close()

    log = (tmp_path / "worker.log").read_text()
    assert "sticky CUDA error" in log and "simulated by I2V_FAULT_CUDA_AT_STEP" in log
    assert f"made no progress for {STALL_S:.0f} s" in log
    assert stop_code == 0, log[-3000:]
    assert supervisor.state.phase == "stopped" and supervisor.state.pid is None
    assert not any(pid_alive(pid) for pid in pids)

    db = Db(sqlite_url)
    try:
        jobs = await db.jobs(ids)
        worker = await db.worker(WORKER_ID)
        ledgers = {job_id: await db.ledger(job_id) for job_id in ids}
        videos = {job_id: await db.video_file(job_id, tmp_path / "probe") for job_id in ids}
    finally:
        await db.close()
    assert files_in(output_dir) == []
    for job_id, job in jobs.items():
        assert job.status == JobStatus.SUCCEEDED, (job_id, job.status, job.error, job.error_detail)
        assert job.attempt == 2, (job_id, job.attempt)  # killed (A, B), crashed (C), hung (D), frozen (E), then done
        assert probe_mp4(videos[job_id]).frames == 8
        kinds = [kind for kind, _ in ledgers[job_id]]
        assert kinds == [LedgerKind.RESERVE, LedgerKind.RELEASE, LedgerKind.CHARGE], (job_id, ledgers[job_id])
        charge = ledgers[job_id][-1][1]
        assert charge == job.gpu_seconds  # the successful attempt's own time, charged once
    assert worker is not None and worker.restarts == 6 and worker.state.value == "stopped"
