"""What the web page reads about one user's jobs: a page of finished videos, and the web jobs to mark delivered.

The page is its own delivery: a web job is "delivered" (``delivered_at``) once it finished, since the page shows
and downloads the video from the store (``jobs.blobs``); the Discord side never posts web jobs.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from jobs.models import TERMINAL_STATUSES, Job, JobSource, JobStatus, JobVideo

MAX_GALLERY_PAGE_SIZE = 48  # videos per page


@dataclass(frozen=True)
class GalleryPage:
    """One page of a user's kept videos, newest first."""

    jobs: list[Job]
    offset: int
    limit: int
    total: int


def output_filename(job_id: int, when: datetime) -> str:
    """``video_YYYYMMDD_HHMMSS_<job>.mp4`` (UTC): the seed's output name plus the job id (the bot's disk copies
    use the same form)."""
    return f"video_{when.astimezone(timezone.utc):%Y%m%d_%H%M%S}_{job_id}.mp4"


async def user_videos(session: AsyncSession, user_id: int, *, offset: int = 0, limit: int = 12) -> GalleryPage:
    """``user_id``'s succeeded jobs whose video is still kept, newest first (whatever flow made them)."""
    if offset < 0 or not 1 <= limit <= MAX_GALLERY_PAGE_SIZE:
        raise ValueError(f"user_videos: offset >= 0 and limit in 1..{MAX_GALLERY_PAGE_SIZE}, got {offset}, {limit}")
    kept = (Job.user_id == user_id, Job.status == JobStatus.SUCCEEDED)
    total = await session.scalar(select(func.count(Job.id)).join(JobVideo, JobVideo.job_id == Job.id).where(*kept))
    jobs = await session.scalars(
        select(Job).join(JobVideo, JobVideo.job_id == Job.id).where(*kept)
        .order_by(Job.id.desc()).offset(offset).limit(limit)
    )
    return GalleryPage(jobs=list(jobs), offset=offset, limit=limit, total=int(total or 0))


async def undelivered_web_jobs(session: AsyncSession, *, limit: int = 100) -> list[Job]:
    """Finished web jobs not yet marked delivered, oldest first."""
    stmt = (
        select(Job)
        .where(Job.source == JobSource.WEB, Job.status.in_(TERMINAL_STATUSES), Job.delivered_at.is_(None))
        .order_by(Job.finished_at, Job.id)
        .limit(limit)
    )
    return list((await session.scalars(stmt)).all())
