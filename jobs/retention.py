"""Retention and deletion of the stored bytes: input images and finished MP4s.

The job rows stay (statistics, the audit log, the quota ledger); what goes is what the bot keeps of a person's
pictures and videos. Each function runs in the caller's transaction and returns the ids of the jobs whose bytes
it removed, so the caller (the bot, which wrote them) can delete its disk copies too.

- ``prune_finished``: bytes of jobs that finished before a cut-off (the ``RETENTION_DAYS`` setting);
- ``delete_job_video``: one job's MP4 (the Delete button under a video);
- ``delete_user_data``: everything kept of one user (their delete-my-data command, or an operator's), with the
  reports they made and received and the safety check's verdicts on their jobs (``jobs.safety``).

A job's input is released once (``input_released_at``); the image's bytes go with the last job that held it
(``jobs.blobs``), so deleting one person's data never takes an image another person's job still needs.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from jobs.audit import record_action
from jobs.blobs import DATABASE_BLOBS, BlobStore
from jobs.models import PENDING_STATUSES, TERMINAL_STATUSES, Job, JobVideo, utcnow
from jobs.safety import forget_safety_data, prune_safety_data
from jobs.transitions import CancelOutcome, cancel_job

PRUNE_BATCH = 500
"""Jobs pruned per call at most (one transaction stays short; the next pass takes the rest)."""


@dataclass(frozen=True)
class UserDataDeleted:
    """What ``delete_user_data`` did: jobs whose bytes were removed, and running jobs asked to stop (their
    bytes go once they end, with the next deletion or retention pass)."""

    job_ids: list[int]
    still_running: list[int]
    reports: int = 0  # reports the user made or received, deleted (jobs.safety.forget_safety_data)


async def _release_inputs(session: AsyncSession, job_ids: list[int], now: datetime, blobs: BlobStore) -> set[int]:
    """Drop the input reference of these finished jobs (each once); returns the ids that held one."""
    if not job_ids:
        return set()
    rows = (
        await session.execute(
            update(Job)
            .where(Job.id.in_(job_ids), Job.input_released_at.is_(None), Job.status.in_(TERMINAL_STATUSES))
            .values(input_released_at=now)
            .returning(Job.id, Job.input_sha256)
            .execution_options(synchronize_session=False)
        )
    ).all()
    for row in sorted(rows, key=lambda r: r.input_sha256):  # a fixed lock order across concurrent deleters
        await blobs.drop_input(session, row.input_sha256)
    return {row.id for row in rows}


async def _delete_videos(session: AsyncSession, job_ids: list[int], blobs: BlobStore) -> set[int]:
    deleted = set()
    for job_id in job_ids:
        if await blobs.delete_video(session, job_id):
            deleted.add(job_id)
    return deleted


async def _forget_bytes(session: AsyncSession, job_ids: list[int], now: datetime, blobs: BlobStore) -> list[int]:
    released = await _release_inputs(session, job_ids, now, blobs)
    deleted = await _delete_videos(session, job_ids, blobs)
    return sorted(released | deleted)


def _keeps_bytes() -> ColumnElement[bool]:
    """Jobs that still hold an input reference or have a stored video."""
    return or_(Job.input_released_at.is_(None), select(JobVideo.job_id).where(JobVideo.job_id == Job.id).exists())


async def prune_finished(
    session: AsyncSession,
    *,
    finished_before: datetime,
    now: datetime | None = None,
    blobs: BlobStore = DATABASE_BLOBS,
    limit: int = PRUNE_BATCH,
) -> list[int]:
    """Remove the stored input and MP4 of jobs that finished (succeeded, failed or cancelled) before
    ``finished_before`` and were delivered, oldest first, at most ``limit``; queued and running jobs, and finished
    ones not yet delivered, keep theirs. Returns the ids pruned."""
    if finished_before.tzinfo is None:
        raise ValueError("finished_before must be timezone-aware")
    now = now or utcnow()
    ids = list(
        await session.scalars(
            select(Job.id)
            .where(
                Job.status.in_(TERMINAL_STATUSES),
                Job.finished_at < finished_before,
                Job.delivered_at.is_not(None),
                _keeps_bytes(),
            )
            .order_by(Job.finished_at, Job.id)
            .limit(limit)
        )
    )
    await prune_safety_data(session, before=finished_before)  # resolved reports and verdicts age out alike
    return await _forget_bytes(session, ids, now, blobs)


async def delete_job_video(session: AsyncSession, job_id: int, *, blobs: BlobStore = DATABASE_BLOBS) -> bool:
    """Delete one job's stored MP4 (the input stays for re-rolls until retention). False when there was none."""
    return await blobs.delete_video(session, job_id)


async def forget_job_bytes(
    session: AsyncSession, job_id: int, *, now: datetime | None = None, blobs: BlobStore = DATABASE_BLOBS
) -> bool:
    """Delete one job's stored MP4 and release its input image (a reported video an admin deleted: nothing of it
    stays). False when it held neither."""
    return bool(await _forget_bytes(session, [job_id], now or utcnow(), blobs))


async def delete_user_data(
    session: AsyncSession, user_id: int, *, by: int, now: datetime | None = None, blobs: BlobStore = DATABASE_BLOBS
) -> UserDataDeleted:
    """Everything kept of ``user_id``'s images and videos: queued jobs are cancelled (refunded) and lose their
    image with the rest, running ones are asked to stop; audited as ``delete_user_data`` (actor ``by``)."""
    now = now or utcnow()
    pending = (
        await session.execute(
            select(Job.id, Job.status).where(Job.user_id == user_id, Job.status.in_(PENDING_STATUSES)).order_by(Job.id)
        )
    ).all()
    still_running = []
    for row in pending:
        outcome = await cancel_job(session, row.id, now=now)
        if outcome is CancelOutcome.REQUESTED:
            still_running.append(row.id)
    ids = list(
        await session.scalars(
            select(Job.id)
            .where(Job.user_id == user_id, Job.status.in_(TERMINAL_STATUSES), _keeps_bytes())
            .order_by(Job.id)
        )
    )
    done = await _forget_bytes(session, ids, now, blobs)
    reports = await forget_safety_data(session, user_id)  # reports made and received, the classifier's verdicts
    await record_action(
        session,
        actor_id=by,
        action="delete_user_data",
        target_user_id=user_id,
        detail={"jobs": len(done), "still_running": still_running, "reports": reports},
        now=now,
    )
    return UserDataDeleted(job_ids=done, still_running=still_running, reports=reports)
