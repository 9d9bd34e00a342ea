"""One grace period, end to end: the bot is stopped (SIGTERM) while its embedded worker is in the middle of a job
that needs longer than the old 7-10 s stop window but less than I2V_GRACE_SECONDS. The supervisor, the worker and
the bot's close all honour the same grace: the job finishes, is delivered before the bot disconnects, and is not
redone (one claim, no give-back)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from sqlalchemy import select

from jobs.db import make_engine, make_sessionmaker
from jobs.models import JobStatus, LedgerKind, QuotaLedger
from tests.bot.harness import (
    SMALL,
    TOKEN,
    BotProcess,
    followup_text,
    job_id_from,
    png_bytes,
    result_posts,
)
from tests.fakediscord.server import FakeDiscord

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

GRACE_S = 24  # I2V_GRACE_SECONDS of this bot (the harness waits 30 s for a stop)
STEP_S = 1.4  # seconds per denoising step (test hook); SMALL has 10 steps
STOP_AT_STEP = 2  # SIGTERM once this step is done: about 8 steps (11 s) plus decoding and encoding remain
OLD_STOP_WINDOW_S = 10.0  # what the supervisor used to allow before SIGKILL


async def test_a_job_that_fits_in_the_grace_period_finishes_and_is_delivered_on_shutdown(tmp_path: Path) -> None:
    fake = FakeDiscord(bot_token=TOKEN)
    await fake.start()
    bot = BotProcess(
        fake,
        tmp_path / "bot",
        extra_env={
            "I2V_GRACE_SECONDS": str(GRACE_S),
            "I2V_FAULT_SLEEP_PER_STEP": str(STEP_S),
            "I2V_LEASE_SECONDS": "60",
        },
    )
    try:
        await bot.start()
        member = fake.add_member(fake.guild.id, "late-user")
        attachment = fake.add_attachment(png_bytes(seed=3), "late.png")
        interaction = await fake.inject_slash(
            "animate", {"image": attachment, "prompt": "waves roll in", **SMALL}, member=member
        )
        job_id = job_id_from(await followup_text(fake, interaction, timeout=30))
        await bot.wait_job(
            job_id, lambda j: j.status == JobStatus.RUNNING and j.progress_step >= STOP_AT_STEP, timeout=180
        )
        stopped_at = time.monotonic()
        code = await bot.stop()
        took = time.monotonic() - stopped_at
        assert code == 0, bot.tail()
        # delivered by the stopping bot itself, before it disconnected
        assert len(result_posts(fake, job_id)) == 1, bot.tail()
    finally:
        await bot.stop()
        await fake.stop()
    job = await bot.job(job_id)
    assert job.status == JobStatus.SUCCEEDED and job.delivered_at is not None, job
    assert (job.attempt, job.releases) == (1, 0), job  # claimed once, never given back or redone
    kinds = [row.kind for row in await _ledger(bot, job_id)]
    assert kinds == [LedgerKind.RESERVE, LedgerKind.RELEASE, LedgerKind.CHARGE], kinds
    assert OLD_STOP_WINDOW_S < took < GRACE_S + 5, took  # it needed more than the old window, less than the grace
    print(f"\nstop took {took:.1f} s; the job finished and was delivered within it")


async def _ledger(bot: BotProcess, job_id: int) -> list[QuotaLedger]:
    engine = make_engine(bot.database_url, read_only=True)
    try:
        async with make_sessionmaker(engine)() as session:
            return list(
                (
                    await session.scalars(
                        select(QuotaLedger).where(QuotaLedger.job_id == job_id).order_by(QuotaLedger.id)
                    )
                ).all()
            )
    finally:
        await engine.dispose()
