"""The queries behind /admin queue and /admin stats, on a migrated SQLite file and on PostgreSQL.

Rows are written with known timestamps so every expected number below is worked out by hand.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from jobs.listings import NO_PRESET, queue_page
from jobs.models import PRIORITY_ADMIN, Job, JobSource, JobStatus, QueueState, Worker, WorkerState
from jobs.stats import UNKNOWN_FAILURE, admin_stats, durations, nearest_rank, period_stats, worker_infos

NOW = datetime(2026, 11, 24, 12, 0, 0, tzinfo=UTC)
GUILD_A = 111
GUILD_B = 222


def make_job(
    *,
    user_id: int,
    status: JobStatus = JobStatus.QUEUED,
    guild_id: int | None = GUILD_A,
    preset: str | None = "quick",
    created_at: datetime = NOW,
    started_at: datetime | None = None,
    finished_at: datetime | None = None,
    gpu_seconds: float | None = None,
    error: str | None = None,
    priority: int = 0,
    round_: int = 0,
    seed: int = 5,
) -> Job:
    """A job row with only what these queries read set to something meaningful."""
    return Job(
        user_id=user_id,
        guild_id=guild_id,
        channel_id=3000,
        source=JobSource.SLASH,
        prompt=f"prompt of {user_id}",
        negative_prompt="",
        preset=preset,
        resolution="512p",
        frames=8,
        fps=8,
        steps=30,
        guidance=9.0,
        seed=seed,
        width=512,
        height=512,
        input_sha256="0" * 64,
        status=status,
        priority=priority,
        round=round_,
        attempt=0 if status == JobStatus.QUEUED else 1,
        cost_estimate=10.0,
        gpu_seconds=gpu_seconds,
        error=error,
        created_at=created_at,
        started_at=started_at,
        finished_at=finished_at,
        upload_limit_bytes=10 * 1024 * 1024,
    )


async def add_all(sessions: async_sessionmaker[AsyncSession], jobs: list[Job]) -> list[int]:
    """Insert ``jobs`` in order (ids ascend with list order) and return their ids."""
    ids: list[int] = []
    async with sessions.begin() as session:
        for job in jobs:
            session.add(job)
            await session.flush()
            ids.append(job.id)
    return ids


def test_nearest_rank_and_durations() -> None:
    assert nearest_rank([float(v) for v in range(1, 101)], 0.95) == 95.0
    assert nearest_rank([float(v) for v in range(1, 21)], 0.95) == 19.0
    assert nearest_rank([7.0], 0.95) == 7.0
    assert nearest_rank([3.0, 1.0, 2.0], 1.0) == 3.0
    with pytest.raises(ValueError, match="values is empty"):
        nearest_rank([], 0.95)
    with pytest.raises(ValueError, match="fraction"):
        nearest_rank([1.0], 0.0)
    stats = durations([10.0, 20.0, 30.0, 40.0])
    assert (stats.count, stats.mean_seconds, stats.p95_seconds) == (4, 25.0, 40.0)
    empty = durations([])
    assert (empty.count, empty.mean_seconds, empty.p95_seconds) == (0, None, None)


async def test_queue_page_orders_running_then_claim_order(db_sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    t = NOW - timedelta(minutes=30)
    ids = await add_all(
        db_sessionmaker,
        [
            make_job(user_id=1, round_=0, created_at=t),  # q1
            make_job(user_id=1, round_=1, created_at=t + timedelta(seconds=1)),  # q2: user 1's second job
            make_job(user_id=2, round_=0, created_at=t + timedelta(seconds=2), guild_id=GUILD_B),  # q3
            make_job(user_id=3, round_=0, created_at=t + timedelta(seconds=3), priority=PRIORITY_ADMIN),  # q4
            make_job(
                user_id=4,
                status=JobStatus.RUNNING,
                created_at=t - timedelta(minutes=5),
                started_at=t,
            ),  # r1
            make_job(user_id=5, status=JobStatus.SUCCEEDED, created_at=t, started_at=t, finished_at=t),  # done
            make_job(  # a requeued job keeps its old started_at; it must still sort by claim order
                user_id=6, round_=2, created_at=t - timedelta(hours=1), started_at=t - timedelta(minutes=50)
            ),  # q5
        ],
    )
    q1, q2, q3, q4, r1, _done, q5 = ids

    async with db_sessionmaker() as session:
        page = await queue_page(session, limit=10)
    assert [e.job_id for e in page.entries] == [r1, q4, q1, q3, q2, q5]
    assert [e.position for e in page.entries] == [None, 1, 2, 3, 4, 5]
    assert (page.running, page.queued, page.total, page.pages, page.paused) == (1, 5, 6, 1, False)
    assert page.entries[1].summary == "I2VGen-XL quick 512p 8f 30 steps 8 fps seed 5"
    assert page.entries[0].age_seconds(NOW) == pytest.approx(35 * 60)

    async with db_sessionmaker() as session:
        second = await queue_page(session, offset=2, limit=2)
    assert [e.job_id for e in second.entries] == [q1, q3]
    assert (second.page, second.pages) == (1, 3)

    # One guild's view keeps the global positions.
    async with db_sessionmaker() as session:
        only_b = await queue_page(session, guild_id=GUILD_B)
    assert [(e.job_id, e.position) for e in only_b.entries] == [(q3, 3)]
    assert (only_b.running, only_b.queued) == (0, 1)

    async with db_sessionmaker.begin() as session:
        await session.execute(update(QueueState).values(paused=True))
    async with db_sessionmaker() as session:
        assert (await queue_page(session)).paused is True


async def test_queue_page_rejects_bad_paging(db_sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    async with db_sessionmaker() as session:
        with pytest.raises(ValueError, match="offset must be >= 0, got -1"):
            await queue_page(session, offset=-1)
        with pytest.raises(ValueError, match="limit must be in 1..25, got 0"):
            await queue_page(session, limit=0)
        empty = await queue_page(session)
    assert (empty.entries, empty.total, empty.pages) == ([], 0, 1)


async def test_period_stats_counts_times_and_failures(db_sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    day = NOW.replace(hour=0)
    h = timedelta(hours=1)
    s = timedelta(seconds=1)
    await add_all(
        db_sessionmaker,
        [
            # quick, succeeded today: waits 10 s and 30 s, generation 20 s and 40 s
            make_job(
                user_id=1,
                status=JobStatus.SUCCEEDED,
                created_at=day + h,
                started_at=day + h + 10 * s,
                finished_at=day + h + 30 * s,
                gpu_seconds=20.0,
            ),
            make_job(
                user_id=2,
                status=JobStatus.SUCCEEDED,
                created_at=day + 2 * h,
                started_at=day + 2 * h + 30 * s,
                finished_at=day + 2 * h + 70 * s,
                gpu_seconds=40.0,
            ),
            # custom (no preset), failed today after 5 s of wait: GPU time counts, generation time does not
            make_job(
                user_id=3,
                status=JobStatus.FAILED,
                preset=None,
                created_at=day + 3 * h,
                started_at=day + 3 * h + 5 * s,
                finished_at=day + 3 * h + 6 * s,
                gpu_seconds=1.5,
                error="Out of GPU memory",
            ),
            make_job(
                user_id=3,
                status=JobStatus.FAILED,
                preset=None,
                created_at=day + 4 * h,
                started_at=day + 4 * h + 5 * s,
                finished_at=day + 4 * h + 6 * s,
                gpu_seconds=0.5,
                error="Out of GPU memory",
            ),
            make_job(
                user_id=4,
                status=JobStatus.FAILED,
                created_at=day + 5 * h,
                started_at=None,
                finished_at=day + 5 * h + s,
                error=None,
            ),
            make_job(user_id=5, status=JobStatus.CANCELLED, created_at=day + 6 * h, finished_at=day + 6 * h + s),
            make_job(user_id=6, status=JobStatus.QUEUED, created_at=day + 7 * h),
            # another guild, today
            make_job(
                user_id=7,
                status=JobStatus.SUCCEEDED,
                guild_id=GUILD_B,
                preset="high",
                created_at=day + h,
                started_at=day + h + 100 * s,
                finished_at=day + h + 200 * s,
                gpu_seconds=100.0,
            ),
            # three days ago: in the week, not today
            make_job(
                user_id=8,
                status=JobStatus.SUCCEEDED,
                created_at=NOW - 72 * h,
                started_at=NOW - 72 * h + 50 * s,
                finished_at=NOW - 72 * h + 110 * s,
                gpu_seconds=60.0,
            ),
            # ten days ago: in neither
            make_job(
                user_id=9,
                status=JobStatus.FAILED,
                created_at=NOW - 240 * h,
                started_at=NOW - 240 * h,
                finished_at=NOW - 240 * h + s,
                gpu_seconds=9.0,
                error="old",
            ),
        ],
    )

    async with db_sessionmaker() as session:
        stats = await admin_stats(session, now=NOW)
        only_a = await period_stats(session, since=day, until=NOW, guild_id=GUILD_A)

    today = stats.today
    assert today.since == day
    assert today.by_state == {
        JobStatus.QUEUED: 1,
        JobStatus.RUNNING: 0,
        JobStatus.SUCCEEDED: 3,
        JobStatus.FAILED: 3,
        JobStatus.CANCELLED: 1,
    }
    assert today.created == 8
    assert today.gpu_seconds == pytest.approx(20.0 + 40.0 + 1.5 + 0.5 + 100.0)
    timings = {t.preset: t for t in today.timings}
    assert sorted(timings) == [NO_PRESET, "high", "quick"]
    assert (timings["quick"].wait.count, timings["quick"].wait.mean_seconds, timings["quick"].wait.p95_seconds) == (
        2,
        20.0,
        30.0,
    )
    assert (timings["quick"].generation.mean_seconds, timings["quick"].generation.p95_seconds) == (30.0, 40.0)
    assert (timings[NO_PRESET].wait.count, timings[NO_PRESET].wait.mean_seconds) == (2, 5.0)
    assert timings[NO_PRESET].generation.count == 0 and timings[NO_PRESET].generation.p95_seconds is None
    assert today.failures == [("Out of GPU memory", 2), (UNKNOWN_FAILURE, 1)]

    week = stats.week
    assert week.by_state[JobStatus.SUCCEEDED] == 4 and week.created == 9
    assert week.gpu_seconds == pytest.approx(222.0)
    week_quick = {t.preset: t for t in week.timings}["quick"]
    assert (week_quick.wait.count, week_quick.wait.p95_seconds) == (3, 50.0)
    assert week_quick.generation.mean_seconds == pytest.approx((20.0 + 40.0 + 60.0) / 3)

    assert only_a.created == 7 and only_a.gpu_seconds == pytest.approx(62.0)
    assert "high" not in {t.preset for t in only_a.timings}


async def test_period_stats_rejects_bad_ranges(db_sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    async with db_sessionmaker() as session:
        with pytest.raises(ValueError, match="since .* is after until"):
            await period_stats(session, since=NOW, until=NOW - timedelta(seconds=1))
        with pytest.raises(ValueError, match="since must be a timezone-aware"):
            await period_stats(session, since=NOW.replace(tzinfo=None), until=NOW)


async def test_worker_infos_marks_stale_and_hides_stopped(db_sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    async with db_sessionmaker.begin() as session:
        session.add_all(
            [
                Worker(
                    id="w-fresh",
                    host="gpu1",
                    pid=10,
                    state=WorkerState.BUSY,
                    gpu_name="NVIDIA H100",
                    gpu_memory_bytes=80 * 2**30,
                    restarts=2,
                    started_at=NOW - timedelta(hours=1),
                    last_heartbeat_at=NOW - timedelta(seconds=3),
                    jobs_done=7,
                ),
                Worker(
                    id="w-stale",
                    host="gpu2",
                    pid=11,
                    state=WorkerState.IDLE,
                    gpu_name=None,
                    gpu_memory_bytes=None,
                    restarts=0,
                    started_at=NOW - timedelta(hours=2),
                    last_heartbeat_at=NOW - timedelta(minutes=10),
                    jobs_done=0,
                ),
                Worker(
                    id="w-gone",
                    host="gpu3",
                    pid=12,
                    state=WorkerState.STOPPED,
                    restarts=0,
                    started_at=NOW - timedelta(hours=3),
                    last_heartbeat_at=NOW - timedelta(hours=2),
                    jobs_done=1,
                ),
            ]
        )
    async with db_sessionmaker() as session:
        workers = await worker_infos(session, now=NOW)
    assert [(w.worker_id, w.state, w.stale) for w in workers] == [
        ("w-fresh", WorkerState.BUSY, False),
        ("w-stale", WorkerState.IDLE, True),
    ]
    assert (workers[0].gpu_name, workers[0].gpu_memory_bytes, workers[0].restarts) == ("NVIDIA H100", 80 * 2**30, 2)


async def test_audit_page_newest_first_with_guild_scope(db_sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    from jobs.audit import record_action
    from jobs.listings import audit_page

    async with db_sessionmaker.begin() as session:
        # Same timestamp for the first three: the id keeps their order.
        await record_action(session, actor_id=1, action="pause_queue", now=NOW)
        await record_action(session, actor_id=2, action="set_guild_limits", guild_id=GUILD_A, now=NOW)
        await record_action(session, actor_id=3, action="set_guild_limits", guild_id=GUILD_B, now=NOW)
        await record_action(session, actor_id=4, action="ban_user", target_user_id=9, now=NOW + timedelta(seconds=1))
    async with db_sessionmaker() as session:
        everything = await audit_page(session, limit=3)
        second = await audit_page(session, offset=3, limit=3)
        only_a = await audit_page(session, guild_id=GUILD_A)
        with pytest.raises(ValueError, match="limit must be in 1..50, got 51"):
            await audit_page(session, limit=51)
        with pytest.raises(ValueError, match="offset must be >= 0, got -3"):
            await audit_page(session, offset=-3)
    assert [r.actor_id for r in everything.rows] == [4, 3, 2]
    assert (everything.total, everything.pages, everything.page) == (4, 2, 0)
    assert [r.actor_id for r in second.rows] == [1] and second.page == 1
    # A guild sees its own rows and the bot-wide ones (no guild), not another guild's.
    assert [r.actor_id for r in only_a.rows] == [4, 2, 1] and only_a.total == 3
