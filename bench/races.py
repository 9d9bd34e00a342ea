"""Negative controls for the store's race tests, on PostgreSQL (where concurrency is real): without the guard each
test relies on, the same race breaks the rule that test checks.

- claims: the claim statement minus ``FOR UPDATE SKIP LOCKED``, run by 4 connections at once, hands jobs out twice
  under READ COMMITTED (tests/jobs/test_jobs_concurrency.py checks the real claim hands each job out once);
- admission: ``enqueue_job`` without the per-user account row lock admits more than a user's budget when 50 users'
  10 requests race (the test checks the real admission never does).

    .venv/bin/python -m bench.races                      # both controls, 500 jobs, 50 users
    .venv/bin/python -m bench.races --jobs 2000 --users 100

A scratch database is created on the server of PG_TEST_URL (default postgresql+asyncpg://postgres@127.0.0.1:5432/test)
and dropped afterwards. Exits 1 when a control did not break the rule (the test would then prove nothing).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

import jobs.admission
from bench.scratch import DEFAULT_PG_URL, IMAGE, bench_request, scratch_database
from jobs.admission import enqueue_job
from jobs.db import make_engine, make_sessionmaker
from jobs.errors import OverBudget
from jobs.models import Job, JobStatus
from jobs.quota import QuotaPolicy
from jobs.transitions import JOBS

CLAIMERS = 4
DEFAULT_JOBS = 500
DEFAULT_USERS = 50
REQUESTS_PER_USER = 10
REQUEST_COST_S = 10.0
BUDGET_S = 70.0
ENGINES = 4
FILL_POLICY = QuotaPolicy(daily_gpu_seconds=1e12, max_pending=1_000_000)


@dataclass(frozen=True)
class ClaimControl:
    jobs: int
    claims: int

    @property
    def extra_claims(self) -> int:
        return self.claims - self.jobs


@dataclass(frozen=True)
class AdmissionControl:
    users: int
    over_budget: int
    worst_admitted_s: float


async def claims_without_skip_locked(url: str, jobs: int) -> ClaimControl:
    """Queue ``jobs`` jobs, then let 4 connections claim them with the claim statement minus SKIP LOCKED."""
    engine = make_engine(url)
    try:
        async with make_sessionmaker(engine)() as s, s.begin():
            for n in range(jobs):
                await enqueue_job(s, bench_request(1 + n % 7, n), FILL_POLICY, image=IMAGE)
    finally:
        await engine.dispose()
    claimed: list[int] = []

    async def unsafe_claimer(name: str) -> None:
        engine = make_engine(url)  # its own engine, so its own connection
        sessions = make_sessionmaker(engine)
        table = JOBS
        try:
            while True:
                next_id = (
                    select(Job.id)
                    .where(Job.status == JobStatus.QUEUED)
                    .order_by(Job.priority.desc(), Job.round, Job.id)
                    .limit(1)
                    .scalar_subquery()
                )
                async with sessions() as s, s.begin():
                    row = (
                        await s.execute(
                            update(table)
                            .where(table.c.id == next_id)
                            .values(status=JobStatus.RUNNING, worker_id=name)
                            .returning(table.c.id)
                        )
                    ).first()
                if row is None:
                    return
                claimed.append(row.id)
        finally:
            await engine.dispose()

    await asyncio.gather(*(unsafe_claimer(f"unsafe-{i}") for i in range(CLAIMERS)))
    if len(set(claimed)) != jobs:
        raise RuntimeError(f"{len(set(claimed))} distinct jobs claimed out of {jobs}")
    return ClaimControl(jobs=jobs, claims=len(claimed))


async def _no_account_lock(session: AsyncSession, user_id: int, now: datetime) -> None:
    return None


@asynccontextmanager
async def _without(name: str, replacement: Callable[..., Awaitable[Any]]) -> AsyncIterator[None]:
    original = getattr(jobs.admission, name)
    setattr(jobs.admission, name, replacement)
    try:
        yield
    finally:
        setattr(jobs.admission, name, original)


async def admission_without_account_lock(url: str, users: int) -> AdmissionControl:
    """Every user's 10 requests of 10 s against a 70 s budget at once, over 4 engines, with the account lock off."""
    policy = QuotaPolicy(daily_gpu_seconds=BUDGET_S, max_pending=REQUESTS_PER_USER)
    engines = [make_engine(url) for _ in range(ENGINES)]
    makers = [make_sessionmaker(e) for e in engines]
    admitted: dict[int, float] = dict.fromkeys(range(1, users + 1), 0.0)

    async def request(user: int, k: int) -> None:
        async with makers[k % len(makers)]() as s:
            try:
                async with s.begin():
                    await enqueue_job(s, bench_request(user, k, cost=REQUEST_COST_S), policy, image=IMAGE)
            except OverBudget:
                return
        admitted[user] += REQUEST_COST_S

    tasks = [request(u, k) for u in admitted for k in range(REQUESTS_PER_USER)]
    random.Random(7).shuffle(tasks)
    try:
        async with _without("_lock_account", _no_account_lock):
            await asyncio.gather(*tasks)
    finally:
        for e in engines:
            await e.dispose()
    over = [u for u, total in admitted.items() if total > BUDGET_S]
    return AdmissionControl(users=users, over_budget=len(over), worst_admitted_s=max(admitted.values()))


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=DEFAULT_JOBS, help="jobs the unsafe claimers race for")
    parser.add_argument("--users", type=int, default=DEFAULT_USERS, help="users whose requests race")
    args = parser.parse_args(argv)
    if args.jobs < 1 or args.users < 1:
        parser.error("--jobs and --users must be >= 1")
    server = os.environ.get("PG_TEST_URL", DEFAULT_PG_URL)
    async with scratch_database(server, "i2v_races") as url:
        claims = await claims_without_skip_locked(url, args.jobs)
    async with scratch_database(server, "i2v_races") as url:
        admission = await admission_without_account_lock(url, args.users)
    print(
        f"claims without SKIP LOCKED: {claims.extra_claims} extra claims over {claims.jobs} jobs "
        f"({CLAIMERS} connections)"
    )
    print(
        f"admission without the account lock: {admission.over_budget} of {admission.users} users over their "
        f"{BUDGET_S:.0f} s budget, worst {admission.worst_admitted_s:.0f} s"
    )
    broke = claims.extra_claims > 0 and admission.over_budget > 0
    if not broke:
        print("a control did not break its rule: raise --jobs / --users", file=sys.stderr)
    return 0 if broke else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
