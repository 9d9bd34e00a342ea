"""Every model through the fake Discord: the real ``python -m bot`` on the tiny models, its embedded worker free to
load each (one at a time, switching as the queue asks): ``/animate`` with each model delivers its video once, and
the result names the model."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from generator.video import probe_mp4
from jobs.models import JobStatus
from tests.bot.harness import (
    TOKEN,
    BotProcess,
    followup_text,
    job_id_from,
    png_bytes,
    result_posts,
    running_bot,
    wait_result,
)
from tests.fakediscord.server import FakeDiscord

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.slow, pytest.mark.timeout(400)]

# the cheapest request each model takes, and what its result says
REQUESTS = {
    "i2vgenxl": ({"resolution": "256p", "frames": 8, "steps": 10}, "I2VGen-XL · preset custom · 256p (320×256)", 8),
    "wan22-5b": ({"resolution": "480p", "frames": 9, "steps": 10}, "Wan 2.2 (5B) · preset custom · 480p (608×480)", 9),
    "ltxv": ({"resolution": "512p", "frames": 9, "steps": 4}, "LTX-Video (fast) · preset custom · 512p (640×512)", 9),
}


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def world(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[tuple[FakeDiscord, BotProcess]]:
    fake = FakeDiscord(bot_token=TOKEN)
    await fake.start()
    bot = BotProcess(fake, tmp_path_factory.mktemp("bot"))
    async with running_bot(fake, bot):
        yield fake, bot


async def test_each_model_delivers_once_and_is_named(world: tuple[FakeDiscord, BotProcess]) -> None:
    fake, bot = world
    jobs = {}
    for model, (options, _, _) in REQUESTS.items():
        member = fake.add_member(fake.guild.id, f"user-{model}")
        attachment = fake.add_attachment(png_bytes(), "pic.png")
        interaction = await fake.inject_slash(
            "animate",
            {"image": attachment, "prompt": "the sea moves", "model": model, "fps": 24, **options},
            member=member,
        )
        text = await followup_text(fake, interaction)
        assert "Queued as job #" in text and "No worker can run" not in text, text
        jobs[model] = job_id_from(text)
    for model, job_id in jobs.items():
        _, named, frames = REQUESTS[model]
        result = await wait_result(fake, job_id, timeout=300)
        assert named in result.json["content"], result.json["content"]
        (upload,) = result.files
        path = bot.root / f"{model}.mp4"
        path.write_bytes(upload.data)
        assert probe_mp4(path).frames == frames
        job = await bot.wait_job(job_id, lambda j: j.delivered_at is not None, timeout=10)
        assert job.status == JobStatus.SUCCEEDED and job.model == model
    await asyncio.sleep(1.0)
    assert all(len(result_posts(fake, job_id)) == 1 for job_id in jobs.values())  # each delivered once
    (worker,) = await bot.workers()
    assert worker.switches >= 2 and worker.loadable_models == ["i2vgenxl", "wan22-5b", "ltxv"]
