"""The worker's ProgressWriter on SQLite and PostgreSQL: each write is committed on its own (visible to
other connections at once, no lock left behind), fenced by attempt, carries the cancel flag, renews the
lease, survives a dropped connection, and writes from several tasks take turns; it writes exactly what
``report_progress`` writes in a caller's session."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from jobs.admission import enqueue_job
from jobs.maintenance import rescue_expired
from jobs.models import Job, utcnow
from jobs.progress import ProgressWriter, report_progress
from jobs.transitions import cancel_job, claim_next_job
from tests.jobs.storehelpers import GENEROUS, IMAGE, new_job, sqlite_write_lock_free

Sessions = async_sessionmaker[AsyncSession]
LEASE = 60.0


async def _running_job(sessions: Sessions, user_id: int = 5) -> Job:
    async with sessions() as s, s.begin():
        await enqueue_job(s, new_job(user_id, cost_estimate=10.0), GENEROUS, image=IMAGE)
    async with sessions() as s, s.begin():
        job = await claim_next_job(s, "w1", lease_seconds=LEASE)
    assert job is not None
    return job


async def _read(sessions: Sessions, job_id: int) -> Job:
    async with sessions() as s:
        return (await s.execute(select(Job).where(Job.id == job_id))).scalar_one()


async def test_each_write_is_committed_and_renews_the_lease(db_engine: AsyncEngine, db_sessionmaker: Sessions) -> None:
    job = await _running_job(db_sessionmaker)
    before = await _read(db_sessionmaker, job.id)
    async with ProgressWriter(db_engine) as writer:
        ack = await writer.write(
            job.id, job.attempt, worker_id="w1", step=7, total=50, phase="denoising", lease_seconds=600
        )
        assert ack.ok and not ack.cancel_requested
        # Read back through another connection while the writer still holds its own: already committed.
        seen = await _read(db_sessionmaker, job.id)
        assert (seen.progress_step, seen.progress_total, seen.phase) == (7, 50, "denoising")
        assert seen.lease_expires_at is not None and before.lease_expires_at is not None
        assert seen.lease_expires_at - before.lease_expires_at > timedelta(seconds=500)
        if db_engine.dialect.name == "sqlite":
            # No transaction left open on the kept connection: another process can take the write lock.
            assert db_engine.url.database is not None
            assert sqlite_write_lock_free(db_engine.url.database)


async def test_writes_are_fenced_by_attempt_and_carry_the_cancel_flag(
    db_engine: AsyncEngine, db_sessionmaker: Sessions
) -> None:
    job = await _running_job(db_sessionmaker)
    async with ProgressWriter(db_engine) as writer:
        async with db_sessionmaker() as s, s.begin():
            await cancel_job(s, job.id)
        ack = await writer.write(
            job.id, job.attempt, worker_id="w1", step=3, total=50, phase="denoising", lease_seconds=LEASE
        )
        assert ack.ok and ack.cancel_requested
        # A rescued job belongs to the next attempt: the old attempt's writes are refused and change nothing.
        other = await _running_job(db_sessionmaker, user_id=6)
        async with db_sessionmaker() as s, s.begin():
            assert await rescue_expired(s, now=utcnow() + timedelta(seconds=LEASE * 2)) == sorted([job.id, other.id])
        late = await writer.write(
            other.id, other.attempt, worker_id="w1", step=9, total=50, phase="denoising", lease_seconds=LEASE
        )
        assert not late.ok and not late.cancel_requested
        assert (await _read(db_sessionmaker, other.id)).progress_step == 0


async def test_a_dropped_connection_fails_one_write_and_the_next_one_reconnects(
    db_engine: AsyncEngine, db_sessionmaker: Sessions
) -> None:
    job = await _running_job(db_sessionmaker)
    async with ProgressWriter(db_engine) as writer:
        assert (
            await writer.write(
                job.id, job.attempt, worker_id="w1", step=1, total=50, phase="denoising", lease_seconds=LEASE
            )
        ).ok
        assert writer._conn is not None
        raw = await writer._conn.get_raw_connection()
        assert raw.driver_connection is not None
        await raw.driver_connection.close()  # the server (or the file) went away under the kept connection
        try:
            await writer.write(
                job.id, job.attempt, worker_id="w1", step=2, total=50, phase="denoising", lease_seconds=LEASE
            )
        except Exception:  # noqa: BLE001 - which error depends on the driver; that one write fails is the point
            pass
        else:
            raise AssertionError("a write on a closed connection succeeded")
        assert writer._conn is None
        assert (
            await writer.write(
                job.id, job.attempt, worker_id="w1", step=3, total=50, phase="denoising", lease_seconds=LEASE
            )
        ).ok
    assert (await _read(db_sessionmaker, job.id)).progress_step == 3


async def test_concurrent_writes_take_turns(db_engine: AsyncEngine, db_sessionmaker: Sessions) -> None:
    job = await _running_job(db_sessionmaker)
    async with ProgressWriter(db_engine) as writer:
        acks = await asyncio.gather(
            *(
                writer.write(
                    job.id, job.attempt, worker_id="w1", step=n, total=50, phase="denoising", lease_seconds=LEASE
                )
                for n in range(1, 21)
            )
        )
    assert all(a.ok for a in acks)
    assert (await _read(db_sessionmaker, job.id)).progress_step == 20  # taken in order, the last one stands


async def test_a_write_stores_exactly_what_report_progress_stores(
    db_engine: AsyncEngine, db_sessionmaker: Sessions
) -> None:
    """Same statement, same instant: the writer's write and the session-level one leave equal rows
    (the lease timestamp to the microsecond, converted by the column type on both paths)."""
    by_session, by_writer = await _running_job(db_sessionmaker, 5), await _running_job(db_sessionmaker, 6)
    at = utcnow().replace(microsecond=123456)
    async with db_sessionmaker() as s, s.begin():
        ack = await report_progress(
            s,
            by_session.id,
            by_session.attempt,
            worker_id="w1",
            step=4,
            total=30,
            phase="denoising",
            lease_seconds=90.5,
            now=at,
        )
    assert ack.ok
    async with ProgressWriter(db_engine) as writer:
        assert (
            await writer.write(
                by_writer.id,
                by_writer.attempt,
                worker_id="w1",
                step=4,
                total=30,
                phase="denoising",
                lease_seconds=90.5,
                now=at,
            )
        ).ok
    rows = [await _read(db_sessionmaker, j.id) for j in (by_session, by_writer)]
    seen = [(r.progress_step, r.progress_total, r.phase, r.lease_expires_at, r.status) for r in rows]
    assert seen[0] == seen[1]
    assert seen[1][3] == at + timedelta(seconds=90.5)
    if db_engine.dialect.name == "sqlite":  # stored as the same text, so SQL comparisons order them alike
        async with db_engine.connect() as conn:
            texts = (
                (
                    await conn.exec_driver_sql(
                        "SELECT lease_expires_at FROM jobs WHERE id IN (?, ?) ORDER BY id",
                        (by_session.id, by_writer.id),
                    )
                )
                .scalars()
                .all()
            )
            assert texts[0] == texts[1], texts
            await conn.rollback()


async def test_bad_progress_is_refused_before_anything_is_sent(
    db_engine: AsyncEngine, db_sessionmaker: Sessions
) -> None:
    job = await _running_job(db_sessionmaker)
    async with ProgressWriter(db_engine) as writer:
        with pytest.raises(ValueError, match="step 51 of 50"):
            await writer.write(
                job.id, job.attempt, worker_id="w1", step=51, total=50, phase="denoising", lease_seconds=LEASE
            )
        with pytest.raises(ValueError, match="lease_seconds"):
            await writer.write(
                job.id, job.attempt, worker_id="w1", step=1, total=50, phase="denoising", lease_seconds=0
            )
        assert writer._conn is None  # nothing was sent
    assert (await _read(db_sessionmaker, job.id)).progress_step == 0
