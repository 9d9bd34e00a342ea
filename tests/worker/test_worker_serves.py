"""One real worker process on the tiny model drains a real SQLite queue of 14 jobs (shared by the tests here).

Jobs 1-10 are plain; job 11 runs out of GPU memory once at step 3 (simulated by the test hook), so the worker must
retry it in low-memory mode; job 12 runs out of memory twice, so it must fail with the seed's advice and be
refunded; job 13's stored input is not an image, so it must fail with a clear message; job 14 must then succeed in
the same process. While the worker runs, the test polls each job's progress.
"""

from __future__ import annotations

import asyncio
import hashlib
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from generator.video import probe_mp4
from jobs.models import JobStatus, LedgerKind, WorkerState
from tests.worker.workerharness import (
    FPS,
    FRAMES,
    INPUT_SIZE_PX,
    STEPS,
    Db,
    WorkerPool,
    WorkerProc,
    enqueue_jobs,
    files_in,
    make_input,
    worker_env,
)

pytestmark = pytest.mark.slow

OOM_STEP = 3
SLEEP_PER_STEP_S = 0.05  # added to each step, so that every step's progress write lands before the next step
POLL_INTERVAL_S = 0.02  # the test's progress poller
WORKER_ID = "served-worker"


@dataclass
class Served:
    """What the shared run left behind."""

    url: str
    output_dir: Path
    ids: list[int]
    proc: WorkerProc
    exit_code: int
    observed: dict[int, list[int]] = field(default_factory=dict)  # progress_step values seen by the poller, per job

    @property
    def plain(self) -> list[int]:
        return self.ids[:10]

    @property
    def oom_once(self) -> int:
        return self.ids[10]

    @property
    def oom_twice(self) -> int:
        return self.ids[11]

    @property
    def bad_input(self) -> int:
        return self.ids[12]

    @property
    def after_oom(self) -> int:
        return self.ids[13]


async def _serve(url: str, root: Path, pool: WorkerPool) -> Served:
    ids = await enqueue_jobs(url, 12, make_input(root / "inputs"))
    not_an_image = root / "inputs" / "not_an_image.png"
    not_an_image.write_bytes(b"this is not a PNG file at all" * 10)
    ids += await enqueue_jobs(url, 1, (not_an_image, hashlib.sha256(not_an_image.read_bytes()).hexdigest()))
    ids += await enqueue_jobs(url, 1, make_input(root / "inputs"))
    output_dir = root / "outputs"
    env = worker_env(
        url,
        output_dir,
        WORKER_ID=WORKER_ID,
        I2V_PROGRESS_INTERVAL_S=0,
        I2V_FAULT_SLEEP_PER_STEP=SLEEP_PER_STEP_S,
        I2V_FAULT_OOM_AT_STEP=OOM_STEP,
        I2V_FAULT_OOM_TIMES=f"{ids[10]}:1,{ids[11]}:2",
    )
    proc = pool.start(env, "--drain", name="served")
    db = Db(url)
    observed: dict[int, list[int]] = {job_id: [] for job_id in ids}
    try:
        while proc.popen.poll() is None:
            for job_id, job in (await db.jobs(ids)).items():
                if job.status == JobStatus.RUNNING and job.attempt >= 1 and job.progress_step > 0:
                    seen = observed[job_id]
                    if not seen or seen[-1] != job.progress_step:
                        seen.append(job.progress_step)
            await asyncio.sleep(POLL_INTERVAL_S)
    finally:
        await db.close()
    code = await proc.wait()
    return Served(url, output_dir, ids, proc, code, observed)


@pytest.fixture(scope="module")
def served(_sqlite_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Served:
    root = tmp_path_factory.mktemp("served")
    shutil.copyfile(_sqlite_template, root / "i2v.sqlite3")
    pool = WorkerPool(root / "logs")
    try:
        return asyncio.run(_serve(f"sqlite+aiosqlite:///{root / 'i2v.sqlite3'}", root, pool))
    finally:
        assert not pool.cleanup(), "the worker was still running after draining the queue"


async def _jobs(served: Served, ids: list[int]) -> dict:
    db = Db(served.url)
    try:
        return {job_id: (job, await db.ledger(job_id)) for job_id, job in (await db.jobs(ids)).items()}
    finally:
        await db.close()


async def _stored(served: Served, job_id: int) -> bytes | None:
    db = Db(served.url)
    try:
        return await db.video(job_id)
    finally:
        await db.close()


async def _stored_file(served: Served, job_id: int) -> Path:
    db = Db(served.url)
    try:
        return await db.video_file(job_id, served.output_dir.parent / "probe")
    finally:
        await db.close()


def test_worker_drains_and_exits_zero(served: Served) -> None:
    assert served.exit_code == 0, served.proc.log()[-3000:]
    assert "queue drained; exiting" in served.proc.log()


async def test_plain_jobs_succeed_once_with_decodable_mp4s(served: Served) -> None:
    jobs = await _jobs(served, served.plain + [served.after_oom])
    width, height = INPUT_SIZE_PX
    for job_id, (job, ledger) in jobs.items():
        assert job.status == JobStatus.SUCCEEDED, (job_id, job.status, job.error, job.error_detail)
        assert job.attempt == 1 and job.worker_id == WORKER_ID and job.phase == "done"
        video = await _stored_file(served, job_id)
        info = probe_mp4(video)
        assert (info.frames, info.fps, info.width, info.height) == (FRAMES, FPS, width, height), info
        assert info.codec == "h264" and info.pix_fmt == "yuv420p"
        assert job.output_bytes == video.stat().st_size and job.output_path is None
        assert job.gpu_seconds > SLEEP_PER_STEP_S * STEPS  # measured around the generation, slow steps included
        charges = [amount for kind, amount in ledger if kind == LedgerKind.CHARGE]
        assert charges == [pytest.approx(job.gpu_seconds)], ledger
        assert [kind for kind, _ in ledger] == [LedgerKind.RESERVE, LedgerKind.RELEASE, LedgerKind.CHARGE]
        # the tiny image classifier ran on the input and on the video, its time kept apart from generation
        assert (job.input_verdict, job.output_verdict) == ("safe", "safe") and job.safety_seconds > 0
    assert files_in(served.output_dir) == []  # no scratch file left behind


def test_progress_written_for_every_step_1_to_n(served: Served) -> None:
    for job_id in served.plain + [served.after_oom]:
        writes = served.proc.progress(job_id, attempt=1)
        steps = [step for step, total, phase in writes if step > 0 and phase in ("denoising", "decoding")]
        assert steps == list(range(1, STEPS + 1)), (job_id, writes)
        assert all(total == STEPS for _, total, _ in writes)
        phases = [phase for _, _, phase in writes]
        assert phases[0] == "preparing" and phases[-1] == "encoding", phases


def test_progress_seen_in_the_database_climbs_to_n(served: Served) -> None:
    for job_id in served.plain:
        seen = served.observed[job_id]
        assert seen, f"the poller never saw job {job_id} running"
        assert seen == sorted(seen) and len(set(seen)) == len(seen), (job_id, seen)
        assert seen[-1] == STEPS, (job_id, seen)
        # >= 0.05 s steps polled every 0.02 s: nearly every step is seen in the database, not only the last
        assert len(seen) >= STEPS // 2, (job_id, seen)


async def test_out_of_memory_once_is_retried_in_low_memory_mode(served: Served) -> None:
    ((job, ledger),) = (await _jobs(served, [served.oom_once])).values()
    assert job.status == JobStatus.SUCCEEDED and job.attempt == 1
    assert "retried once in low-memory mode" in job.error_detail, job.error_detail
    assert f"step {OOM_STEP}/{STEPS}" in job.error_detail
    info = probe_mp4(await _stored_file(served, job.id))
    assert (info.frames, info.fps) == (FRAMES, FPS)
    steps = [step for step, _, phase in served.proc.progress(job.id) if step > 0 and phase in ("denoising", "decoding")]
    assert steps == list(range(1, OOM_STEP + 1)) + list(range(1, STEPS + 1)), steps
    assert [kind for kind, _ in ledger][-1] == LedgerKind.CHARGE


async def test_out_of_memory_twice_fails_with_advice_and_refund(served: Served) -> None:
    ((job, ledger),) = (await _jobs(served, [served.oom_twice])).values()
    assert job.status == JobStatus.FAILED and job.attempt == 1
    message = job.error.lower()
    assert "memory" in message and "resolution" in message and "frames" in message, job.error
    assert "low-memory" in job.error_detail and "OutOfMemory" in job.error_detail, job.error_detail
    assert [kind for kind, _ in ledger] == [LedgerKind.RESERVE, LedgerKind.REFUND], ledger
    assert await _stored(served, job.id) is None


async def test_unreadable_input_fails_that_job_with_a_clear_message(served: Served) -> None:
    ((job, ledger),) = (await _jobs(served, [served.bad_input])).values()
    assert job.status == JobStatus.FAILED and job.attempt == 1
    assert job.error.startswith("The image could not be used: "), job.error
    assert "ImageError" in job.error_detail, job.error_detail
    assert [kind for kind, _ in ledger] == [LedgerKind.RESERVE, LedgerKind.REFUND], ledger


async def test_worker_kept_serving_after_out_of_memory(served: Served) -> None:
    jobs = await _jobs(served, served.ids)
    after, _ = jobs[served.after_oom]
    assert after.status == JobStatus.SUCCEEDED and after.worker_id == WORKER_ID
    assert after.started_at > jobs[served.oom_twice][0].finished_at
    assert after.started_at > jobs[served.bad_input][0].finished_at
    # one process served everything: a single pid in the log, and the registry counts 14 jobs, no restart
    pids = {
        line.split("worker[", 1)[1].split("]", 1)[0] for line in served.proc.log().splitlines() if "worker[" in line
    }
    assert pids == {str(served.proc.pid)}
    db = Db(served.url)
    try:
        row = await db.worker(WORKER_ID)
    finally:
        await db.close()
    assert row is not None and row.pid == served.proc.pid
    assert row.jobs_done == 14 and row.restarts == 0 and row.state == WorkerState.STOPPED
