"""Several models on one worker: the claim prefers the loaded model within the written bound, and only models a
worker may load are claimed; on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from jobs.admission import DEFAULT_COST_MODELS, calibrate, enqueue_job, estimate_cost
from jobs.models import Job, WorkerState
from jobs.queue import queue_positions
from jobs.requests import availability_notice
from jobs.transitions import claim_next_job, finish_job
from jobs.workers import loadable_by_live_workers, record_switch, upsert_worker
from tests.jobs.storehelpers import GENEROUS, IMAGE, new_job

Sessions = async_sessionmaker[AsyncSession]
LEASE = 60.0
WAN = dict(model="wan22-5b", resolution="480p", frames=9, fps=24, steps=10, guidance=5.0)
I2V = dict(model="i2vgenxl", resolution="256p", frames=8, fps=8, steps=10, guidance=9.0)


async def _enqueue(sessions: Sessions, user_id: int, params: dict[str, Any]) -> int:
    async with sessions() as s, s.begin():
        return (await enqueue_job(s, new_job(user_id, **params), GENEROUS, image=IMAGE)).id


async def _claim(sessions: Sessions, **kw: Any) -> Job | None:
    async with sessions() as s, s.begin():
        return await claim_next_job(s, "w1", lease_seconds=LEASE, **kw)


async def _finish(sessions: Sessions, job: Job) -> None:
    async with sessions() as s, s.begin():
        assert await finish_job(s, job.id, job.attempt, worker_id="w1", video=b"mp4", gpu_seconds=1.0)


async def _serve(
    sessions: Sessions, *, loaded: str, max_skips: int, models: tuple[str, ...] = ("i2vgenxl", "wan22-5b")
) -> tuple[list[int], int]:
    """One worker serving the whole queue: the jobs in the order it ran them, and its model switches."""
    order, switches = [], 0
    while (job := await _claim(sessions, models=models, loaded_model=loaded, max_skips=max_skips)) is not None:
        if job.model != loaded:
            switches, loaded = switches + 1, job.model
        order.append(job.id)
        await _finish(sessions, job)
    return order, switches


@pytest.mark.parametrize("max_skips", [0, 1, 3, 100])
async def test_alternating_queue_switches_and_waits_within_the_bound(db_sessionmaker: Sessions, max_skips: int) -> None:
    # four users, each asking for both models in turn: the plain claim order alternates between the models
    ids = []
    for round_ in range(4):
        for user in (1, 2, 3, 4):
            ids.append(await _enqueue(db_sessionmaker, user, WAN if (user + round_) % 2 else I2V))
    async with db_sessionmaker() as s:
        fair = [await _claim_order_position(s, job_id) for job_id in ids]
    plain = [job_id for _, job_id in sorted(zip(fair, ids, strict=True))]
    order, switches = await _serve(db_sessionmaker, loaded="i2vgenxl", max_skips=max_skips)
    assert sorted(order) == sorted(ids)  # every job ran once
    # longest wait: how many jobs that were behind a job in the plain order ran before it
    passed_over = {
        job_id: sum(1 for later in plain[plain.index(job_id) + 1 :] if order.index(later) < order.index(job_id))
        for job_id in ids
    }
    assert max(passed_over.values()) <= max_skips
    plain_switches = sum(1 for a, b in zip(plain, plain[1:], strict=False) if _model(ids, a) != _model(ids, b))
    plain_switches += _model(ids, plain[0]) != "i2vgenxl"
    if max_skips == 0:
        assert order == plain and switches == plain_switches
    else:
        assert switches < plain_switches  # affinity saves switches
    if max_skips >= len(ids):
        assert switches == 1  # unbounded: all of one model, then all of the other


def _model(ids: list[int], job_id: int) -> str:
    # WAN for (user + round) odd, in the enqueue order of the test above
    index = ids.index(job_id)
    user, round_ = index % 4 + 1, index // 4
    return "wan22-5b" if (user + round_) % 2 else "i2vgenxl"


async def _claim_order_position(session: AsyncSession, job_id: int) -> tuple[int, int, int]:
    job = await session.get(Job, job_id)
    assert job is not None
    return (-job.priority, job.round, job.id)


async def test_a_model_no_worker_may_load_is_not_claimed(db_sessionmaker: Sessions) -> None:
    ltx = await _enqueue(
        db_sessionmaker, 1, dict(model="ltxv", resolution="512p", frames=9, fps=24, steps=4, guidance=1.0)
    )
    wan = await _enqueue(db_sessionmaker, 2, WAN)
    job = await _claim(db_sessionmaker, models=("i2vgenxl", "wan22-5b"), loaded_model="i2vgenxl", max_skips=3)
    assert job is not None and job.id == wan
    await _finish(db_sessionmaker, job)
    assert await _claim(db_sessionmaker, models=("i2vgenxl", "wan22-5b")) is None  # the LTX job stays queued
    async with db_sessionmaker() as s:
        waiting = await s.get(Job, ltx)
        assert waiting is not None and waiting.status.value == "queued" and waiting.attempt == 0
    job = await _claim(db_sessionmaker, models=("ltxv",))
    assert job is not None and job.id == ltx


async def test_the_requester_is_told_when_no_live_worker_may_load_the_model(db_sessionmaker: Sessions) -> None:
    async with db_sessionmaker() as s, s.begin():
        await upsert_worker(
            s,
            "w1",
            host="h",
            pid=1,
            state=WorkerState.IDLE,
            gpu_name=None,
            gpu_memory_bytes=None,
            current_job_id=None,
            loadable_models=["i2vgenxl", "wan22-5b"],
            loaded_model="i2vgenxl",
        )
    async with db_sessionmaker() as s:
        told = await availability_notice(s, own_problem=None, dead_after_s=30.0, model="ltxv")
        assert told == (
            "⚠️ No worker can run LTX-Video (fast) right now (the workers running load I2VGen-XL, "
            "Wan 2.2 (5B)). This job stays queued and starts when a worker that can run it is back."
        )
        assert await availability_notice(s, own_problem=None, dead_after_s=30.0, model="wan22-5b") is None
        assert await availability_notice(s, own_problem=None, dead_after_s=30.0) is None
    async with db_sessionmaker() as s, s.begin():  # a stopped worker loads nothing
        await upsert_worker(
            s,
            "w1",
            host="h",
            pid=1,
            state=WorkerState.STOPPED,
            gpu_name=None,
            gpu_memory_bytes=None,
            current_job_id=None,
        )
    async with db_sessionmaker() as s:
        assert await loadable_by_live_workers(s, dead_after_s=30.0) is None


async def test_the_eta_counts_a_switch_when_one_is_due(db_sessionmaker: Sessions) -> None:
    async with db_sessionmaker() as s, s.begin():
        await upsert_worker(
            s,
            "w1",
            host="h",
            pid=1,
            state=WorkerState.IDLE,
            gpu_name=None,
            gpu_memory_bytes=None,
            current_job_id=None,
            loadable_models=["i2vgenxl", "wan22-5b"],
            loaded_model="i2vgenxl",
        )
        for seconds in (15.0, 25.0):  # two measured switches: 20 s on average
            await record_switch(s, "w1", seconds=seconds)
    first = await _enqueue(db_sessionmaker, 1, I2V)  # each costs 10 s (storehelpers)
    wan = await _enqueue(db_sessionmaker, 2, WAN)
    wan_again = await _enqueue(db_sessionmaker, 3, WAN)
    ltx = await _enqueue(
        db_sessionmaker, 4, dict(model="ltxv", resolution="512p", frames=9, fps=24, steps=4, guidance=1.0)
    )
    back = await _enqueue(db_sessionmaker, 5, I2V)
    async with db_sessionmaker() as s:
        places = await queue_positions(s)
    assert {job_id: (p.position, p.eta_seconds) for job_id, p in places.items()} == {
        first: (1, 10.0),  # the loaded model: no switch
        wan: (2, 10.0 + 20.0 + 10.0),  # one switch ahead of it
        wan_again: (3, 10.0 + 20.0 + 10.0 + 10.0),
        ltx: (4, None),  # no live worker may load it: no ETA, and it delays nobody
        back: (5, 10.0 + 20.0 + 20.0 + 20.0 + 10.0),  # a second switch, back to I2VGen-XL
    }


async def test_the_cost_is_estimated_and_calibrated_per_model(db_sessionmaker: Sessions) -> None:
    for user in (1, 2, 3):
        async with db_sessionmaker() as s, s.begin():
            job = await enqueue_job(s, new_job(user, cost_estimate=None, **I2V), GENEROUS, image=IMAGE)
        claimed = await _claim(db_sessionmaker)
        assert claimed is not None and claimed.id == job.id
        async with db_sessionmaker() as s, s.begin():
            assert await finish_job(s, job.id, claimed.attempt, worker_id="w1", video=b"mp4", gpu_seconds=99.0)
    async with db_sessionmaker() as s:
        i2v = await calibrate(s, model="i2vgenxl")
        wan = await calibrate(s, model="wan22-5b")
    assert i2v.samples == 3 and wan == DEFAULT_COST_MODELS["wan22-5b"]  # I2VGen-XL's times say nothing of Wan's
    async with db_sessionmaker() as s, s.begin():
        wan_job = await enqueue_job(
            s, new_job(9, cost_estimate=None, width=608, height=480, **WAN), GENEROUS, image=IMAGE
        )
    assert wan_job.cost_estimate == estimate_cost(608, 480, 9, 10, model=DEFAULT_COST_MODELS["wan22-5b"])
