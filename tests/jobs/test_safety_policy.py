"""Where an unsafe video may go (jobs.safety): the operator's default tightened by a server, never loosened; a
withheld video's bytes go at once while its verdict stays; the page never shows one (web.delivery). Reports: once
per member and job, listed per server, resolved; delete-my-data and retention remove them and the verdicts."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from jobs.admission import enqueue_job
from jobs.blobs import DATABASE_BLOBS
from jobs.models import GuildSettings, Job, JobSource, Report, utcnow
from jobs.retention import delete_user_data, prune_finished
from jobs.safety import (
    REPORT_DELETED,
    REPORT_DISMISSED,
    STAGE_OUTPUT,
    ReportRefused,
    UnsafePolicy,
    Verdict,
    add_report,
    may_post_unsafe,
    open_reports,
    record_verdict,
    resolve_reports,
    server_safety,
    stricter,
    withheld_message,
)
from jobs.transitions import claim_next_job, finish_job, mark_delivered
from tests.jobs.storehelpers import GENEROUS, GUILD, IMAGE, new_job
from tests.web.inproc import web_config
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
    db_sessionmaker: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    async with db_sessionmaker.begin() as s:
        job = await enqueue_job(s, new_job(5, source=JobSource.WEB, guild_id=None), GENEROUS, image=IMAGE)
    async with db_sessionmaker.begin() as s:
        claimed = await claim_next_job(s, "w", lease_seconds=60)
        assert claimed is not None and claimed.id == job.id
        assert await record_verdict(
            s, job.id, 1, worker_id="w", stage=STAGE_OUTPUT, verdict=Verdict.UNSAFE, seconds=0.25
        )
        assert await finish_job(s, job.id, 1, worker_id="w", video=b"an unsafe mp4", gpu_seconds=1.0)
    config = web_config(tmp_path, save_output_copy=True)  # output_dir: tmp_path / "outputs"
    assert await deliver_web_jobs(config, db_sessionmaker, db_sessionmaker) == [job.id]
    async with db_sessionmaker() as s:
        row = await s.get(Job, job.id)
        assert row is not None and row.output_verdict == "unsafe" and row.safety_seconds == 0.25
        assert row.withheld_at is not None and row.error == withheld_message(REFUSE) and row.delivered_at
        assert await DATABASE_BLOBS.read_video(s, job.id) is None
    assert not (tmp_path / "outputs").exists()  # no disk copy either


async def _delivered_job(sessions: async_sessionmaker[AsyncSession], user_id: int) -> int:
    async with sessions.begin() as s:
        job = await enqueue_job(s, new_job(user_id), GENEROUS, image=IMAGE)
    async with sessions.begin() as s:
        claimed = await claim_next_job(s, "w", lease_seconds=60)
        assert claimed is not None
        assert await record_verdict(
            s, job.id, claimed.attempt, worker_id="w", stage=STAGE_OUTPUT, verdict=Verdict.SAFE, seconds=0.1
        )
        assert await finish_job(s, job.id, claimed.attempt, worker_id="w", video=b"mp4", gpu_seconds=1.0)
    return job.id


async def test_reports_once_per_member_listed_resolved_and_forgotten(
    db_sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    maker, other = 40, 41
    job_id = await _delivered_job(db_sessionmaker, maker)
    second_id = await _delivered_job(db_sessionmaker, other)
    async with db_sessionmaker.begin() as s:
        await add_report(s, job_id, reporter_id=50)
        await add_report(s, job_id, reporter_id=51)
        await add_report(s, second_id, reporter_id=maker)  # the maker of the first reports someone else's
    for job, member, why in (
        (job_id, 50, "already reported"),
        (job_id, maker, "your own video"),
        (999_999, 50, "no such video"),
    ):
        with pytest.raises(ReportRefused, match=why):
            async with db_sessionmaker.begin() as s:
                await add_report(s, job, reporter_id=member)
    async with db_sessionmaker() as s:
        listed = await open_reports(s, GUILD)
        assert [(job.id, count) for job, count, _ in listed] == [(job_id, 2), (second_id, 1)]
        assert await open_reports(s, GUILD + 1) == []
        assert len(await open_reports(s, None)) == 2
    async with db_sessionmaker.begin() as s:
        assert await resolve_reports(s, second_id, by=1, resolution=REPORT_DISMISSED, guild_id=GUILD) == 1
    async with db_sessionmaker() as s:
        assert [job.id for job, _, _ in await open_reports(s, GUILD)] == [job_id]
    async with db_sessionmaker.begin() as s:  # the maker's delete-my-data: reports made and received, verdicts
        deleted = await delete_user_data(s, maker, by=maker)
    assert deleted.job_ids == [job_id]
    async with db_sessionmaker() as s:
        left = list(await s.scalars(select(Report.reporter_id)))
        assert left == []  # two received on their job, one made by them (already resolved, still theirs)
        row = await s.get(Job, job_id)
        assert row is not None and (row.input_verdict, row.output_verdict, row.safety_seconds) == (None, None, None)
        other_row = await s.get(Job, second_id)
        assert other_row is not None and other_row.output_verdict == "safe"


async def test_retention_prunes_resolved_reports_and_old_verdicts(
    db_sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    job_id = await _delivered_job(db_sessionmaker, 60)
    open_id = await _delivered_job(db_sessionmaker, 63)
    async with db_sessionmaker.begin() as s:
        await add_report(s, job_id, reporter_id=61)
        await add_report(s, job_id, reporter_id=62)
        await mark_delivered(s, job_id, result_message_id=5)
    async with db_sessionmaker.begin() as s:
        await resolve_reports(s, job_id, by=1, resolution=REPORT_DELETED)
        await add_report(s, open_id, reporter_id=61)  # open: stays
    async with db_sessionmaker.begin() as s:
        await prune_finished(s, finished_before=utcnow() + timedelta(seconds=1))
    async with db_sessionmaker() as s:
        assert list(await s.scalars(select(Report.resolved_at))) == [None]
        row = await s.get(Job, job_id)
        assert row is not None and row.output_verdict is None
