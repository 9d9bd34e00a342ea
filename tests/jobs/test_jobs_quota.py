"""Quotas on SQLite and PostgreSQL: budgets, refills, pending caps, overrides, tiers, bans, guild caps, calibration."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from jobs.admission import DEFAULT_COST_MODEL, CostModel, calibrate, enqueue_job, estimate_cost
from jobs.control import update_guild_settings
from jobs.errors import Banned, OverBudget, OverGuildCap, QueueFull, RequestRefused, TooManyPending
from jobs.models import PRIORITY_NORMAL, Job, JobSource, JobStatus, utcnow
from jobs.quota import (
    QuotaPolicy,
    ban_user,
    effective_limits,
    quota_status,
    remove_role_tier,
    set_role_tier,
    set_user_limit,
    unban_user,
)
from jobs.transitions import claim_next_job, finish_job
from tests.jobs.storehelpers import IMAGE, SHA, new_job
from tests.store_reads import get_guild_settings, list_actions, list_role_tiers

Sessions = async_sessionmaker[AsyncSession]
POLICY = QuotaPolicy(daily_gpu_seconds=100.0, max_pending=5)


async def _enqueue(sessions: Sessions, user_id: int, policy: QuotaPolicy = POLICY, **kw) -> Job:
    now = kw.pop("now", None)
    async with sessions() as s, s.begin():
        return await enqueue_job(s, new_job(user_id, **kw), policy, image=IMAGE, now=now)


async def _run_to_success(sessions: Sessions, gpu_seconds: float, now=None) -> int:
    async with sessions() as s, s.begin():
        job = await claim_next_job(s, "w", lease_seconds=60, now=now)
        assert job is not None
        assert await finish_job(s, job.id, job.attempt, worker_id="w", video=b"v", gpu_seconds=gpu_seconds, now=now)
        return job.id


async def test_over_budget_refused_with_remaining_needed_and_refill(db_sessionmaker: Sessions) -> None:
    t0 = utcnow() - timedelta(hours=2)
    await _enqueue(db_sessionmaker, 1, cost_estimate=60.0, now=t0)
    await _run_to_success(db_sessionmaker, 60.0, now=t0)  # charged 60 s two hours ago
    await _enqueue(db_sessionmaker, 1, cost_estimate=30.0)  # 90 of 100 now in use
    with pytest.raises(OverBudget) as err:
        await _enqueue(db_sessionmaker, 1, cost_estimate=20.0)
    assert err.value.remaining == pytest.approx(10.0) and err.value.needed == pytest.approx(20.0)
    assert err.value.refill_at == t0 + timedelta(hours=24)  # when the old 60 s charge leaves the window
    assert "needs about 20 s" in str(err.value) and "10 s left" in str(err.value) and "<t:" in str(err.value)
    # A job bigger than the whole budget can never fit: no refill time is promised.
    with pytest.raises(OverBudget) as err:
        await _enqueue(db_sessionmaker, 1, cost_estimate=150.0)
    assert err.value.refill_at is None and "fewer frames" in str(err.value)
    # After the window passes, the old charge no longer counts.
    async with db_sessionmaker() as s:
        later = await quota_status(s, 1, POLICY, now=t0 + timedelta(hours=24, seconds=1))
    assert (later.used, later.reserved, later.remaining) == (0.0, 30.0, 70.0)


async def test_budget_fills_exactly_with_uniform_costs(db_sessionmaker: Sessions) -> None:
    for _ in range(4):
        await _enqueue(db_sessionmaker, 3, cost_estimate=25.0)
    with pytest.raises(OverBudget):
        await _enqueue(db_sessionmaker, 3, cost_estimate=25.0)
    async with db_sessionmaker() as s:
        status = await quota_status(s, 3, POLICY)
    assert (status.reserved, status.remaining, status.pending) == (100.0, 0.0, 4)


async def test_pending_cap(db_sessionmaker: Sessions) -> None:
    policy = QuotaPolicy(daily_gpu_seconds=1000.0, max_pending=2)
    await _enqueue(db_sessionmaker, 4, policy)
    await _enqueue(db_sessionmaker, 4, policy)
    with pytest.raises(TooManyPending, match="already have 2 videos") as err:
        await _enqueue(db_sessionmaker, 4, policy)
    assert err.value.limit == 2
    await _enqueue(db_sessionmaker, 5, policy)  # other users are unaffected


async def test_queue_full(db_sessionmaker: Sessions) -> None:
    policy = QuotaPolicy(daily_gpu_seconds=1000.0, max_pending=5, max_queue_length=3)
    for user in (1, 2, 3):
        await _enqueue(db_sessionmaker, user, policy)
    with pytest.raises(QueueFull, match="3 videos waiting"):
        await _enqueue(db_sessionmaker, 4, policy)


async def test_ban_and_unban(db_sessionmaker: Sessions) -> None:
    async with db_sessionmaker() as s, s.begin():
        await ban_user(s, 8, reason="spam", by=900)
    with pytest.raises(Banned, match="not allowed to make videos with this bot: spam") as err:
        await _enqueue(db_sessionmaker, 8)
    assert isinstance(err.value, RequestRefused) and err.value.reason == "spam"
    async with db_sessionmaker() as s, s.begin():
        assert await unban_user(s, 8, by=900)
        assert not await unban_user(s, 8, by=900)
    await _enqueue(db_sessionmaker, 8)
    async with db_sessionmaker() as s:
        actions = [(a.action, a.actor_id, a.target_user_id) for a in await list_actions(s, target_user_id=8)]
    assert actions == [("unban_user", 900, 8), ("ban_user", 900, 8)]


async def test_role_tier_is_max_over_roles_and_override_wins(db_sessionmaker: Sessions) -> None:
    async with db_sessionmaker() as s, s.begin():
        await set_role_tier(s, 501, guild_id=1, name="supporter", daily_gpu_seconds=300, max_pending=3, by=900)
        await set_role_tier(s, 502, guild_id=1, name="patron", daily_gpu_seconds=600, max_pending=2, by=900)
    with_roles = QuotaPolicy(daily_gpu_seconds=100.0, max_pending=1, role_ids=frozenset({501, 502, 999}))
    async with db_sessionmaker() as s:
        limits = await effective_limits(s, 6, with_roles)
        assert [t.role_id for t in await list_role_tiers(s, guild_id=1)] == [502, 501]
    assert (limits.budget, limits.max_pending, limits.budget_source) == (600.0, 3, "tier")
    # The tier's budget admits what the default would refuse.
    await _enqueue(db_sessionmaker, 6, with_roles, cost_estimate=250.0)
    with pytest.raises(OverBudget):
        await _enqueue(db_sessionmaker, 7, POLICY, cost_estimate=250.0)
    # A per-user override wins over every tier, for the fields it sets.
    async with db_sessionmaker() as s, s.begin():
        await set_user_limit(s, 6, daily_gpu_seconds=50.0, max_pending=None, by=900)
    async with db_sessionmaker() as s:
        limits = await effective_limits(s, 6, with_roles)
    assert (limits.budget, limits.max_pending, limits.budget_source) == (50.0, 3, "override")
    with pytest.raises(OverBudget):
        await _enqueue(db_sessionmaker, 6, with_roles, cost_estimate=10.0)  # 250 reserved > 50
    async with db_sessionmaker() as s, s.begin():
        await set_user_limit(s, 6, daily_gpu_seconds=None, max_pending=None, by=900)  # cleared
        assert await remove_role_tier(s, 502, by=900)
        assert not await remove_role_tier(s, 502, by=900)
        limits = await effective_limits(s, 6, with_roles)
    assert (limits.budget, limits.budget_source) == (300.0, "tier")
    async with db_sessionmaker() as s:
        actions = [a.action for a in await list_actions(s)]
    assert actions.count("set_role_tier") == 2 and actions.count("set_user_limit") == 2
    assert "remove_role_tier" in actions


async def test_tier_pending_cap_applies_at_admission(db_sessionmaker: Sessions) -> None:
    async with db_sessionmaker() as s, s.begin():
        await set_role_tier(s, 503, guild_id=1, name="regular", daily_gpu_seconds=1000, max_pending=2, by=900)
    plain = QuotaPolicy(daily_gpu_seconds=1000.0, max_pending=1)
    with_role = QuotaPolicy(daily_gpu_seconds=1000.0, max_pending=1, role_ids=frozenset({503}))
    await _enqueue(db_sessionmaker, 10, plain)
    with pytest.raises(TooManyPending, match="already have 1"):
        await _enqueue(db_sessionmaker, 10, plain)
    await _enqueue(db_sessionmaker, 10, with_role)
    with pytest.raises(TooManyPending, match="already have 2"):
        await _enqueue(db_sessionmaker, 10, with_role)


async def test_override_raises_pending_cap(db_sessionmaker: Sessions) -> None:
    policy = QuotaPolicy(daily_gpu_seconds=1000.0, max_pending=1)
    await _enqueue(db_sessionmaker, 9, policy)
    with pytest.raises(TooManyPending):
        await _enqueue(db_sessionmaker, 9, policy)
    async with db_sessionmaker() as s, s.begin():
        await set_user_limit(s, 9, daily_gpu_seconds=None, max_pending=3, by=900)
    await _enqueue(db_sessionmaker, 9, policy)
    await _enqueue(db_sessionmaker, 9, policy)
    with pytest.raises(TooManyPending, match="already have 3"):
        await _enqueue(db_sessionmaker, 9, policy)


async def test_guild_caps_and_guild_pause(db_sessionmaker: Sessions) -> None:
    async with db_sessionmaker() as s, s.begin():
        await update_guild_settings(s, 111, by=900, max_resolution="512P", max_frames=16, max_steps=40)
    with pytest.raises(OverGuildCap, match="resolution up to 512p; you asked for 768p"):
        await _enqueue(db_sessionmaker, 1, resolution="768p")
    with pytest.raises(OverGuildCap, match="frames up to 16"):
        await _enqueue(db_sessionmaker, 1, frames=24)
    with pytest.raises(OverGuildCap, match="steps up to 40"):
        await _enqueue(db_sessionmaker, 1, steps=50)
    await _enqueue(db_sessionmaker, 1, steps=40)
    await _enqueue(db_sessionmaker, 1, steps=50, guild_id=333)  # another server has no caps
    async with db_sessionmaker() as s, s.begin():
        await update_guild_settings(s, 111, by=900, paused=True, max_steps=None)
    await _enqueue(db_sessionmaker, 1, steps=50)  # a server pause holds the job (jobs.control), never refuses it
    async with db_sessionmaker() as s:
        settings = await get_guild_settings(s, 111)
    assert settings is not None and settings.paused and settings.max_steps is None and settings.max_frames == 16
    with pytest.raises(ValueError, match="max_resolution"):
        async with db_sessionmaker() as s:
            await update_guild_settings(s, 111, by=900, max_resolution="big")


def test_estimate_cost_is_linear_and_validates() -> None:
    model = CostModel(overhead_seconds=5.0, seconds_per_unit=1e-7)
    base = estimate_cost(512, 512, 16, 50, model=model)
    assert base == pytest.approx(5.0 + 1e-7 * 512 * 512 * 16 * 50)
    assert estimate_cost(512, 512, 32, 50, model=model) - 5.0 == pytest.approx(2 * (base - 5.0))
    assert estimate_cost(1024, 512, 16, 100, model=model) - 5.0 == pytest.approx(4 * (base - 5.0))
    quick, standard, high = (
        estimate_cost(512, 512, 8, 30),
        estimate_cost(512, 512, 16, 50),
        estimate_cost(768, 768, 24, 80),
    )
    assert quick < standard < high
    with pytest.raises(ValueError, match="frames must be a positive integer, got 0"):
        estimate_cost(512, 512, 0, 50)
    with pytest.raises(ValueError, match="width"):
        estimate_cost(-1, 512, 8, 50)


def _measured_rows(sizes: list[tuple[int, int, int, int]], seconds: list[float]) -> list[dict[str, object]]:
    """Succeeded job rows of these sizes (width, height, frames, steps) with these measured GPU-seconds, the last
    one finished most recently."""
    now = utcnow()
    return [
        dict(
            user_id=1,
            channel_id=1,
            guild_id=None,
            source=JobSource.SLASH,
            prompt="p",
            negative_prompt="",
            resolution="512p",
            frames=f,
            fps=8,
            steps=st,
            guidance=9.0,
            seed=i,
            width=w,
            height=h,
            input_sha256=SHA,
            upload_limit_bytes=1,
            status=JobStatus.SUCCEEDED,
            priority=PRIORITY_NORMAL,
            round=0,
            attempt=1,
            max_attempts=3,
            cancel_requested=False,
            progress_step=st,
            progress_total=st,
            phase="done",
            cost_estimate=1.0,
            created_at=now,
            started_at=now,
            finished_at=now + timedelta(seconds=i),
            gpu_seconds=gpu,
        )
        for i, ((w, h, f, st), gpu) in enumerate(zip(sizes, seconds, strict=True))
    ]


async def test_calibrate_fits_measured_jobs(db_sessionmaker: Sessions) -> None:
    async with db_sessionmaker() as s:
        assert await calibrate(s) == DEFAULT_COST_MODEL
    truth = CostModel(overhead_seconds=3.0, seconds_per_unit=2e-7)
    sizes = [
        (256, 256, 8, 10),
        (512, 512, 16, 50),
        (512, 768, 24, 30),
        (768, 768, 32, 80),
        (1024, 576, 16, 20),
        (512, 512, 8, 100),
    ]
    rows = _measured_rows(sizes, [estimate_cost(*size, model=truth) for size in sizes])
    async with db_sessionmaker() as s, s.begin():
        await s.execute(insert(Job), rows)
    async with db_sessionmaker() as s:
        fitted = await calibrate(s)
    assert fitted.samples == 6
    assert fitted.overhead_seconds == pytest.approx(3.0, rel=1e-6)
    assert fitted.seconds_per_unit == pytest.approx(2e-7, rel=1e-6)
    # enqueue uses the calibrated model when the request carries no estimate
    job = await _enqueue(db_sessionmaker, 2, QuotaPolicy(daily_gpu_seconds=1e6, max_pending=5), cost_estimate=None)
    assert job.cost_estimate == pytest.approx(estimate_cost(512, 512, 16, 50, model=truth))


@pytest.mark.parametrize(
    ("sizes", "ratios", "scale"),
    [
        # too few jobs for a line: the default model scaled by the median ratio (an even count: the mean of the
        # middle two)
        ([(512, 512, 16, 50)] * 2 + [(768, 768, 24, 80)] * 2, [1.0, 2.0, 3.0, 7.0], 2.5),
        # enough jobs, but all of one size: no spread to fit a slope on
        ([(512, 512, 16, 50)] * 5, [0.5, 0.5, 1.5, 4.0, 4.0], 1.5),
        # enough jobs of different sizes, but the line falls as jobs grow: not a sane fit
        (
            [(256, 256, 8, 10), (512, 512, 16, 50), (768, 768, 24, 80), (768, 768, 32, 80), (1024, 576, 32, 100)],
            [40.0, 4.0, 1.0, 0.5, 0.25],
            1.0,
        ),
    ],
)
async def test_calibrate_falls_back_to_scaling_the_default_model(
    db_sessionmaker: Sessions, sizes: list[tuple[int, int, int, int]], ratios: list[float], scale: float
) -> None:
    """Measured = ratio x the default estimate of each job: the fallback scales the default by their median."""
    rows = _measured_rows(sizes, [ratio * estimate_cost(*size) for size, ratio in zip(sizes, ratios, strict=True)])
    async with db_sessionmaker() as s, s.begin():
        await s.execute(insert(Job), rows)
    async with db_sessionmaker() as s:
        fitted = await calibrate(s)
    assert fitted.samples == len(sizes)
    assert fitted.overhead_seconds == pytest.approx(DEFAULT_COST_MODEL.overhead_seconds * scale, rel=1e-9)
    assert fitted.seconds_per_unit == pytest.approx(DEFAULT_COST_MODEL.seconds_per_unit * scale, rel=1e-9)


def test_refusal_messages_are_user_facing() -> None:
    assert str(TooManyPending(1)) == (
        "You already have 1 video waiting or in progress, the most allowed. Wait for one to finish or cancel one."
    )
    assert str(Banned(None)) == "You are not allowed to make videos with this bot."
    with pytest.raises(ValueError, match="max_pending"):
        QuotaPolicy(daily_gpu_seconds=10, max_pending=0)
    with pytest.raises(ValueError, match="daily_gpu_seconds"):
        QuotaPolicy(daily_gpu_seconds=-1, max_pending=1)
