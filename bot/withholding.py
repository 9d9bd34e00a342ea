"""What the bot does not post, and what it stops keeping.

Content safety (``jobs.safety``): a video the worker's image classifier called unsafe is posted only where the
server's policy (the operator's UNSAFE_VIDEOS, tightened by ``/admin safety``) allows it, that is in an
age-restricted channel, and there always as a spoiler (:func:`screen_unsafe`, asked by ``bot.delivery`` before it
posts). Anywhere else it is not posted: its stored bytes and any disk copy go at once, and its requester is told
privately (:func:`tell_privately`: the request's ephemeral follow-up while its token lives, else a direct message).

Deleting (:func:`delete_stored_video`, :func:`delete_user_data_and_copies`: the Delete button under a video,
``/delete-my-data``, and retention through ``bot.monitor``) removes the stored bytes and the disk copies; the job
rows stay (statistics, quota ledger, audit log).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import aiohttp
import discord

from bot.render import render_withheld
from jobs.copies import remove_copies
from jobs.queue import find_job
from jobs.retention import delete_job_video, delete_user_data
from jobs.safety import UnsafePolicy, may_post_unsafe, withheld_message, withhold_video

if TYPE_CHECKING:
    from bot.app import I2VBot
    from jobs.models import Job
    from jobs.retention import UserDataDeleted

log = logging.getLogger(__name__)

TOKEN_MARGIN = timedelta(seconds=30)  # an interaction token this close to its end is not used for a follow-up


async def remove_disk_copies(bot: I2VBot, job_ids: list[int]) -> int:
    """Delete the disk copies of these jobs' videos (off the event loop); returns how many files went."""
    if not job_ids:
        return 0
    return await asyncio.to_thread(remove_copies, bot.settings.output_dir, list(job_ids))


# -- a flagged video ------------------------------------------------------------------------------------------


async def _age_restricted(bot: I2VBot, job: Job) -> bool | None:
    """Whether the job's channel is age-restricted (a thread: its parent); None when it cannot be read now. A
    channel that is gone or hidden counts as not age-restricted."""
    channel = bot.get_channel(job.channel_id)
    if channel is None:
        try:
            channel = await bot.fetch_channel(job.channel_id)
        except (discord.NotFound, discord.Forbidden):
            return False
        except (discord.HTTPException, aiohttp.ClientError, TimeoutError) as error:
            log.warning("could not read channel %s of job %s: %r", job.channel_id, job.id, error)
            return None
    is_nsfw = getattr(channel, "is_nsfw", None)
    return bool(is_nsfw()) if callable(is_nsfw) else False


async def screen_unsafe(bot: I2VBot, job: Job, policy: UnsafePolicy) -> tuple[Job, bool] | None:
    """For a video the safety check flagged: whether ``policy`` lets it be posted in the job's channel. Returns the
    job as it now is and True when it may be posted; False when it was withheld (:func:`withhold`); None when the
    channel cannot be read now (never post or delete on a guess: try later)."""
    age_restricted = await _age_restricted(bot, job)
    if age_restricted is None:
        return None
    if may_post_unsafe(policy, age_restricted_channel=age_restricted):
        return job, True
    return await withhold(bot, job, policy), False


async def withhold(bot: I2VBot, job: Job, policy: UnsafePolicy) -> Job:
    """An unsafe video that may not be posted here: its bytes and disk copies go now, the job keeps the verdict
    and the reason, and the requester is told privately (once). Returns the job as it now is; the channel then gets
    a notice that gives no reason."""
    reason = withheld_message(policy)
    async with bot.sessions.begin() as session:
        newly = await withhold_video(session, job.id, reason)
    await remove_disk_copies(bot, [job.id])
    log.info(
        "job %s: the safety check flagged the video; not posted in channel %s (policy %s), deleted",
        job.id,
        job.channel_id,
        policy.value,
    )
    if newly:
        how = await tell_privately(bot, job, render_withheld(job, reason))
        log.info("job %s: requester %s told by %s", job.id, job.user_id, how)
    async with bot.readers() as session:
        fresh = await find_job(session, job.id)
    return fresh or job


# -- telling the requester privately --------------------------------------------------------------------------


async def tell_privately(bot: I2VBot, job: Job, text: str) -> str:
    """Tell the job's requester ``text`` privately: an ephemeral follow-up while the request's interaction token
    lives, else a direct message; returns how (``ephemeral``, ``dm``, or ``job`` when neither worked and only the
    job's own record, shown by ``/queue`` and the page, says it)."""
    expires = job.interaction_expires_at
    if (
        job.interaction_token
        and job.application_id
        and expires is not None
        and expires - TOKEN_MARGIN > datetime.now(UTC)
    ):
        webhook = discord.Webhook.from_state(  # type 3: an interaction's follow-ups, ephemeral allowed
            {"id": job.application_id, "type": 3, "token": job.interaction_token},
            state=bot._connection,
        )
        try:
            await webhook.send(text, ephemeral=True, allowed_mentions=discord.AllowedMentions.none())
            return "ephemeral"
        except discord.HTTPException as error:
            log.info("job %s: the ephemeral follow-up failed (%s); trying a direct message", job.id, error)
    return "dm" if await tell_directly(bot, job, text) else "job"


async def tell_directly(bot: I2VBot, job: Job, text: str) -> bool:
    """Send ``text`` to the job's requester by direct message; False (logged) when they cannot be reached."""
    try:
        user = bot.get_user(job.user_id) or await bot.fetch_user(job.user_id)
        await user.send(text, allowed_mentions=discord.AllowedMentions.none())
    except discord.HTTPException as error:
        log.info("job %s: user %s cannot be sent a direct message (%s)", job.id, job.user_id, error)
        return False
    return True


# -- deleting what the bot keeps: the Delete button, /delete-my-data, retention ------------------------------


async def delete_stored_video(bot: I2VBot, job_id: int) -> bool:
    """Delete one job's stored MP4 and its disk copy; True when anything was there."""
    async with bot.sessions.begin() as session:
        stored = await delete_job_video(session, job_id)
    copies = await remove_disk_copies(bot, [job_id])
    log.info("deleted the video of job %s (stored: %s, disk copies: %d)", job_id, stored, copies)
    return stored or copies > 0


async def delete_user_data_and_copies(bot: I2VBot, user_id: int, *, by: int) -> UserDataDeleted:
    """Delete every stored image and video of ``user_id``'s jobs and the disk copies (audited, actor ``by``)."""
    async with bot.sessions.begin() as session:
        deleted = await delete_user_data(session, user_id, by=by)
    copies = await remove_disk_copies(bot, deleted.job_ids)
    log.info(
        "user %s's data deleted by %s: %d job(s), %d disk copies, still running %s",
        user_id,
        by,
        len(deleted.job_ids),
        copies,
        deleted.still_running,
    )
    if bot.monitor is not None:
        bot.monitor.wake()
    return deleted
