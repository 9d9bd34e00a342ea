"""WORKER=external on PostgreSQL: the bot starts no worker; a separately started ``python -m generator.worker``
on the same database makes the video, and the bot delivers it exactly once."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import pytest

from jobs.models import JobStatus
from tests.bot.harness import (
    REPO_ROOT,
    SMALL,
    TOKEN,
    BotProcess,
    followup_text,
    job_id_from,
    png_bytes,
    result_posts,
    wait_result,
)
from tests.fakediscord.server import FakeDiscord

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.timeout(180)]


async def test_external_worker_on_postgresql(pg_url: str, tmp_path: Path) -> None:
    fake = FakeDiscord(bot_token=TOKEN)
    await fake.start()
    bot = BotProcess(fake, tmp_path / "bot", db_url=pg_url, extra_env={"WORKER": "external"})
    worker: asyncio.subprocess.Process | None = None
    try:
        await bot.start()
        member = fake.add_member(fake.guild.id, "external")
        attachment = fake.add_attachment(png_bytes(seed=5), "in.png")
        interaction = await fake.inject_slash(
            "animate", {"image": attachment, "prompt": "smoke rises", **SMALL}, member=member)
        job_id = job_id_from(await followup_text(fake, interaction))
        await asyncio.sleep(1.5)
        assert (await bot.job(job_id)).status == JobStatus.QUEUED  # nobody to claim it: no embedded worker
        assert await bot.worker_pids() == []

        env = {**bot.env(), "WORKER_ID": "external-test-worker"}
        log = open(tmp_path / "worker.log", "ab")  # noqa: SIM115 - handed to the child
        worker = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "generator.worker", env=env, cwd=str(REPO_ROOT), stdout=log, stderr=log,
            stdin=asyncio.subprocess.DEVNULL)
        log.close()
        await wait_result(fake, job_id)
        job = await bot.wait_job(job_id, lambda j: j.delivered_at is not None, timeout=20)
        assert job.status == JobStatus.SUCCEEDED and job.worker_id == "external-test-worker"
        await asyncio.sleep(1.0)
        assert len(result_posts(fake, job_id)) == 1
    finally:
        if worker is not None and worker.returncode is None:
            worker.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(worker.wait(), 30)
            except asyncio.TimeoutError:
                os.kill(worker.pid, signal.SIGKILL)
                await worker.wait()
        await bot.stop()
        await fake.stop()
