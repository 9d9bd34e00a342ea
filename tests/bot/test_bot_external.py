"""WORKER=external: the bot starts no worker; workers started on their own, each in its own working directory with
its own DATA_DIR and OUTPUT_DIR (no folder shared with the bot or with each other, as on separate machines), make
the videos through the job store alone, and the bot delivers each exactly once. A worker SIGKILLed mid-job is
noticed by its missing heartbeats and its job runs again on a live worker within seconds."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from jobs.models import Job, JobStatus, WorkerState
from tests.bot.harness import (
    SMALL,
    TOKEN,
    BotProcess,
    followup_text,
    job_id_from,
    png_bytes,
    result_posts,
    start_worker_process,
    stop_process,
    wait_result,
)
from tests.fakediscord.server import FakeDiscord

pytestmark = [pytest.mark.slow, pytest.mark.timeout(420)]

REQUESTS = 6
SETTLE_S = 1.5  # extra time after the deliveries in which a duplicate would have shown up
RUNNING_AGAIN_WITHIN_S = 20.0  # the target for a SIGKILLed worker's job, from the kill
WORKER_ENV = {
    "I2V_FAULT_SLEEP_PER_STEP": "0.3",  # jobs long enough to be killed mid-way
    "I2V_LEASE_SECONDS": "90",  # the default lease: the heartbeat, not the lease, brings the job back
    "I2V_HEARTBEAT_INTERVAL_S": "2",
    "WORKER_DEAD_AFTER": "15",
}


async def _animate(fake: FakeDiscord, name: str, seed: int) -> int:
    member = fake.add_member(fake.guild.id, name)
    attachment = fake.add_attachment(png_bytes(seed=seed), f"{name}.png")
    interaction = await fake.inject_slash(
        "animate", {"image": attachment, "prompt": "waves roll in", **SMALL}, member=member
    )
    return job_id_from(await followup_text(fake, interaction))


async def _ready(bot: BotProcess, names: set[str], timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        rows = {w.id: w for w in await bot.workers()}
        if all(name in rows and rows[name].state in (WorkerState.IDLE, WorkerState.BUSY) for name in names):
            return
        assert time.monotonic() < deadline, f"workers {names} never became ready: {rows}"
        await asyncio.sleep(0.2)


async def _delivered_once(fake: FakeDiscord, bot: BotProcess, job_ids: list[int]) -> list[Job]:
    for job_id in job_ids:
        await wait_result(fake, job_id, timeout=180)
    jobs = [await bot.wait_job(job_id, lambda j: j.delivered_at is not None, timeout=30) for job_id in job_ids]
    await asyncio.sleep(SETTLE_S)
    for job in jobs:
        posts = result_posts(fake, job.id)
        assert len(posts) == 1 and len(posts[0].files) == 1, [p.describe() for p in posts]
        assert job.status == JobStatus.SUCCEEDED and posts[0].files[0].size == job.output_bytes
    return jobs


async def _kill_mid_job_and_time(
    bot: BotProcess, fake: FakeDiscord, victims: dict[str, asyncio.subprocess.Process], name: str, seed: int
) -> tuple[Job, float]:
    """Submit a job, SIGKILL the worker running it at step 2, and time how long until it runs again."""
    job_id = await _animate(fake, name, seed)
    job = await bot.wait_job(job_id, lambda j: j.status == JobStatus.RUNNING and j.progress_step >= 2, timeout=120)
    killed_worker = job.worker_id
    assert killed_worker in victims, job
    victims[killed_worker].kill()
    killed_at = time.monotonic()
    await victims[killed_worker].wait()
    again = await bot.wait_job(job_id, lambda j: j.status == JobStatus.RUNNING and j.attempt == 2, timeout=60)
    took = time.monotonic() - killed_at
    print(
        f"\nSIGKILL of worker {killed_worker} mid-job -> job {job_id} running again on {again.worker_id} "
        f"after {took:.1f} s"
    )
    assert again.worker_id != killed_worker
    return job, took


def _no_files(root: Path) -> list[Path]:
    return sorted(p for p in (root / "outputs").rglob("*") if p.is_file()) + sorted(
        p for p in (root / "data").rglob("*") if p.is_file()
    )


@pytest.mark.postgres
async def test_two_workers_in_their_own_directories_on_postgresql(pg_url: str, tmp_path: Path) -> None:
    fake = FakeDiscord(bot_token=TOKEN)
    await fake.start()
    bot = BotProcess(
        fake,
        tmp_path / "bot",
        db_url=pg_url,
        cwd=tmp_path / "bot",
        extra_env={"WORKER": "external", "QUOTA_MAX_PENDING": "10"},
    )
    workers: dict[str, asyncio.subprocess.Process] = {}
    roots = {name: tmp_path / name for name in ("worker-a", "worker-b")}
    try:
        (tmp_path / "bot").mkdir()
        await bot.start()
        assert await bot.worker_pids() == []
        for name, root in roots.items():
            workers[name] = await start_worker_process(bot, root, name, **WORKER_ENV)
        await _ready(bot, set(roots))
        ids = [await _animate(fake, f"user-{i}", seed=i) for i in range(REQUESTS)]
        jobs = await _delivered_once(fake, bot, ids)
        assert {job.worker_id for job in jobs} <= set(roots)

        job, took = await _kill_mid_job_and_time(bot, fake, workers, "kill-user", seed=40)
        (done,) = await _delivered_once(fake, bot, [job.id])
        assert "worker stopped heartbeating" in (done.error_detail or ""), done.error_detail
        assert took < RUNNING_AGAIN_WITHIN_S, took
        for root in roots.values():  # the workers kept nothing: every byte went through the database
            assert _no_files(root) == [], root
        copies = sorted((tmp_path / "bot" / "outputs").glob("video_*.mp4"))
        assert len(copies) == REQUESTS + 1  # the bot's disk copies, one per delivered video
    finally:
        for proc in workers.values():
            await stop_process(proc)
        await bot.stop()
        await fake.stop()


async def test_one_worker_in_another_directory_on_sqlite(tmp_path: Path) -> None:
    fake = FakeDiscord(bot_token=TOKEN)
    await fake.start()
    bot = BotProcess(fake, tmp_path / "bot", cwd=tmp_path / "bot", extra_env={"WORKER": "external"})
    workers: dict[str, asyncio.subprocess.Process] = {}
    try:
        (tmp_path / "bot").mkdir()
        await bot.start()
        workers["first"] = await start_worker_process(bot, tmp_path / "first", "first", **WORKER_ENV)
        await _ready(bot, {"first"})
        ids = [await _animate(fake, f"user-{i}", seed=i) for i in range(3)]
        await _delivered_once(fake, bot, ids)
        # a second worker on this machine, in its own directory; the first is then killed mid-job
        workers["second"] = await start_worker_process(bot, tmp_path / "second", "second", **WORKER_ENV)
        await _ready(bot, {"second"})
        job_id = await _animate(fake, "kill-user", seed=41)
        job = await bot.wait_job(job_id, lambda j: j.status == JobStatus.RUNNING and j.progress_step >= 2, timeout=120)
        victim = job.worker_id  # whichever of the two took it
        assert victim in workers, job
        workers[victim].kill()
        killed_at = time.monotonic()
        again = await bot.wait_job(job_id, lambda j: j.status == JobStatus.RUNNING and j.attempt == 2, timeout=60)
        took = time.monotonic() - killed_at
        print(f"\nSQLite: SIGKILL of worker {victim} -> job {job_id} running again after {took:.1f} s")
        assert again.worker_id != victim and took < RUNNING_AGAIN_WITHIN_S
        await _delivered_once(fake, bot, [job_id])
        for name in ("first", "second"):
            assert _no_files(tmp_path / name) == []
    finally:
        for proc in workers.values():
            await stop_process(proc)
        await bot.stop()
        await fake.stop()
