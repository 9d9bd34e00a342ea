"""Operator actions shared by the Discord commands and the web console, each audited in the caller's transaction.

Bans (:func:`ban_and_settle`): the user's new requests are refused with the reason (``jobs.queue.enqueue_job``);
their queued jobs are cancelled and refunded at once; a running job is left to finish and is delivered, but it is
not retried: if its worker dies, the lease rescue fails it (refunded) instead of putting it back in the queue.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from jobs.audit import record_action
from jobs.models import AUDIT_SCOPE_BOT, AUDIT_SCOPE_SERVER, Job, JobStatus, UserLimit
from jobs.quota import ban_user
from jobs.transitions import CancelOutcome, cancel_job


async def cancel_audited(session: AsyncSession, job: Job, *, by: int, bot_wide: bool) -> CancelOutcome:
    """Cancel ``job`` for an admin, audited as ``cancel_job`` with its scope (``bot`` for the operator)."""
    outcome = await cancel_job(session, job.id)
    await record_action(
        session,
        actor_id=by,
        action="cancel_job",
        target_user_id=job.user_id,
        guild_id=job.guild_id,
        job_id=job.id,
        detail={"outcome": outcome.value},
        scope=AUDIT_SCOPE_BOT if bot_wide else AUDIT_SCOPE_SERVER,
    )
    return outcome


@dataclass(frozen=True)
class BanOutcome:
    """What a ban did to the user's jobs."""

    newly_banned: bool
    cancelled_job_ids: list[int]
    running_job_ids: list[int]


async def ban_and_settle(session: AsyncSession, user_id: int, *, reason: str | None, by: int) -> BanOutcome:
    """Ban ``user_id`` from the bot (every server: the operator's power) and settle their jobs, in the caller's
    transaction.

    - New requests are refused with ``reason`` (``enqueue_job`` raises ``Banned``).
    - Queued jobs are cancelled and refunded now (``cancel_job``).
    - A running job is left to finish and is delivered, but is not retried: its ``max_attempts`` is lowered to
      the current attempt, so if its worker dies the lease rescue fails it (refunded) instead of requeueing it.

    Audited as ``ban_user`` (by ``jobs.quota.ban_user``) and, when jobs were touched, ``ban_settle_jobs``.
    """
    previous = await session.get(UserLimit, user_id)
    newly_banned = not (previous is not None and previous.banned)
    await ban_user(session, user_id, reason=reason, by=by)
    queued = list(
        await session.scalars(
            select(Job.id).where(Job.user_id == user_id, Job.status == JobStatus.QUEUED).order_by(Job.id)
        )
    )
    cancelled = [job_id for job_id in queued if await cancel_job(session, job_id) == CancelOutcome.CANCELLED]
    running = list(
        await session.scalars(
            update(Job)
            .where(Job.user_id == user_id, Job.status == JobStatus.RUNNING)
            .values(max_attempts=Job.attempt)
            .returning(Job.id)
            .execution_options(synchronize_session=False)
        )
    )
    if cancelled or running:
        await record_action(
            session,
            actor_id=by,
            action="ban_settle_jobs",
            target_user_id=user_id,
            detail={"cancelled": cancelled, "running_not_retried": sorted(running)},
        )
    return BanOutcome(newly_banned=newly_banned, cancelled_job_ids=cancelled, running_job_ids=sorted(running))
