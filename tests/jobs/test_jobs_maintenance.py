"""The maintenance pass: dead workers noticed in seconds, fencing that cannot repeat, and retention that removes
old bytes and their disk copies only; on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from sqlalchemy import event, func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from jobs.admission import enqueue_job
from jobs.blobs import DATABASE_BLOBS
from jobs.copies import output_filename, write_copy
from jobs.maintenance import RESCUE_INTERVAL_S, Maintenance, maintain, rescue_dead_workers
from jobs.models import Job, JobPhase, JobStatus, JobVideo, LedgerKind, QuotaLedger, Worker, WorkerState, utcnow
from jobs.progress import report_progress
from jobs.queue import queue_position, queue_positions
from jobs.transitions import claim_next_job, finish_job, mark_delivered
from jobs.workers import heartbeat, register_worker, rescue_dead_on_host, upsert_worker
from tests.jobs.storehelpers import GENEROUS, IMAGE, new_job
from tests.store_reads import kept_bytes_of_user

Sessions = async_sessionmaker[AsyncSession]
LEASE = 600.0  # long: these tests are about heartbeats, not leases
DEAD_AFTER = 15.0


async def _enqueue(sessions: Sessions, user_id: int = 1, **kw) -> int:
    async with sessions() as s, s.begin():
        return (await enqueue_job(s, new_job(user_id, **kw), GENEROUS, image=IMAGE)).id


async def _register(sessions: Sessions, worker_id: str, pid: int, host: str = "gpu-a", now=None) -> list[int]:
    async with sessions() as s, s.begin():
        return await register_worker(s, worker_id, host=host, pid=pid, model="tiny", now=now)


async def _claim(sessions: Sessions, worker_id: str, now=None) -> Job:
    async with sessions() as s, s.begin():
        job = await claim_next_job(s, worker_id, lease_seconds=LEASE, now=now)
    assert job is not None
    return job


async def test_stale_worker_finish_after_a_reclaim_is_refused_and_leaves_nothing(db_sessionmaker: Sessions) -> None:
    t0 = utcnow()
    job_id = await _enqueue(db_sessionmaker)
    await _register(db_sessionmaker, "old", 100, now=t0)
    await _register(db_sessionmaker, "new", 200, now=t0)
    stale = await _claim(db_sessionmaker, "old", now=t0)
    async with db_sessionmaker() as s, s.begin():  # "new" heartbeats; "old" went silent
        assert await heartbeat(
            s, "new", pid=200, state=WorkerState.IDLE, current_job_id=None, now=t0 + timedelta(seconds=16)
        )
        assert await rescue_dead_workers(s, dead_after_s=DEAD_AFTER, now=t0 + timedelta(seconds=16)) == [job_id]
    fresh = await _claim(db_sessionmaker, "new", now=t0 + timedelta(seconds=17))
    assert (fresh.id, fresh.attempt, stale.attempt) == (job_id, 2, 1)
    async with db_sessionmaker() as s, s.begin():
        assert not await finish_job(s, job_id, stale.attempt, worker_id="old", video=b"stale mp4", gpu_seconds=9.0)
        # the same attempt number from another worker id cannot match either
        assert not await finish_job(s, job_id, fresh.attempt, worker_id="old", video=b"stale mp4", gpu_seconds=9.0)
        assert not (
            await report_progress(
                s,
                job_id,
                stale.attempt,
                worker_id="old",
                step=5,
                total=50,
                phase=JobPhase.DENOISING,
                lease_seconds=LEASE,
            )
        ).ok
    async with db_sessionmaker() as s:
        job = await s.get(Job, job_id)
        videos = await s.scalar(select(func.count()).select_from(JobVideo))
        charges = await s.scalar(
            select(func.count()).where(QuotaLedger.job_id == job_id, QuotaLedger.kind == LedgerKind.CHARGE)
        )
    assert job is not None and job.status == JobStatus.RUNNING and job.worker_id == "new" and job.attempt == 2
    assert job.progress_step == 0 and (videos, charges) == (0, 0)
    async with db_sessionmaker() as s, s.begin():
        assert await finish_job(s, job_id, fresh.attempt, worker_id="new", video=b"good mp4", gpu_seconds=2.0)
    async with db_sessionmaker() as s:
        assert await DATABASE_BLOBS.read_video(s, job_id) == b"good mp4"


async def test_dead_worker_rescue_spares_live_and_unregistered_workers(db_sessionmaker: Sessions) -> None:
    t0 = utcnow()
    ids = [await _enqueue(db_sessionmaker, user) for user in (1, 2, 3, 4)]
    for name, pid in (("quiet", 1), ("alive", 2), ("stopped", 3)):
        await _register(db_sessionmaker, name, pid, now=t0)
    claimed = {
        name: (await _claim(db_sessionmaker, name, now=t0)).id for name in ("quiet", "alive", "stopped", "no-row")
    }
    at = t0 + timedelta(seconds=DEAD_AFTER + 1)
    async with db_sessionmaker() as s, s.begin():
        await heartbeat(s, "alive", pid=2, state=WorkerState.BUSY, current_job_id=claimed["alive"], now=at)
        await heartbeat(s, "stopped", pid=3, state=WorkerState.STOPPED, current_job_id=None, now=at)
        assert await rescue_dead_workers(s, dead_after_s=DEAD_AFTER, now=t0 + timedelta(seconds=DEAD_AFTER - 1)) == [
            claimed["stopped"]
        ]
        assert await rescue_dead_workers(s, dead_after_s=DEAD_AFTER, now=at) == [claimed["quiet"]]
    async with db_sessionmaker() as s:
        status = {j.id: j.status for j in await s.scalars(select(Job).where(Job.id.in_(ids)))}
    assert status[claimed["alive"]] == JobStatus.RUNNING and status[claimed["no-row"]] == JobStatus.RUNNING
    assert status[claimed["quiet"]] == JobStatus.QUEUED and status[claimed["stopped"]] == JobStatus.QUEUED


async def test_a_new_process_under_a_worker_id_requeues_what_the_old_one_held(db_sessionmaker: Sessions) -> None:
    job_id = await _enqueue(db_sessionmaker)
    assert await _register(db_sessionmaker, "gpu-0", 100) == []
    await _claim(db_sessionmaker, "gpu-0")
    assert await _register(db_sessionmaker, "gpu-0", 101) == [job_id]
    async with db_sessionmaker() as s:
        job = await s.get(Job, job_id)
        worker = await s.get(Worker, "gpu-0")
    assert job is not None and job.status == JobStatus.QUEUED and job.attempt == 1
    assert worker is not None and (worker.pid, worker.restarts, worker.state) == (101, 1, WorkerState.LOADING)
    async with db_sessionmaker() as s, s.begin():  # the old process cannot stamp the new one's row
        assert not await heartbeat(s, "gpu-0", pid=100, state=WorkerState.BUSY, current_job_id=job_id)


async def test_host_rescue_requeues_only_dead_pids_of_this_host(db_sessionmaker: Sessions) -> None:
    ids = [await _enqueue(db_sessionmaker, user) for user in (1, 2, 3)]
    for name, pid, host in (("here-dead", 10, "gpu-a"), ("here-alive", 11, "gpu-a"), ("elsewhere", 10, "gpu-b")):
        await _register(db_sessionmaker, name, pid, host)
        await _claim(db_sessionmaker, name)
    async with db_sessionmaker() as s, s.begin():
        rescued = await rescue_dead_on_host(s, "gpu-a", alive=lambda pid: pid == 11)
    assert rescued == [ids[0]]
    async with db_sessionmaker() as s:
        worker = await s.get(Worker, "here-dead")
    assert worker is not None and worker.state == WorkerState.CRASHED


async def test_queue_positions_come_from_three_statements_whatever_the_length(
    db_engine: AsyncEngine,
    db_sessionmaker: Sessions,
) -> None:
    t0 = utcnow()
    async with db_sessionmaker() as s, s.begin():
        await upsert_worker(
            s,
            "w1",
            host="h",
            pid=1,
            state=WorkerState.BUSY,
            gpu_name=None,
            gpu_memory_bytes=None,
            current_job_id=None,
            now=t0,
        )
    ids = [await _enqueue(db_sessionmaker, 1 + i % 3, cost_estimate=10.0 + i) for i in range(12)]
    running = await _claim(db_sessionmaker, "w1", now=t0)
    statements: list[str] = []

    def count(conn, cursor, statement, *args):
        statements.append(statement)

    event.listen(db_engine.sync_engine, "before_cursor_execute", count)
    try:
        async with db_sessionmaker() as s:
            places = await queue_positions(s, now=t0)
    finally:
        event.remove(db_engine.sync_engine, "before_cursor_execute", count)
    assert len([x for x in statements if x.lstrip().upper().startswith("SELECT")]) == 3  # queued, running, workers
    assert places[running.id].position == 0
    queued = sorted((p.position, job_id) for job_id, p in places.items() if p.position)
    assert [pos for pos, _ in queued] == list(range(1, 12))
    async with db_sessionmaker() as s:
        for job_id in ids:
            assert await queue_position(s, job_id, now=t0) == places[job_id]


async def _delivered_job(sessions: Sessions, user_id: int, age_days: float, outputs: Path) -> int:
    """A job of ``user_id`` that finished ``age_days`` ago and was delivered with a disk copy in ``outputs``."""
    finished = utcnow() - timedelta(days=age_days)
    async with sessions.begin() as s:
        job = await enqueue_job(s, new_job(user_id), GENEROUS, image=IMAGE, now=finished)
        claimed = await claim_next_job(s, "w1", lease_seconds=LEASE, now=finished)
        assert claimed is not None and claimed.id == job.id
        assert await finish_job(s, job.id, 1, worker_id="w1", video=b"mp4", gpu_seconds=1.0, now=finished)
        copy = write_copy(outputs, job.id, finished, b"mp4")
        assert await mark_delivered(s, job.id, result_message_id=9, output_path=str(copy), now=finished)
    return job.id


async def test_maintenance_prunes_old_bytes_and_their_disk_copies_only(
    db_sessionmaker: Sessions, tmp_path: Path
) -> None:
    """Jobs that finished before RETENTION_DAYS lose their stored image and video and their disk copy; a recent
    job keeps all three; the rows stay. A second pass finds nothing; RETENTION_DAYS=0 keeps everything."""
    outputs = tmp_path / "outputs"
    old = await _delivered_job(db_sessionmaker, 1, 40.0, outputs)
    recent = await _delivered_job(db_sessionmaker, 2, 1.0, outputs)
    kept_forever = await maintain(db_sessionmaker, dead_after_s=DEAD_AFTER, retention_days=0, output_dir=outputs)
    assert kept_forever.pruned == [] and kept_forever.cutoff is None and len(list(outputs.iterdir())) == 2

    done = await maintain(db_sessionmaker, dead_after_s=DEAD_AFTER, retention_days=30, output_dir=outputs)
    assert (done.pruned, done.copies_removed, done.dead, done.expired) == ([old], 1, [], [])
    again = await maintain(db_sessionmaker, dead_after_s=DEAD_AFTER, retention_days=30, output_dir=outputs)
    assert again.pruned == [] and again.copies_removed == 0
    async with db_sessionmaker() as s:
        assert await kept_bytes_of_user(s, 1) == (0, 0)
        assert await kept_bytes_of_user(s, 2) == (1, 1)
        assert await DATABASE_BLOBS.read_input(s, new_job(2).input_sha256) == IMAGE
        assert await s.scalar(select(func.count(Job.id))) == 2
        recent_job = await s.get(Job, recent)
        assert recent_job is not None
        finished_recent = recent_job.finished_at
    assert [p.name for p in outputs.iterdir()] == [output_filename(recent, finished_recent)]


async def test_maintenance_pass_rescues_dead_workers_jobs(db_sessionmaker: Sessions, tmp_path: Path) -> None:
    """A worker that stopped heartbeating: the pass requeues its job and says so."""
    long_ago = utcnow() - timedelta(seconds=10 * DEAD_AFTER)
    job_id = await _enqueue(db_sessionmaker)
    await _register(db_sessionmaker, "w-dead", 41, now=long_ago)
    await _claim(db_sessionmaker, "w-dead", now=long_ago)
    done = await maintain(db_sessionmaker, dead_after_s=DEAD_AFTER, retention_days=30, output_dir=tmp_path, prune=False)
    assert done.dead == [job_id] and done.cutoff is None
    async with db_sessionmaker() as s:
        rescued = await s.get(Job, job_id)
        assert rescued is not None and rescued.status == JobStatus.QUEUED


async def test_maintenance_schedule_rescues_every_interval_and_prunes_every_retention_interval(
    db_sessionmaker: Sessions, tmp_path: Path
) -> None:
    """``Maintenance.run_due``: the first call runs a full pass; another within RESCUE_INTERVAL_S runs nothing;
    later calls rescue, and prune again only once the retention interval passed."""
    clock = [1000.0]
    schedule = Maintenance(
        db_sessionmaker,
        dead_after_s=DEAD_AFTER,
        retention_days=30,
        retention_interval_s=60.0,
        output_dir=tmp_path,
        clock=lambda: clock[0],
    )
    first = await schedule.run_due()
    assert first is not None and first.cutoff is not None
    assert await schedule.run_due() is None
    clock[0] += RESCUE_INTERVAL_S
    rescue_only = await schedule.run_due()
    assert rescue_only is not None and rescue_only.cutoff is None
    old = await _delivered_job(db_sessionmaker, 1, 40.0, tmp_path)
    clock[0] += 60.0
    pruning = await schedule.run_due()
    assert pruning is not None and pruning.pruned == [old] and pruning.copies_removed == 1
