"""The image safety check's other two cases end to end (the real bot and worker against the fake Discord): an
input image the tiny classifier calls unsafe (``I2V_FAULT_UNSAFE_INPUT=1``) is refused before generation with no
GPU time charged, the requester told privately and the channel told no reason; with ``SAFETY_MODEL=none`` no check
runs at all (the hooks that would flag the input and the video change nothing).

Each test starts its own bot (the fault hooks are process settings), one after the other.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import pytest
import pytest_asyncio
from sqlalchemy import select

from jobs.models import JobStatus, LedgerKind, QuotaLedger
from tests.bot.harness import (
    SMALL,
    TOKEN,
    BotProcess,
    followup_text,
    job_id_from,
    png_bytes,
    running_bot,
    wait_result,
)
from tests.fakediscord import payloads
from tests.fakediscord.server import FakeDiscord
from tests.fakediscord.state import FakeInteraction

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.slow, pytest.mark.timeout(300)]


@pytest_asyncio.fixture(loop_scope="module")
async def make_world(tmp_path: Path) -> AsyncIterator[Callable[..., Awaitable[tuple[FakeDiscord, BotProcess]]]]:
    """Start a fake and a bot with the given environment; both stop when the test ends."""
    started: list[tuple[FakeDiscord, BotProcess, AbstractAsyncContextManager[BotProcess]]] = []

    async def start(**env: str) -> tuple[FakeDiscord, BotProcess]:
        fake = FakeDiscord(bot_token=TOKEN)
        await fake.start()
        bot = BotProcess(fake, tmp_path / "bot", extra_env=env)
        context = running_bot(fake, bot)
        await context.__aenter__()
        started.append((fake, bot, context))
        return fake, bot

    yield start
    for _, _, context in started:
        await context.__aexit__(None, None, None)


async def animate(fake: FakeDiscord) -> tuple[FakeInteraction, int]:
    attachment = fake.add_attachment(png_bytes(seed=3), "pic.png")
    interaction = await fake.inject_slash(
        "animate", {"image": attachment, "prompt": "a flower opens", **SMALL}, member=fake.member
    )
    text = await followup_text(fake, interaction)
    assert "Queued as job #" in text, text
    return interaction, job_id_from(text)


async def test_unsafe_input_is_refused_uncharged_and_the_user_told_privately(make_world) -> None:
    fake, bot = await make_world(I2V_FAULT_UNSAFE_INPUT="1")
    interaction, job_id = await animate(fake)
    notice = await wait_result(fake, job_id)
    assert not notice.files and "was not made" in notice.json["content"]
    assert "flagged" not in notice.json["content"]  # no reason in the channel
    path = f"/webhooks/{fake.application_id}/{interaction.token}"
    told = await fake.wait_for(
        lambda r: (
            r.method == "POST" and r.path.rstrip("/") == path and "refused" in ((r.json or {}).get("content") or "")
        ),
        timeout=30,
    )
    assert int(told.json["flags"]) & payloads.MESSAGE_FLAG_EPHEMERAL
    assert "safety check flagged this picture" in told.json["content"]
    job = await bot.wait_job(job_id, lambda j: j.delivered_at is not None)
    assert job.status == JobStatus.FAILED and (job.input_verdict, job.output_verdict) == ("unsafe", None)
    assert not job.gpu_seconds and job.progress_step == 0
    ledger = await bot.select_all(select(QuotaLedger.kind).where(QuotaLedger.job_id == job_id).order_by(QuotaLedger.id))
    assert ledger == [LedgerKind.RESERVE, LedgerKind.REFUND]
    # nothing in the channel gives the reason: the status message (posted, edited, then replaced) and the notice
    public = [
        r
        for r in fake.requests
        if r.path.startswith(f"/channels/{fake.channel_id}/messages")
        and f"#{job_id}" in ((r.json or {}).get("content") or "")
    ]
    assert public and not [r for r in public if "flagged" in r.json["content"]]


async def test_safety_model_none_runs_no_check(make_world) -> None:
    fake, bot = await make_world(SAFETY_MODEL="none", I2V_FAULT_UNSAFE_INPUT="1", I2V_FAULT_UNSAFE_OUTPUT="1")
    _, job_id = await animate(fake)
    post = await wait_result(fake, job_id)
    (upload,) = post.files
    assert not upload.filename.startswith("SPOILER_") and upload.data[4:8] == b"ftyp"
    job = await bot.wait_job(job_id, lambda j: j.delivered_at is not None)
    assert job.status == JobStatus.SUCCEEDED and job.withheld_at is None
    assert (job.input_verdict, job.output_verdict, job.safety_seconds) == (None, None, None)
    assert "image safety check off (SAFETY_MODEL=none)" in bot.log_path.read_text(errors="replace")
