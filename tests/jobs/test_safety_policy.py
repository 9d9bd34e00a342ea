"""Where an unsafe video may go (jobs.safety): the operator's default tightened by a server, never loosened; a
withheld video's bytes go at once while its verdict stays; the page never shows one (web.delivery)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from jobs.blobs import DATABASE_BLOBS
from jobs.models import GuildSettings, Job, JobSource
from jobs.queue import claim_next_job, enqueue_job, finish_job
from jobs.safety import (
    STAGE_OUTPUT,
    UnsafePolicy,
    Verdict,
    may_post_unsafe,
    record_verdict,
    server_safety,
    stricter,
    withheld_message,
)
from tests.jobs.storehelpers import GENEROUS, GUILD, IMAGE, new_job
from web.delivery import deliver_web_jobs

AGE, REFUSE = UnsafePolicy.AGE_RESTRICTED, UnsafePolicy.REFUSE


def test_a_server_may_tighten_the_policy_but_never_loosen_it() -> None:
    assert stricter(AGE, None) is AGE and stricter(AGE, "refuse") is REFUSE
    assert stricter(REFUSE, "age_restricted") is REFUSE and stricter(REFUSE, None) is REFUSE
    assert may_post_unsafe(AGE, age_restricted_channel=True)
    assert not may_post_unsafe(AGE, age_restricted_channel=False)
    assert not may_post_unsafe(REFUSE, age_restricted_channel=True)
    assert "age-restricted" in withheld_message(AGE) and "age-restricted" not in withheld_message(REFUSE)


async def test_server_settings(db_sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    async with db_sessionmaker.begin() as s:
        s.add(GuildSettings(guild_id=GUILD, unsafe_policy="refuse", spoiler_all=True))
    async with db_sessionmaker() as s:
        assert await server_safety(s, GUILD, AGE) == (REFUSE, True)
        assert await server_safety(s, GUILD + 1, AGE) == (AGE, False)
        assert await server_safety(s, None, REFUSE) == (REFUSE, False)


async def test_the_page_withholds_an_unsafe_video_and_keeps_the_verdict(
        db_sessionmaker: async_sessionmaker[AsyncSession], tmp_path: Path) -> None:
    async with db_sessionmaker.begin() as s:
        job = await enqueue_job(s, new_job(5, source=JobSource.WEB, guild_id=None), GENEROUS, image=IMAGE)
    async with db_sessionmaker.begin() as s:
        claimed = await claim_next_job(s, "w", lease_seconds=60)
        assert claimed is not None and claimed.id == job.id
        assert await record_verdict(s, job.id, 1, worker_id="w", stage=STAGE_OUTPUT, verdict=Verdict.UNSAFE,
                                    seconds=0.25)
        assert await finish_job(s, job.id, 1, worker_id="w", video=b"an unsafe mp4", gpu_seconds=1.0)
    config = SimpleNamespace(save_output_copy=True, output_dir=tmp_path / "outputs")
    assert await deliver_web_jobs(config, db_sessionmaker, db_sessionmaker) == [job.id]
    async with db_sessionmaker() as s:
        row = await s.get(Job, job.id)
        assert row is not None and row.output_verdict == "unsafe" and row.safety_seconds == 0.25
        assert row.withheld_at is not None and row.error == withheld_message(REFUSE) and row.delivered_at
        assert await DATABASE_BLOBS.read_video(s, job.id) is None
    assert not (tmp_path / "outputs").exists()  # no disk copy either
