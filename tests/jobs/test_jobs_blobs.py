"""The bytes in the store, on SQLite and PostgreSQL: inputs stored once per distinct image in the enqueue
transaction and reference-counted, the MP4 stored in the finish transaction, retention and deletion."""

from __future__ import annotations

import asyncio
import hashlib
from datetime import timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from jobs.admission import enqueue_job
from jobs.blobs import DATABASE_BLOBS, MAX_INPUT_BLOB_BYTES, BlobTooLarge
from jobs.errors import InputGone, TooManyPending
from jobs.models import InputImage, Job, JobStatus, JobVideo, utcnow
from jobs.quota import QuotaPolicy
from jobs.retention import delete_job_video, delete_user_data, prune_finished
from jobs.transitions import claim_next_job, fail_job, finish_job, mark_delivered
from tests.jobs.storehelpers import GENEROUS, IMAGE, SHA, new_job
from tests.store_reads import kept_bytes_of_user, list_actions

Sessions = async_sessionmaker[AsyncSession]
LEASE = 60.0
OTHER_IMAGE = b"another picture"
OTHER_SHA = hashlib.sha256(OTHER_IMAGE).hexdigest()
VIDEO = b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 40  # bytes stand in for an MP4: the store keeps bytes


async def _enqueue(
    sessions: Sessions, user_id: int, image: bytes | None = IMAGE, sha: str = SHA, policy: QuotaPolicy = GENEROUS, **kw
) -> int:
    async with sessions() as s, s.begin():
        return (await enqueue_job(s, new_job(user_id, input_sha256=sha, **kw), policy, image=image)).id


async def _inputs(sessions: Sessions) -> dict[str, tuple[int, bytes | None]]:
    async with sessions() as s:
        rows = (await s.execute(select(InputImage.sha256, InputImage.refs, InputImage.data))).all()
    return {r.sha256: (r.refs, r.data) for r in rows}


async def _run_to_success(sessions: Sessions, worker: str = "w1", video: bytes = VIDEO) -> int:
    async with sessions() as s, s.begin():
        job = await claim_next_job(s, worker, lease_seconds=LEASE)
        assert job is not None
        assert await finish_job(s, job.id, job.attempt, worker_id=worker, video=video, gpu_seconds=1.0)
    async with sessions() as s, s.begin():
        assert await mark_delivered(s, job.id, result_message_id=1)
    return job.id


async def test_input_stored_once_per_image_and_video_with_the_finish(db_sessionmaker: Sessions) -> None:
    first = await _enqueue(db_sessionmaker, 1)
    await _enqueue(db_sessionmaker, 2)
    await _enqueue(db_sessionmaker, 3, OTHER_IMAGE, OTHER_SHA)
    assert await _inputs(db_sessionmaker) == {SHA: (2, IMAGE), OTHER_SHA: (1, OTHER_IMAGE)}
    async with db_sessionmaker() as s:
        assert await DATABASE_BLOBS.read_input(s, SHA) == IMAGE
    job_id = await _run_to_success(db_sessionmaker)
    assert job_id == first
    async with db_sessionmaker() as s:
        assert await DATABASE_BLOBS.read_video(s, job_id) == VIDEO
        job = await s.get(Job, job_id)
        assert job is not None and job.status == JobStatus.SUCCEEDED and job.output_bytes == len(VIDEO)


async def test_a_refused_request_stores_nothing(db_sessionmaker: Sessions) -> None:
    strict = QuotaPolicy(daily_gpu_seconds=1e9, max_pending=1)
    await _enqueue(db_sessionmaker, 1, policy=strict)
    with pytest.raises(TooManyPending):
        await _enqueue(db_sessionmaker, 1, OTHER_IMAGE, OTHER_SHA, policy=strict)
    assert await _inputs(db_sessionmaker) == {SHA: (1, IMAGE)}
    with pytest.raises(BlobTooLarge):
        big = b"x" * (MAX_INPUT_BLOB_BYTES + 1)
        await _enqueue(db_sessionmaker, 2, big, hashlib.sha256(big).hexdigest())
    with pytest.raises(ValueError, match="do not hash"):
        await _enqueue(db_sessionmaker, 2, b"not the image", SHA)
    assert await _inputs(db_sessionmaker) == {SHA: (1, IMAGE)}


async def test_concurrent_requests_with_the_same_image_one_refused_the_other_keeps_its_input(
    db_sessionmaker: Sessions,
) -> None:
    """Two users send the same picture at once; one is refused (its transaction rolls back). The other's job still
    finds its input: the refusal cannot delete an image another transaction references."""
    strict = QuotaPolicy(daily_gpu_seconds=1e9, max_pending=1)
    await _enqueue(db_sessionmaker, 2, OTHER_IMAGE, OTHER_SHA, policy=strict)  # user 2 is at their cap already
    results = await asyncio.gather(
        *(_enqueue(db_sessionmaker, user, policy=strict) for user in (1, 2) for _ in range(5)),
        return_exceptions=True,
    )
    accepted = [r for r in results if isinstance(r, int)]
    refused = [r for r in results if isinstance(r, TooManyPending)]
    assert len(accepted) == 1 and len(refused) == 9, results
    assert (await _inputs(db_sessionmaker))[SHA] == (1, IMAGE)
    async with db_sessionmaker() as s:
        assert await DATABASE_BLOBS.read_input(s, SHA) == IMAGE  # what the accepted job's worker will read
    assert accepted[0] in {await _run_to_success(db_sessionmaker) for _ in range(2)}


async def test_reroll_reuses_the_stored_image_or_says_it_is_gone(db_sessionmaker: Sessions) -> None:
    await _enqueue(db_sessionmaker, 1)
    parent = await _run_to_success(db_sessionmaker)
    child = await _enqueue(db_sessionmaker, 1, None, parent_job_id=parent)
    assert (await _inputs(db_sessionmaker))[SHA][0] == 2
    async with db_sessionmaker() as s, s.begin():
        job = await claim_next_job(s, "w1", lease_seconds=LEASE)
        assert job is not None and job.id == child
        assert await fail_job(s, child, job.attempt, worker_id="w1", error="x", detail="", gpu_seconds=0)
        await mark_delivered(s, child, result_message_id=None)
    async with db_sessionmaker() as s, s.begin():
        await delete_user_data(s, 1, by=1)
    assert await _inputs(db_sessionmaker) == {}
    with pytest.raises(InputGone, match=f"job #{parent} is gone"):
        await _enqueue(db_sessionmaker, 1, None, parent_job_id=parent)


async def test_retention_prunes_what_it_should_and_nothing_else(db_sessionmaker: Sessions) -> None:
    old_done = await _enqueue(db_sessionmaker, 1)  # same image as the queued job below
    await _run_to_success(db_sessionmaker)
    undelivered = await _enqueue(db_sessionmaker, 2, OTHER_IMAGE, OTHER_SHA)
    async with db_sessionmaker() as s, s.begin():
        job = await claim_next_job(s, "w1", lease_seconds=LEASE)
        assert job is not None and job.id == undelivered
        assert await finish_job(s, job.id, job.attempt, worker_id="w1", video=VIDEO, gpu_seconds=1.0)
    queued = await _enqueue(db_sessionmaker, 3)
    cutoff = utcnow() + timedelta(seconds=1)  # everything finished so far is "old"
    async with db_sessionmaker() as s, s.begin():
        assert await prune_finished(s, finished_before=cutoff - timedelta(days=1)) == []  # nothing that old
    async with db_sessionmaker() as s, s.begin():
        assert await prune_finished(s, finished_before=cutoff) == [old_done]
    async with db_sessionmaker() as s, s.begin():
        assert await prune_finished(s, finished_before=cutoff) == []  # idempotent
    async with db_sessionmaker() as s:
        videos = set(await s.scalars(select(JobVideo.job_id)))
        jobs = {j.id: j for j in await s.scalars(select(Job))}
    assert videos == {undelivered}  # the finished but undelivered video stays
    assert set(jobs) == {old_done, undelivered, queued}  # the rows stay
    assert jobs[old_done].input_released_at is not None and jobs[queued].input_released_at is None
    # the queued job shares the pruned job's image: it keeps it
    assert await _inputs(db_sessionmaker) == {SHA: (1, IMAGE), OTHER_SHA: (1, OTHER_IMAGE)}


async def test_delete_video_and_delete_user_data_leave_no_bytes(db_sessionmaker: Sessions) -> None:
    first = await _enqueue(db_sessionmaker, 7)
    await _run_to_success(db_sessionmaker)
    await _enqueue(db_sessionmaker, 7, OTHER_IMAGE, OTHER_SHA)
    await _run_to_success(db_sessionmaker)
    other_user = await _enqueue(db_sessionmaker, 8)  # the same picture as user 7's first job, still queued
    queued = await _enqueue(db_sessionmaker, 7, b"third", hashlib.sha256(b"third").hexdigest())
    async with db_sessionmaker() as s, s.begin():
        assert await delete_job_video(s, first)
        assert not await delete_job_video(s, first)
    async with db_sessionmaker() as s:
        assert await DATABASE_BLOBS.read_video(s, first) is None
        assert await kept_bytes_of_user(s, 7) == (3, 1)
    async with db_sessionmaker() as s, s.begin():
        deleted = await delete_user_data(s, 7, by=900)
    assert deleted.still_running == [] and queued in deleted.job_ids
    async with db_sessionmaker() as s:
        assert await kept_bytes_of_user(s, 7) == (0, 0)
        cancelled = await s.get(Job, queued)
        assert cancelled is not None and cancelled.status == JobStatus.CANCELLED
        videos = await s.scalar(select(func.count()).select_from(JobVideo))
        (audit,) = await list_actions(s, action="delete_user_data")
    assert videos == 0 and audit.actor_id == 900 and audit.target_user_id == 7
    assert await _inputs(db_sessionmaker) == {SHA: (1, IMAGE)}  # only user 8's queued job still holds one
    async with db_sessionmaker() as s:
        kept = await s.get(Job, other_user)
        assert kept is not None and kept.input_released_at is None


async def test_byte_ranges_of_a_video_and_an_image_read_only_those_bytes(db_sessionmaker: Sessions) -> None:
    await _enqueue(db_sessionmaker, 1)
    job_id = await _run_to_success(db_sessionmaker)
    async with db_sessionmaker() as s:
        assert await DATABASE_BLOBS.video_size(s, job_id) == len(VIDEO)
        assert await DATABASE_BLOBS.read_video_range(s, job_id, 0, 12) == VIDEO[:12]
        assert await DATABASE_BLOBS.read_video_range(s, job_id, 100, 1000) == VIDEO[100:1100]
        assert await DATABASE_BLOBS.read_video_range(s, job_id, len(VIDEO) - 5, 100) == VIDEO[-5:]  # clipped at the end
        assert await DATABASE_BLOBS.input_size(s, SHA) == len(IMAGE)
        assert await DATABASE_BLOBS.read_input_range(s, SHA, 1, 3) == IMAGE[1:4]
        assert await DATABASE_BLOBS.video_size(s, job_id + 1) is None
        assert await DATABASE_BLOBS.read_video_range(s, job_id + 1, 0, 10) is None
        assert await DATABASE_BLOBS.read_input_range(s, OTHER_SHA, 0, 10) is None
        with pytest.raises(ValueError, match="start >= 0 and length > 0"):
            await DATABASE_BLOBS.read_video_range(s, job_id, -1, 10)
