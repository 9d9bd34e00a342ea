"""Races on real connections and processes, on SQLite and PostgreSQL: claims and budget admission.

The negative controls (the same races without SKIP LOCKED or without the account lock do break these rules) are
experiments, not tests: ``python -m bench.races``.
"""

from __future__ import annotations

import asyncio
import random
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

import pytest
from sqlalchemy import func, select

from jobs.admission import enqueue_job
from jobs.db import make_engine, make_sessionmaker
from jobs.errors import OverBudget
from jobs.models import Job, JobStatus
from jobs.quota import QuotaPolicy, quota_status
from jobs.transitions import claim_next_job
from tests.jobs.storehelpers import IMAGE, bulk_queue, new_job
from tests.store_reads import ledger_consistent

pytestmark = pytest.mark.slow

JOBS = 2_000
CLAIMERS = 4
USERS = 50
REQUESTS_PER_USER = 10
CLAIMER_SCRIPT = Path(__file__).with_name("claimer_proc.py")
PROCESS_TIMEOUT_S = 120


async def _fill(url: str, count: int) -> list[int]:
    engine = make_engine(url)
    try:
        sessions = make_sessionmaker(engine)
        async with sessions() as s, s.begin():
            await bulk_queue(s, count, users=7)
        async with sessions() as s:
            return list((await s.scalars(select(Job.id).order_by(Job.id))).all())
    finally:
        await engine.dispose()


async def _check_each_claimed_once(url: str, claimed: dict[str, list[int]], all_ids: list[int]) -> None:
    flat = [i for ids in claimed.values() for i in ids]
    dupes = [i for i, n in Counter(flat).items() if n > 1]
    assert dupes == [], f"{len(dupes)} jobs claimed more than once"
    assert sorted(flat) == all_ids
    engine = make_engine(url)
    try:
        async with make_sessionmaker(engine)() as s:
            rows = (await s.execute(select(Job.id, Job.worker_id, Job.attempt, Job.status))).all()
    finally:
        await engine.dispose()
    owner = {i: w for w, ids in claimed.items() for i in ids}
    assert all(r.status == JobStatus.RUNNING and r.attempt == 1 and r.worker_id == owner[r.id] for r in rows)


async def test_four_claimer_connections_claim_each_of_2000_jobs_once(db_url: str) -> None:
    all_ids = await _fill(db_url, JOBS)
    claimed: dict[str, list[int]] = {}

    async def claimer(name: str) -> None:
        engine = make_engine(db_url)  # its own engine, so its own connection
        sessions = make_sessionmaker(engine)
        mine: list[int] = []
        try:
            while True:
                async with sessions() as s, s.begin():
                    job = await claim_next_job(s, name, lease_seconds=300)
                if job is None:
                    break
                mine.append(job.id)
        finally:
            await engine.dispose()
        claimed[name] = mine

    await asyncio.gather(*(claimer(f"claimer-{i}") for i in range(CLAIMERS)))
    await _check_each_claimed_once(db_url, claimed, all_ids)
    assert sum(1 for ids in claimed.values() if ids) >= 2, "the claimers did not actually run concurrently"


async def test_four_claimer_processes_claim_each_of_2000_jobs_once(db_url: str) -> None:
    all_ids = await _fill(db_url, JOBS)
    procs = {
        f"proc-{i}": await asyncio.create_subprocess_exec(
            sys.executable,
            str(CLAIMER_SCRIPT),
            db_url,
            f"proc-{i}",
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for i in range(CLAIMERS)
    }
    claimed: dict[str, list[int]] = {}
    for name, proc in procs.items():
        out, err = await asyncio.wait_for(proc.communicate(), PROCESS_TIMEOUT_S)
        assert proc.returncode == 0, f"{name} failed: {err.decode()[-2000:]}"
        claimed[name] = [int(line) for line in out.decode().split()]
    await _check_each_claimed_once(db_url, claimed, all_ids)
    assert sum(1 for ids in claimed.values() if ids) >= 2, "the processes did not actually run concurrently"


async def _race_enqueues(
    url: str, costs: dict[int, list[float]], policy: QuotaPolicy
) -> dict[int, list[tuple[float, bool]]]:
    """All users' requests at once, over several engines (many real connections). Returns (cost, admitted)."""
    engines = [make_engine(url) for _ in range(4)]
    makers = [make_sessionmaker(e) for e in engines]
    results: dict[int, list[tuple[float, bool]]] = defaultdict(list)

    async def request(user: int, cost: float, k: int) -> None:
        async with makers[k % len(makers)]() as s:
            try:
                async with s.begin():
                    await enqueue_job(s, new_job(user, cost_estimate=cost), policy, image=IMAGE)
                results[user].append((cost, True))
            except OverBudget:
                results[user].append((cost, False))

    try:
        tasks = [request(u, c, k) for u, cs in costs.items() for k, c in enumerate(cs)]
        random.Random(7).shuffle(tasks)
        await asyncio.gather(*tasks)
    finally:
        for e in engines:
            await e.dispose()
    return results


async def test_concurrent_uniform_enqueues_fill_each_budget_exactly(db_url: str, capsys) -> None:
    policy = QuotaPolicy(daily_gpu_seconds=70.0, max_pending=REQUESTS_PER_USER)
    costs = {u: [10.0] * REQUESTS_PER_USER for u in range(1, USERS + 1)}
    results = await _race_enqueues(db_url, costs, policy)
    admitted = {u: sum(c for c, ok in r if ok) for u, r in results.items()}
    assert all(v == 70.0 for v in admitted.values()), admitted
    engine = make_engine(db_url)
    try:
        async with make_sessionmaker(engine)() as s:
            db_count = await s.scalar(select(func.count(Job.id)))
            db_sum = await s.scalar(select(func.sum(Job.cost_estimate)))
            for u in costs:
                status = await quota_status(s, u, policy)
                assert (status.reserved, status.remaining, status.pending) == (70.0, 0.0, 7)
                assert await ledger_consistent(s, u)
    finally:
        await engine.dispose()
    assert db_count == USERS * 7 and db_sum == USERS * 70.0
    with capsys.disabled():
        print(
            f"\n[uniform] {USERS} users x {REQUESTS_PER_USER} concurrent requests of 10 s vs 70 s budgets: "
            f"admitted {db_count} (7 per user, {db_sum:.0f} s), refused {USERS * REQUESTS_PER_USER - db_count}"
        )


async def test_concurrent_random_enqueues_never_exceed_budgets(db_url: str, capsys) -> None:
    budget = 100.0
    policy = QuotaPolicy(daily_gpu_seconds=budget, max_pending=REQUESTS_PER_USER)
    rng = random.Random(3)
    costs = {u: [round(rng.uniform(5.0, 40.0), 2) for _ in range(REQUESTS_PER_USER)] for u in range(1, USERS + 1)}
    results = await _race_enqueues(db_url, costs, policy)
    worst = 0.0
    total_admitted = 0
    for user, r in results.items():
        admitted = sum(c for c, ok in r if ok)
        total_admitted += sum(1 for _, ok in r if ok)
        assert admitted <= budget + 1e-9, f"user {user} admitted {admitted} s against {budget} s"
        # Nothing refused would still have fitted: admission only grew, so every refusal saw at most this room.
        assert all(c > budget - admitted for c, ok in r if not ok), (user, r)
        worst = max(worst, admitted)
    with capsys.disabled():
        print(
            f"\n[random] {USERS} users x {REQUESTS_PER_USER} concurrent requests of 5-40 s vs {budget:.0f} s budgets: "
            f"admitted {total_admitted}, highest per-user total {worst:.2f} s"
        )
