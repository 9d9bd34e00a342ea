"""Queue behaviour on SQLite and PostgreSQL: order, cancel, fencing, rescue, delivery, pause, clear, ETA."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from jobs.admission import enqueue_job
from jobs.audit import record_action
from jobs.control import clear_queue, is_paused, pause_queue, resume_queue
from jobs.errors import JobNotFound
from jobs.maintenance import rescue_expired
from jobs.models import Job, JobPhase, JobStatus, LedgerKind, QuotaLedger, WorkerState, utcnow
from jobs.progress import report_progress
from jobs.queue import QueuePosition, queue_position, set_status_message, undelivered_jobs, user_jobs
from jobs.quota import QuotaPolicy, quota_status
from jobs.transitions import (
    CancelOutcome,
    cancel_job,
    claim_next_job,
    fail_job,
    finish_cancelled,
    finish_job,
    mark_delivered,
    release_job,
)
from jobs.workers import upsert_worker
from tests.jobs.storehelpers import GENEROUS, IMAGE, new_job
from tests.store_reads import get_job, ledger_consistent, list_actions, list_workers

Sessions = async_sessionmaker[AsyncSession]
LEASE = 60.0
W = "w1"
"""The worker id ``_claim`` claims with unless told otherwise."""


async def _enqueue(sessions: Sessions, user_id: int, policy: QuotaPolicy = GENEROUS, **kw) -> int:
    async with sessions() as s, s.begin():
        return (await enqueue_job(s, new_job(user_id, **kw), policy, image=IMAGE)).id


async def _claim(sessions: Sessions, worker: str = "w1", **kw) -> Job | None:
    async with sessions() as s, s.begin():
        return await claim_next_job(s, worker, lease_seconds=kw.pop("lease", LEASE), **kw)


async def _ledger(sessions: Sessions, job_id: int) -> dict[LedgerKind, float]:
    async with sessions() as s:
        rows = (await s.execute(select(QuotaLedger.kind, QuotaLedger.amount).where(QuotaLedger.job_id == job_id))).all()
    return {k: a for k, a in rows}


async def test_success_settles_reservation_and_charges_measured_time(db_sessionmaker: Sessions) -> None:
    job_id = await _enqueue(db_sessionmaker, 7, cost_estimate=40.0)
    assert await _ledger(db_sessionmaker, job_id) == {LedgerKind.RESERVE: 40.0}
    async with db_sessionmaker() as s:
        status = await quota_status(s, 7, QuotaPolicy(daily_gpu_seconds=100, max_pending=3))
    assert (status.used, status.reserved, status.remaining, status.pending) == (0.0, 40.0, 60.0, 1)

    job = await _claim(db_sessionmaker)
    assert job is not None and job.id == job_id and job.attempt == 1 and job.status == JobStatus.RUNNING
    async with db_sessionmaker() as s, s.begin():
        ack = await report_progress(
            s, job_id, 1, worker_id=W, step=10, total=50, phase="denoising", lease_seconds=LEASE
        )
    assert ack.ok and not ack.cancel_requested
    async with db_sessionmaker() as s, s.begin():
        assert await finish_job(s, job_id, 1, worker_id=W, video=b"v" * 1234, gpu_seconds=31.5)
    assert await _ledger(db_sessionmaker, job_id) == {
        LedgerKind.RESERVE: 40.0,
        LedgerKind.RELEASE: 40.0,
        LedgerKind.CHARGE: 31.5,
    }
    async with db_sessionmaker() as s:
        job = await get_job(s, job_id)
        status = await quota_status(s, 7, QuotaPolicy(daily_gpu_seconds=100, max_pending=3))
        assert await ledger_consistent(s, 7)
    assert job.status == JobStatus.SUCCEEDED and job.output_bytes == 1234 and job.phase == JobPhase.DONE
    assert (status.used, status.reserved, status.remaining, status.pending) == (31.5, 0.0, 68.5, 0)
    assert status.refill_at is not None and status.refill_at > utcnow() + timedelta(hours=23)
    # A second finish of the same attempt is rejected: no double charge.
    async with db_sessionmaker() as s, s.begin():
        assert not await finish_job(s, job_id, 1, worker_id=W, video=b"v" * 1, gpu_seconds=99)


async def test_failure_refunds(db_sessionmaker: Sessions) -> None:
    job_id = await _enqueue(db_sessionmaker, 7, cost_estimate=25.0)
    job = await _claim(db_sessionmaker)
    assert job is not None
    async with db_sessionmaker() as s, s.begin():
        assert await fail_job(
            s, job_id, 1, worker_id=W, error="Out of GPU memory: try 256p.", detail="OOM at step 3", gpu_seconds=4.0
        )
    assert await _ledger(db_sessionmaker, job_id) == {LedgerKind.RESERVE: 25.0, LedgerKind.REFUND: 25.0}
    async with db_sessionmaker() as s:
        status = await quota_status(s, 7, QuotaPolicy(daily_gpu_seconds=100, max_pending=3))
        job = await get_job(s, job_id)
        assert await ledger_consistent(s, 7)
    assert (status.used, status.reserved, status.remaining) == (0.0, 0.0, 100.0)
    assert job.status == JobStatus.FAILED and job.error == "Out of GPU memory: try 256p."
    assert job.error_detail == "OOM at step 3" and job.gpu_seconds == 4.0


async def test_round_robin_second_user_runs_second(db_sessionmaker: Sessions) -> None:
    a_ids = [await _enqueue(db_sessionmaker, 1) for _ in range(10)]
    b_id = await _enqueue(db_sessionmaker, 2)
    order = []
    while (job := await _claim(db_sessionmaker)) is not None:
        order.append(job.id)
    assert order[0] == a_ids[0]
    assert order[1] == b_id
    assert order[2:] == a_ids[1:]


async def test_round_robin_interleaves_users_that_arrive_later(db_sessionmaker: Sessions) -> None:
    a_ids = [await _enqueue(db_sessionmaker, 1) for _ in range(6)]
    first = [await _claim(db_sessionmaker) for _ in range(3)]
    assert [j.id for j in first if j] == a_ids[:3]
    c_ids = [await _enqueue(db_sessionmaker, 3) for _ in range(3)]
    order = []
    while (job := await _claim(db_sessionmaker)) is not None:
        order.append(job.id)
    # A's next job was queued long before C's: C's first job takes A's next turn, then they alternate.
    assert order == [c_ids[0], a_ids[3], c_ids[1], a_ids[4], c_ids[2], a_ids[5]]


async def test_admin_priority(db_sessionmaker: Sessions) -> None:
    normal = [await _enqueue(db_sessionmaker, u) for u in (1, 2, 3)]
    admin_policy = QuotaPolicy(daily_gpu_seconds=1e9, max_pending=100, is_admin=True)
    admin_job = await _enqueue(db_sessionmaker, 9, admin_policy)
    order = []
    while (job := await _claim(db_sessionmaker)) is not None:
        order.append(job.id)
    assert order == [admin_job, *normal]


async def test_cancel_queued_refunds(db_sessionmaker: Sessions) -> None:
    job_id = await _enqueue(db_sessionmaker, 5, cost_estimate=30.0)
    async with db_sessionmaker() as s, s.begin():
        assert await cancel_job(s, job_id) == CancelOutcome.CANCELLED
    assert await _ledger(db_sessionmaker, job_id) == {LedgerKind.RESERVE: 30.0, LedgerKind.REFUND: 30.0}
    assert await _claim(db_sessionmaker) is None
    async with db_sessionmaker() as s, s.begin():
        assert await cancel_job(s, job_id) == CancelOutcome.TOO_LATE
        with pytest.raises(JobNotFound, match="no job with id 987654"):
            await cancel_job(s, 987654)
        status = await quota_status(s, 5, QuotaPolicy(daily_gpu_seconds=100, max_pending=3))
    assert (status.used, status.reserved, status.pending) == (0.0, 0.0, 0)


async def test_cancel_running_flags_worker_which_stops_and_is_charged_time_used(db_sessionmaker: Sessions) -> None:
    job_id = await _enqueue(db_sessionmaker, 5, cost_estimate=30.0)
    job = await _claim(db_sessionmaker)
    assert job is not None
    async with db_sessionmaker() as s, s.begin():
        assert await cancel_job(s, job_id) == CancelOutcome.REQUESTED
    async with db_sessionmaker() as s, s.begin():
        ack = await report_progress(s, job_id, 1, worker_id=W, step=3, total=50, phase="denoising", lease_seconds=LEASE)
    assert ack.ok and ack.cancel_requested  # the worker learns at its next step
    async with db_sessionmaker() as s, s.begin():
        assert await finish_cancelled(s, job_id, 1, worker_id=W, gpu_seconds=6.0)
    assert await _ledger(db_sessionmaker, job_id) == {
        LedgerKind.RESERVE: 30.0,
        LedgerKind.RELEASE: 30.0,
        LedgerKind.CHARGE: 6.0,
    }
    async with db_sessionmaker() as s:
        status = await quota_status(s, 5, QuotaPolicy(daily_gpu_seconds=100, max_pending=3))
        assert (await get_job(s, job_id)).status == JobStatus.CANCELLED
    assert (status.used, status.reserved) == (6.0, 0.0)


async def test_dead_claimer_is_rescued_and_its_late_writes_are_fenced(db_sessionmaker: Sessions) -> None:
    job_id = await _enqueue(db_sessionmaker, 5, cost_estimate=30.0)
    t0 = utcnow()
    first = await _claim(db_sessionmaker, "dead-worker", lease=5, now=t0)
    assert first is not None and first.attempt == 1
    async with db_sessionmaker() as s, s.begin():  # nothing expired yet
        assert await rescue_expired(s, now=t0 + timedelta(seconds=4)) == []
    async with db_sessionmaker() as s, s.begin():  # the first claimer stopped renewing
        assert await rescue_expired(s, now=t0 + timedelta(seconds=6)) == [job_id]
    second = await _claim(db_sessionmaker, "live-worker", now=t0 + timedelta(seconds=7))
    assert second is not None and second.id == job_id and second.attempt == 2 and second.worker_id == "live-worker"
    async with db_sessionmaker() as s, s.begin():
        late = await report_progress(
            s, job_id, 1, worker_id="dead-worker", step=40, total=50, phase="denoising", lease_seconds=LEASE
        )
        assert not late.ok
        assert not await finish_job(s, job_id, 1, worker_id="dead-worker", video=b"v" * 1, gpu_seconds=50)
        assert not await fail_job(s, job_id, 1, worker_id="dead-worker", error="x", detail="zombie", gpu_seconds=1)
        assert not await release_job(s, job_id, 1, worker_id="dead-worker")
    async with db_sessionmaker() as s, s.begin():
        assert (
            await report_progress(
                s, job_id, 2, worker_id="live-worker", step=1, total=50, phase="denoising", lease_seconds=LEASE
            )
        ).ok
        assert await finish_job(s, job_id, 2, worker_id="live-worker", video=b"v" * 10, gpu_seconds=20)
    async with db_sessionmaker() as s:
        job = await get_job(s, job_id)
        charges = await s.scalar(
            select(func.count()).where(QuotaLedger.job_id == job_id, QuotaLedger.kind == LedgerKind.CHARGE)
        )
    assert job.status == JobStatus.SUCCEEDED and job.output_bytes == 10 and job.attempt == 2
    assert charges == 1


async def test_rescue_fails_after_max_attempts_and_refunds(db_sessionmaker: Sessions) -> None:
    job_id = await _enqueue(db_sessionmaker, 5, cost_estimate=30.0, max_attempts=2)
    t = utcnow()
    for attempt in (1, 2):
        job = await _claim(db_sessionmaker, f"w{attempt}", lease=5, now=t)
        assert job is not None and job.attempt == attempt
        t += timedelta(seconds=10)
        async with db_sessionmaker() as s, s.begin():
            assert await rescue_expired(s, now=t) == [job_id]
    async with db_sessionmaker() as s:
        job = await get_job(s, job_id)
    assert job.status == JobStatus.FAILED and "2 tries" in (job.error or "")
    assert await _ledger(db_sessionmaker, job_id) == {LedgerKind.RESERVE: 30.0, LedgerKind.REFUND: 30.0}


async def test_rescue_hard_deadline_even_with_fresh_lease(db_sessionmaker: Sessions) -> None:
    job_id = await _enqueue(db_sessionmaker, 5, cost_estimate=300.0)
    t0 = utcnow()
    assert await _claim(db_sessionmaker, lease=60, now=t0) is not None
    t = t0 + timedelta(seconds=899)  # 3 x 300 s estimate = 900 s deadline
    async with db_sessionmaker() as s, s.begin():
        assert (
            await report_progress(
                s, job_id, 1, worker_id=W, step=1, total=50, phase="denoising", lease_seconds=60, now=t
            )
        ).ok
        assert await rescue_expired(s, now=t) == []
    async with db_sessionmaker() as s, s.begin():
        assert await rescue_expired(s, now=t0 + timedelta(seconds=901)) == [job_id]


async def test_rescue_of_cancel_requested_job_cancels_it(db_sessionmaker: Sessions) -> None:
    job_id = await _enqueue(db_sessionmaker, 5, cost_estimate=30.0)
    t0 = utcnow()
    assert await _claim(db_sessionmaker, lease=5, now=t0) is not None
    async with db_sessionmaker() as s, s.begin():
        assert await cancel_job(s, job_id) == CancelOutcome.REQUESTED
    async with db_sessionmaker() as s, s.begin():
        assert await rescue_expired(s, now=t0 + timedelta(seconds=6)) == [job_id]
        assert (await get_job(s, job_id)).status == JobStatus.CANCELLED
    assert await _ledger(db_sessionmaker, job_id) == {LedgerKind.RESERVE: 30.0, LedgerKind.REFUND: 30.0}


async def test_release_job_gives_it_back_without_burning_an_attempt(db_sessionmaker: Sessions) -> None:
    """A give-back is counted in ``releases``; ``attempt`` never goes down, so the stale attempt's number can never
    match the next claim, and the give-back does not use up one of ``max_attempts``."""
    job_id = await _enqueue(db_sessionmaker, 5, max_attempts=1)
    job = await _claim(db_sessionmaker)
    assert job is not None and job.attempt == 1
    async with db_sessionmaker() as s, s.begin():
        assert await release_job(s, job_id, 1, worker_id=W)
    again = await _claim(db_sessionmaker, "w2")
    assert again is not None and again.id == job_id and again.attempt == 2 and again.releases == 1
    async with db_sessionmaker() as s, s.begin():  # the first attempt's late write cannot match the second
        assert not (
            await report_progress(s, job_id, 1, worker_id=W, step=1, total=50, phase="denoising", lease_seconds=LEASE)
        ).ok
        assert await finish_job(s, job_id, 2, worker_id="w2", video=b"mp4", gpu_seconds=1.0)
    assert await _ledger(db_sessionmaker, job_id) == {
        LedgerKind.RESERVE: 10.0,
        LedgerKind.RELEASE: 10.0,
        LedgerKind.CHARGE: 1.0,
    }


async def test_pause_resume(db_sessionmaker: Sessions) -> None:
    job_id = await _enqueue(db_sessionmaker, 5)
    async with db_sessionmaker() as s, s.begin():
        assert await pause_queue(s, by=900, reason="GPU maintenance")
        assert not await pause_queue(s, by=900)  # already paused
    async with db_sessionmaker() as s:
        assert await is_paused(s)
    assert await _claim(db_sessionmaker) is None
    held_id = await _enqueue(db_sessionmaker, 6)  # a pause holds new requests: queued, not refused
    assert await _claim(db_sessionmaker) is None
    async with db_sessionmaker() as s, s.begin():
        assert await resume_queue(s, by=900)
    job = await _claim(db_sessionmaker)
    assert job is not None and job.id == job_id
    job = await _claim(db_sessionmaker, "w2")
    assert job is not None and job.id == held_id
    async with db_sessionmaker() as s:
        actions = [a.action for a in await list_actions(s)]
    assert actions[:3] == ["resume_queue", "pause_queue", "pause_queue"]


async def test_clear_cancels_queued_with_refund_and_leaves_running(db_sessionmaker: Sessions) -> None:
    running_id = await _enqueue(db_sessionmaker, 1)
    assert (await _claim(db_sessionmaker)) is not None
    queued = [await _enqueue(db_sessionmaker, u) for u in (1, 2, 2, 3)]
    async with db_sessionmaker() as s, s.begin():
        assert await clear_queue(s, by=900) == sorted(queued)
    async with db_sessionmaker() as s:
        jobs = {j: await get_job(s, j) for j in [running_id, *queued]}
        audit = await list_actions(s, action="clear_queue")
        for user in (1, 2, 3):
            assert await ledger_consistent(s, user)
    assert jobs[running_id].status == JobStatus.RUNNING
    assert all(jobs[j].status == JobStatus.CANCELLED for j in queued)
    for j in queued:
        assert await _ledger(db_sessionmaker, j) == {LedgerKind.RESERVE: 10.0, LedgerKind.REFUND: 10.0}
    assert audit[0].actor_id == 900 and audit[0].detail == {"cancelled": 4}
    assert await _claim(db_sessionmaker) is None


async def test_mark_delivered_exactly_once(db_sessionmaker: Sessions) -> None:
    job_id = await _enqueue(db_sessionmaker, 5)
    async with db_sessionmaker() as s, s.begin():
        assert not await mark_delivered(s, job_id, result_message_id=1)  # not finished yet
    job = await _claim(db_sessionmaker)
    assert job is not None
    async with db_sessionmaker() as s, s.begin():
        assert await finish_job(s, job_id, 1, worker_id=W, video=b"v" * 5, gpu_seconds=3)
    async with db_sessionmaker() as s:
        assert [j.id for j in await undelivered_jobs(s)] == [job_id]
    # Two deliverers race: exactly one wins.
    s1, s2 = db_sessionmaker(), db_sessionmaker()
    try:
        await s1.begin()
        won1 = await mark_delivered(s1, job_id, result_message_id=111)
        await s1.commit()
        await s2.begin()
        won2 = await mark_delivered(s2, job_id, result_message_id=222)
        await s2.commit()
    finally:
        await s1.close()
        await s2.close()
    assert (won1, won2) == (True, False)
    async with db_sessionmaker() as s:
        job = await get_job(s, job_id)
        assert await undelivered_jobs(s) == []
    assert job.result_message_id == 111 and job.delivered_at is not None


async def test_failed_and_cancelled_jobs_need_a_notice_too(db_sessionmaker: Sessions) -> None:
    cancelled = await _enqueue(db_sessionmaker, 5)
    failed = await _enqueue(db_sessionmaker, 6)
    async with db_sessionmaker() as s, s.begin():
        await cancel_job(s, cancelled)
    job = await _claim(db_sessionmaker)
    assert job is not None and job.id == failed
    async with db_sessionmaker() as s, s.begin():
        await fail_job(s, failed, 1, worker_id=W, error="bad", detail="", gpu_seconds=0)
    async with db_sessionmaker() as s:
        assert {j.id for j in await undelivered_jobs(s)} == {cancelled, failed}


async def test_position_and_eta(db_sessionmaker: Sessions) -> None:
    t0 = utcnow()
    async with db_sessionmaker() as s, s.begin():
        await upsert_worker(
            s,
            "w1",
            host="gpu1",
            pid=100,
            state=WorkerState.BUSY,
            gpu_name="RTX 4090",
            gpu_memory_bytes=24 * 2**30,
            current_job_id=None,
            now=t0,
        )
    running = await _enqueue(db_sessionmaker, 1, cost_estimate=100.0)
    a = await _enqueue(db_sessionmaker, 2, cost_estimate=20.0)
    b = await _enqueue(db_sessionmaker, 3, cost_estimate=30.0)
    assert (await _claim(db_sessionmaker, now=t0)) is not None
    async with db_sessionmaker() as s, s.begin():
        await report_progress(
            s, running, 1, worker_id=W, step=25, total=50, phase="denoising", lease_seconds=LEASE, now=t0
        )
    async with db_sessionmaker() as s:
        pr = await queue_position(s, running, now=t0)
        pa = await queue_position(s, a, now=t0)
        pb = await queue_position(s, b, now=t0)
    assert pr.position == 0 and pr.eta_seconds == pytest.approx(50.0)
    assert pa.position == 1 and pa.eta_seconds == pytest.approx(50.0 + 20.0)
    assert pb.position == 2 and pb.eta_seconds == pytest.approx(50.0 + 20.0 + 30.0)
    async with db_sessionmaker() as s, s.begin():
        await finish_job(s, running, 1, worker_id=W, video=b"v" * 1, gpu_seconds=1)
        assert await queue_position(s, running) == QueuePosition(None, None)


async def test_worker_registry_counts_restarts(db_sessionmaker: Sessions) -> None:
    t0 = utcnow()
    job_id = await _enqueue(db_sessionmaker, 1)
    async with db_sessionmaker() as s, s.begin():
        await upsert_worker(
            s,
            "gpu-0",
            host="h",
            pid=10,
            state="loading",
            gpu_name=None,
            gpu_memory_bytes=None,
            current_job_id=None,
            now=t0,
        )
    async with db_sessionmaker() as s, s.begin():
        await upsert_worker(
            s,
            "gpu-0",
            host="h",
            pid=10,
            state=WorkerState.BUSY,
            gpu_name="H100",
            gpu_memory_bytes=80 * 2**30,
            current_job_id=job_id,
            now=t0 + timedelta(seconds=5),
        )
    async with db_sessionmaker() as s, s.begin():
        await upsert_worker(
            s,
            "gpu-0",
            host="h",
            pid=11,
            state=WorkerState.IDLE,
            gpu_name="H100",
            gpu_memory_bytes=80 * 2**30,
            current_job_id=None,
            now=t0 + timedelta(seconds=9),
        )
        await upsert_worker(
            s,
            "gpu-1",
            host="h2",
            pid=5,
            state=WorkerState.IDLE,
            gpu_name="L4",
            gpu_memory_bytes=None,
            current_job_id=None,
            now=t0 + timedelta(seconds=1),
        )
    async with db_sessionmaker() as s:
        workers = await list_workers(s)
    assert [w.id for w in workers] == ["gpu-0", "gpu-1"]
    w = workers[0]
    assert (w.restarts, w.pid, w.state, w.gpu_name, w.current_job_id) == (1, 11, WorkerState.IDLE, "H100", None)
    assert w.last_heartbeat_at == t0 + timedelta(seconds=9)
    with pytest.raises(ValueError, match="pid"):
        async with db_sessionmaker() as s:
            await upsert_worker(
                s, "x", host="h", pid=0, state="idle", gpu_name=None, gpu_memory_bytes=None, current_job_id=None
            )


async def test_bad_arguments_are_named(db_sessionmaker: Sessions) -> None:
    async with db_sessionmaker() as s:
        with pytest.raises(ValueError, match="lease_seconds"):
            await claim_next_job(s, "w", lease_seconds=0)
        with pytest.raises(ValueError, match="worker_id"):
            await claim_next_job(s, "", lease_seconds=5)
        with pytest.raises(ValueError, match="gpu_seconds"):
            await finish_job(s, 1, 1, worker_id=W, video=b"v" * 1, gpu_seconds=-1)
        with pytest.raises(ValueError, match="step 9 of 5"):
            await report_progress(s, 1, 1, worker_id=W, step=9, total=5, phase="denoising", lease_seconds=5)
        with pytest.raises(ValueError, match="JobPhase"):
            await report_progress(s, 1, 1, worker_id=W, step=1, total=5, phase="x", lease_seconds=5)
    with pytest.raises(ValueError, match="frames"):
        new_job(1, frames=0)
    with pytest.raises(ValueError, match="input_sha256"):
        new_job(1, input_sha256="abc")


async def test_user_jobs_status_message_and_audit_listing(db_sessionmaker: Sessions) -> None:
    first = await _enqueue(db_sessionmaker, 4)
    second = await _enqueue(db_sessionmaker, 4)
    await _enqueue(db_sessionmaker, 5)
    async with db_sessionmaker() as s, s.begin():
        await cancel_job(s, first)
        assert await set_status_message(s, second, status_message_id=777)
        assert not await set_status_message(s, 424242, status_message_id=1)
    async with db_sessionmaker() as s:
        assert [j.id for j in await user_jobs(s, 4)] == [second]
        assert [j.id for j in await user_jobs(s, 4, pending_only=False)] == [second, first]
        assert (await get_job(s, second)).status_message_id == 777
        with pytest.raises(JobNotFound):
            await get_job(s, 424242)
    async with db_sessionmaker() as s, s.begin():
        await record_action(s, actor_id=1, action="note", target_user_id=4, guild_id=9, job_id=second, detail={"k": 1})
        await record_action(s, actor_id=None, action="system_note")
        with pytest.raises(ValueError, match="action"):
            await record_action(s, actor_id=1, action="")
    async with db_sessionmaker() as s:
        assert [a.action for a in await list_actions(s, guild_id=9)] == ["note"]
        assert (await list_actions(s, limit=1))[0].action == "system_note"
        with pytest.raises(ValueError, match="limit"):
            await list_actions(s, limit=0)
