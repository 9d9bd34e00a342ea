"""Read-only listings, a page at a time: the queue and the audit log behind ``/admin queue`` and ``/admin log``, and
one user's finished videos behind the web page's gallery.

The page is its own delivery: a web job is "delivered" (``delivered_at``) once it finished, since the page shows
and downloads the video from the store (``jobs.blobs``); the Discord side never posts web jobs
(:func:`undelivered_web_jobs`).

Each function takes an :class:`~sqlalchemy.ext.asyncio.AsyncSession`; the caller owns the transaction. Nothing
here writes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from sqlalchemy import ColumnElement, String, case, cast, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import Over

from generator.model_spaces import display_name
from jobs.control import is_paused
from jobs.models import CLAIM_ORDER, TERMINAL_STATUSES, AuditLog, Job, JobSource, JobStatus, JobVideo

DEFAULT_QUEUE_PAGE_SIZE = 10  # jobs per /admin queue page
MAX_QUEUE_PAGE_SIZE = 25  # jobs, one embed's worth
DEFAULT_AUDIT_PAGE_SIZE = 15  # audit rows per /admin log page
MAX_AUDIT_PAGE_SIZE = 50  # audit rows
MAX_JOB_CHOICES = 25  # Discord shows at most 25 autocomplete choices
NO_PRESET = "custom"  # label for jobs whose parameters were all given explicitly


# --------------------------------------------------------------------------------------------------- the queue


@dataclass(frozen=True, kw_only=True)
class QueueEntry:
    """One queued or running job as ``/admin queue`` shows it."""

    job_id: int
    user_id: int
    guild_id: int | None
    status: JobStatus
    position: int | None  # 1 = claimed next; None while running
    prompt: str
    model: str
    preset: str | None
    resolution: str
    frames: int
    fps: int
    steps: int
    seed: int
    priority: int
    attempt: int
    created_at: datetime
    started_at: datetime | None
    progress_step: int
    progress_total: int
    phase: str
    worker_id: str | None
    cancel_requested: bool

    def age_seconds(self, now: datetime) -> float:
        """Seconds since the job was queued."""
        return max(0.0, (now - self.created_at).total_seconds())

    @property
    def summary(self) -> str:
        """A one-line summary of the parameters, e.g. ``I2VGen-XL quick 512p 8f 30 steps 8 fps seed 5``."""
        preset = self.preset or NO_PRESET
        return (
            f"{display_name(self.model)} {preset} {self.resolution} {self.frames}f {self.steps} steps "
            f"{self.fps} fps seed {self.seed}"
        )


@dataclass(frozen=True, kw_only=True)
class JobChoice:
    """A queued or running job as a job-id autocomplete offers it."""

    job_id: int
    user_id: int
    status: JobStatus
    prompt: str


async def cancellable_jobs(
    session: AsyncSession,
    *,
    search: str = "",
    user_id: int | None = None,
    guild_id: int | None = None,
    limit: int = MAX_JOB_CHOICES,
) -> list[JobChoice]:
    """Queued and running jobs, newest first, for the job-id autocomplete of the cancel commands: ``user_id``'s
    only, ``guild_id``'s only, or (both None) every server's. ``search`` is what the user typed so far: a job
    number's first digits (``#`` optional) or a piece of the prompt (case-insensitive)."""
    stmt = (
        select(Job.id, Job.user_id, Job.status, Job.prompt)
        .where(Job.status.in_((JobStatus.QUEUED, JobStatus.RUNNING)))
        .order_by(Job.id.desc())
        .limit(max(1, min(limit, MAX_JOB_CHOICES)))
    )
    if user_id is not None:
        stmt = stmt.where(Job.user_id == user_id)
    if guild_id is not None:
        stmt = stmt.where(Job.guild_id == guild_id)
    text = search.strip()
    if text:
        digits = text.removeprefix("#").strip()
        by_prompt = func.lower(Job.prompt).contains(text.lower(), autoescape=True)
        stmt = stmt.where(or_(cast(Job.id, String).startswith(digits), by_prompt) if digits.isdigit() else by_prompt)
    rows = (await session.execute(stmt)).all()
    return [JobChoice(job_id=row.id, user_id=row.user_id, status=row.status, prompt=row.prompt) for row in rows]


class _Listing(Protocol):
    """What :class:`_Paged` reads of a page: ``total`` is a field of some pages and a property of others."""

    @property
    def offset(self) -> int: ...

    @property
    def limit(self) -> int: ...

    @property
    def total(self) -> int: ...


class _Paged:
    """``page`` and ``pages`` of a listing page that has ``offset``, ``limit`` and ``total``."""

    @property
    def page(self: _Listing) -> int:
        """This page's number, from 0."""
        return self.offset // self.limit

    @property
    def pages(self: _Listing) -> int:
        """How many pages the listing has (at least 1)."""
        return max(1, math.ceil(self.total / self.limit))


@dataclass(frozen=True, kw_only=True)
class QueuePage(_Paged):
    """A page of the queue: running jobs first, then queued jobs in claim order."""

    entries: list[QueueEntry]
    offset: int
    limit: int
    running: int  # running jobs in scope (all pages)
    queued: int  # queued jobs in scope (all pages)
    paused: bool

    @property
    def total(self) -> int:
        """Pending (running + queued) jobs in scope."""
        return self.running + self.queued


def _claim_order_position() -> Over[int]:
    """``row_number()`` over the queued jobs in the order ``jobs.transitions.claim_next_job`` claims them."""
    return func.row_number().over(order_by=CLAIM_ORDER)


def _check_page(listing: str, offset: int, limit: int, max_limit: int) -> None:
    """A ValueError naming ``listing`` unless ``offset >= 0`` and ``1 <= limit <= max_limit``."""
    if offset < 0:
        raise ValueError(f"{listing}: offset must be >= 0, got {offset}")
    if not 1 <= limit <= max_limit:
        raise ValueError(f"{listing}: limit must be in 1..{max_limit}, got {limit}")


async def queue_page(
    session: AsyncSession,
    *,
    offset: int = 0,
    limit: int = DEFAULT_QUEUE_PAGE_SIZE,
    guild_id: int | None = None,
) -> QueuePage:
    """The running and queued jobs, running first (oldest start first), then queued in claim order.

    ``position`` is the job's place in the whole queue (1 = next to be claimed), also when ``guild_id`` limits
    the listing to one server's jobs.

    Raises
    ------
    ValueError
        ``offset`` is negative or ``limit`` is not in 1..MAX_QUEUE_PAGE_SIZE.
    """
    _check_page("queue_page", offset, limit, MAX_QUEUE_PAGE_SIZE)

    ranked = (
        select(Job.id.label("job_id"), _claim_order_position().label("position"))
        .where(Job.status == JobStatus.QUEUED)
        .subquery("ranked")
    )
    scope: list[ColumnElement[bool]] = [Job.status.in_((JobStatus.QUEUED, JobStatus.RUNNING))]
    if guild_id is not None:
        scope.append(Job.guild_id == guild_id)

    counted = await session.execute(select(Job.status, func.count()).where(*scope).group_by(Job.status))
    counts = {status: count for status, count in counted}
    running = int(counts.get(JobStatus.RUNNING, 0))
    queued = int(counts.get(JobStatus.QUEUED, 0))

    # Running first by start time; queued after, by claim position (a requeued job keeps an old started_at,
    # so started_at only orders the running group).
    group = case((Job.status == JobStatus.RUNNING, 0), else_=1)
    run_start = case((Job.status == JobStatus.RUNNING, Job.started_at), else_=None)
    rows = await session.execute(
        select(Job, ranked.c.position)
        .outerjoin(ranked, ranked.c.job_id == Job.id)
        .where(*scope)
        .order_by(group, run_start, ranked.c.position, Job.id)
        .offset(offset)
        .limit(limit)
    )
    entries = [_entry(job, position) for job, position in rows]
    return QueuePage(
        entries=entries, offset=offset, limit=limit, running=running, queued=queued, paused=await is_paused(session)
    )


def _entry(job: Job, position: int | None) -> QueueEntry:
    return QueueEntry(
        job_id=job.id,
        user_id=job.user_id,
        guild_id=job.guild_id,
        status=job.status,
        position=int(position) if position is not None and job.status == JobStatus.QUEUED else None,
        prompt=job.prompt,
        model=job.model,
        preset=job.preset,
        resolution=job.resolution,
        frames=job.frames,
        fps=job.fps,
        steps=job.steps,
        seed=job.seed,
        priority=job.priority,
        attempt=job.attempt,
        created_at=job.created_at,
        started_at=job.started_at,
        progress_step=job.progress_step,
        progress_total=job.progress_total,
        phase=job.phase.value,
        worker_id=job.worker_id,
        cancel_requested=job.cancel_requested,
    )


# -------------------------------------------------------------------------------------------------- audit log


@dataclass(frozen=True, kw_only=True)
class AuditPage(_Paged):
    """A page of the audit log, newest first."""

    rows: list[AuditLog]
    offset: int
    limit: int
    total: int


async def audit_page(
    session: AsyncSession,
    *,
    offset: int = 0,
    limit: int = DEFAULT_AUDIT_PAGE_SIZE,
    guild_id: int | None = None,
    with_bot_wide: bool = True,
) -> AuditPage:
    """Audit rows newest first (ties broken by id, so actions in one second keep their order).

    ``guild_id`` keeps the rows recorded for that guild plus the bot-wide ones (``guild_id`` NULL: bans, user
    quotas, the queue switch), since those affect every server; ``with_bot_wide=False`` keeps only the guild's
    own rows (a server admin's view: the operator's bot-wide actions are not theirs to read).

    Raises
    ------
    ValueError
        ``offset`` is negative or ``limit`` is not in 1..MAX_AUDIT_PAGE_SIZE.
    """
    _check_page("audit_page", offset, limit, MAX_AUDIT_PAGE_SIZE)
    scope: list[ColumnElement[bool]] = (
        [] if guild_id is None else [(AuditLog.guild_id == guild_id) | AuditLog.guild_id.is_(None)]
    )
    if guild_id is not None and not with_bot_wide:
        scope = [AuditLog.guild_id == guild_id]
    total = await session.scalar(select(func.count()).select_from(AuditLog).where(*scope))
    rows = await session.scalars(
        select(AuditLog)
        .where(*scope)
        .order_by(AuditLog.created_at.desc(), AuditLog.id.desc())
        .offset(offset)
        .limit(limit)
    )
    return AuditPage(rows=list(rows), offset=offset, limit=limit, total=int(total or 0))


MAX_GALLERY_PAGE_SIZE = 48  # videos per page


@dataclass(frozen=True)
class GalleryPage:
    """One page of a user's kept videos, newest first."""

    jobs: list[Job]
    offset: int
    limit: int
    total: int


async def user_videos(session: AsyncSession, user_id: int, *, offset: int = 0, limit: int = 12) -> GalleryPage:
    """``user_id``'s succeeded jobs whose video is still kept, newest first (whatever flow made them)."""
    if offset < 0 or not 1 <= limit <= MAX_GALLERY_PAGE_SIZE:
        raise ValueError(f"user_videos: offset >= 0 and limit in 1..{MAX_GALLERY_PAGE_SIZE}, got {offset}, {limit}")
    kept = (Job.user_id == user_id, Job.status == JobStatus.SUCCEEDED)
    total = await session.scalar(select(func.count(Job.id)).join(JobVideo, JobVideo.job_id == Job.id).where(*kept))
    jobs = await session.scalars(
        select(Job)
        .join(JobVideo, JobVideo.job_id == Job.id)
        .where(*kept)
        .order_by(Job.id.desc())
        .offset(offset)
        .limit(limit)
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
