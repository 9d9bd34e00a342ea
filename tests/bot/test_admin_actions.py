"""The store-side halves of /operator ban and /admin limits (``bot.admin_actions.ban_and_settle`` and
``set_guild_limits``), on a migrated SQLite file and on PostgreSQL, with the real queue functions around them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.admin_actions import set_guild_limits
from bot.errors import UserFacingError
from generator.params import GenerationParams
from jobs.admission import NewJob, enqueue_job
from jobs.control import ban_and_settle
from jobs.errors import Banned, OverGuildCap
from jobs.maintenance import rescue_expired
from jobs.models import AuditLog, GuildSettings, Job, JobSource, JobStatus, LedgerKind, QuotaLedger
from jobs.quota import QuotaPolicy
from jobs.transitions import claim_next_job
from tests.jobs.storehelpers import IMAGE, SHA

GUILD = 31337
ADMIN = 1
BANNED = 66
OTHER = 77
POLICY = QuotaPolicy(daily_gpu_seconds=10_000.0, max_pending=5)
LEASE_S = 30.0


def new_job(user_id: int, *, resolution: str = "256p", frames: int = 8, steps: int = 10) -> NewJob:
    params = GenerationParams(
        prompt="p", negative_prompt="", resolution=resolution, frames=frames, fps=8, steps=steps, guidance=9.0, seed=1
    )
    return NewJob(
        user_id=user_id,
        channel_id=2,
        guild_id=GUILD,
        source=JobSource.SLASH,
        params=params,
        width=256,
        height=256,
        input_sha256=SHA,
        upload_limit_bytes=10 * 2**20,
        cost_estimate=20.0,
    )


async def test_ban_cancels_queued_refunds_and_never_retries_the_running_job(
    db_sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    start = datetime.now(UTC)
    async with db_sessionmaker.begin() as session:
        running = (await enqueue_job(session, new_job(BANNED), POLICY, image=IMAGE, now=start)).id
        queued = [(await enqueue_job(session, new_job(BANNED), POLICY, image=IMAGE, now=start)).id for _ in range(2)]
        others = (await enqueue_job(session, new_job(OTHER), POLICY, image=IMAGE, now=start)).id
    async with db_sessionmaker.begin() as session:
        claimed = await claim_next_job(session, "w1", lease_seconds=LEASE_S, now=start)
    assert claimed is not None and claimed.id == running

    async with db_sessionmaker.begin() as session:
        outcome = await ban_and_settle(session, BANNED, reason="spam", by=ADMIN)
    assert (outcome.newly_banned, outcome.cancelled_job_ids, outcome.running_job_ids) == (True, queued, [running])

    async with db_sessionmaker() as session:
        jobs = {j.id: j for j in await session.scalars(select(Job))}
        refunds = set(await session.scalars(select(QuotaLedger.job_id).where(QuotaLedger.kind == LedgerKind.REFUND)))
        audit = [
            (a.action, a.actor_id, a.target_user_id)
            for a in await session.scalars(select(AuditLog).order_by(AuditLog.id))
        ]
    assert [jobs[j].status for j in queued] == [JobStatus.CANCELLED, JobStatus.CANCELLED]
    assert refunds == set(queued)
    assert (jobs[running].status, jobs[running].attempt, jobs[running].max_attempts) == (JobStatus.RUNNING, 1, 1)
    assert jobs[others].status == JobStatus.QUEUED  # someone else's job is untouched
    assert audit == [("ban_user", ADMIN, BANNED), ("ban_settle_jobs", ADMIN, BANNED)]

    # New requests are refused with the reason.
    with pytest.raises(Banned, match="spam"):
        async with db_sessionmaker.begin() as session:
            await enqueue_job(session, new_job(BANNED), POLICY, image=IMAGE)

    # The running job's worker dies: the lease rescue fails it (refunded) instead of putting it back in the queue.
    later = start + timedelta(seconds=LEASE_S + 1)
    async with db_sessionmaker.begin() as session:
        assert await rescue_expired(session, now=later) == [running]
    async with db_sessionmaker() as session:
        job = await session.get(Job, running)
        refunded = await session.scalar(
            select(QuotaLedger.amount).where(QuotaLedger.job_id == running, QuotaLedger.kind == LedgerKind.REFUND)
        )
    assert job is not None and job.status == JobStatus.FAILED and refunded == pytest.approx(20.0)

    # Banning again changes the reason and touches no job.
    async with db_sessionmaker.begin() as session:
        again = await ban_and_settle(session, BANNED, reason="still spam", by=ADMIN)
    assert (again.newly_banned, again.cancelled_job_ids, again.running_job_ids) == (False, [], [])


async def test_guild_limits_set_keep_clear_and_refuse(db_sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    async with db_sessionmaker.begin() as session:
        await set_guild_limits(session, GUILD, max_resolution="512p", max_frames=16, by=ADMIN)
    async with db_sessionmaker.begin() as session:
        row = await set_guild_limits(session, GUILD, max_steps=30, by=ADMIN)  # the others are kept
        assert (row.max_resolution, row.max_frames, row.max_steps) == ("512p", 16, 30)

    for new, cap in (
        (new_job(OTHER, resolution="768p"), "512p"),
        (new_job(OTHER, frames=24), "16"),
        (new_job(OTHER, steps=40), "30"),
    ):
        with pytest.raises(OverGuildCap, match=rf"\b{cap}\b"):
            async with db_sessionmaker.begin() as session:
                await enqueue_job(session, new, POLICY, image=IMAGE)
    async with db_sessionmaker.begin() as session:
        await enqueue_job(session, new_job(OTHER, resolution="512p", frames=16, steps=30), POLICY, image=IMAGE)

    async with db_sessionmaker.begin() as session:
        await set_guild_limits(session, GUILD, max_resolution=None, max_frames=None, by=ADMIN)
    async with db_sessionmaker() as session:
        stored = await session.get(GuildSettings, GUILD)
        details = [a.detail for a in await session.scalars(select(AuditLog).order_by(AuditLog.id))]
    assert stored is not None and (stored.max_resolution, stored.max_frames, stored.max_steps) == (None, None, 30)
    assert details[-1] == {  # the caps this change named; max_steps was kept
        "before": {"max_resolution": "512p", "max_frames": 16},
        "after": {"max_resolution": None, "max_frames": None},
    }
    assert len(details) == 3

    for kwargs, message in (
        ({"max_resolution": "2048p"}, "max_resolution must be one of 256p, 480p, 512p, 720p, 768p, 1024p or none"),
        ({"max_frames": 7}, "max_frames must be 0 \\(no cap\\) or between 8 and 257; you gave 7"),
        ({"max_steps": 101}, "max_steps must be 0 \\(no cap\\) or between 4 and 100; you gave 101"),
    ):
        with pytest.raises(UserFacingError, match=message):
            async with db_sessionmaker.begin() as session:
                await set_guild_limits(session, GUILD, by=ADMIN, **kwargs)
