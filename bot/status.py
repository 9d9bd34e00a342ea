"""Status messages: posting a job's status message and editing it (the text is ``bot.render.render_status``,
its Cancel button ``bot.components.status_view``).

The status message is an ordinary channel message sent with the bot token, so it can still be edited after the
interaction's 15-minute token has died. :class:`bot.monitor.JobMonitor` re-renders it and edits only when the text
changed and at most once per ``STATUS_EDIT_INTERVAL_SECONDS``.
"""

from __future__ import annotations

import enum
import logging
from typing import TYPE_CHECKING

import discord

from bot.components import status_view
from bot.render import render_status
from jobs.models import PENDING_STATUSES, Job
from jobs.queue import set_status_message

if TYPE_CHECKING:
    from bot.app import I2VBot

log = logging.getLogger(__name__)

OLD_MESSAGE_EDIT_LIMIT_CODE = 30046  # Discord: too many edits to a message older than an hour


async def post_status_message(
    bot: I2VBot,
    job: Job,
    *,
    position: int | None,
    eta_seconds: float | None,
    text: str | None = None,
    notice: str | None = None,
) -> int:
    """Send a status message in the job's channel (a reply to the request message if there is one), tell the
    monitor what it shows, record its id on the job and return it. ``notice``: what holds the job, if anything."""
    channel = bot.get_partial_messageable(job.channel_id, guild_id=job.guild_id)
    reference = None
    if job.reply_to_message_id:
        reference = discord.MessageReference(
            message_id=job.reply_to_message_id, channel_id=job.channel_id, fail_if_not_exists=False
        )
    # send() takes None for "no view" and "no reply" (it checks `is not None`); its overloads leave None out.
    message = await channel.send(
        text or render_status(job, position=position, eta_seconds=eta_seconds, notice=notice),
        view=status_view(job),  # type: ignore[arg-type]  # None: see above
        reference=reference,  # type: ignore[arg-type]  # None: see above
        mention_author=False,
        allowed_mentions=discord.AllowedMentions.none(),
    )
    if bot.monitor is not None:
        # before the id is stored: from then on the monitor edits the message, and it must know what it shows
        # (a pass between the commit and this call re-sent the same text, closer than the edit interval)
        bot.monitor.note_posted(job, position, notice)
    async with bot.sessions.begin() as session:
        await set_status_message(session, job.id, status_message_id=message.id)
    job.status_message_id = message.id
    return message.id


async def post_missing_status(bot: I2VBot, job_ids: set[int]) -> None:
    """Post the status message of each job in ``job_ids`` whose first post failed (``job_ids`` shrinks as they
    are posted, or as they stop needing one: finished, or posted meanwhile). Failures stay for the next pass."""
    for job_id in sorted(job_ids):
        async with bot.readers() as session:
            job = await session.get(Job, job_id)
        if job is None or job.status not in PENDING_STATUSES or job.status_message_id:
            job_ids.discard(job_id)
            continue
        try:
            await post_status_message(bot, job, position=None, eta_seconds=None)
        except (discord.Forbidden, discord.NotFound) as error:
            # the channel is closed to the bot or gone: asking again only burns Discord's invalid-request allowance;
            # the job runs on, and delivery tells the requester
            log.warning("job %s: its channel refuses the status message (%s); not trying again", job_id, error.status)
            job_ids.discard(job_id)
            continue
        except Exception:
            log.warning("posting the status message of job %s failed again; will retry", job_id, exc_info=True)
            continue
        log.info("posted the status message of job %s on a later pass", job_id)
        job_ids.discard(job_id)


class EditOutcome(enum.Enum):
    """What happened to a status-message edit."""

    DONE = "done"  # edited (or continued in a fresh message)
    GONE = "gone"  # deleted, or the bot may no longer see or edit it: stop trying
    FAILED = "failed"  # a transient failure: try again later


async def edit_status_message(bot: I2VBot, job: Job, text: str) -> EditOutcome:
    """Edit the job's status message to ``text`` with the bot token (valid after the interaction token died)."""
    if not job.status_message_id:
        return EditOutcome.GONE
    channel = bot.get_partial_messageable(job.channel_id, guild_id=job.guild_id)
    message = channel.get_partial_message(job.status_message_id)
    view = status_view(job)
    try:
        await message.edit(content=text, view=view, allowed_mentions=discord.AllowedMentions.none())
    except (discord.NotFound, discord.Forbidden) as error:
        # repeating a 403/404 only burns Discord's invalid-request allowance
        log.info("status message of job %s can no longer be edited (%s); leaving it", job.id, error.status)
        return EditOutcome.GONE
    except discord.HTTPException as error:
        if error.code == OLD_MESSAGE_EDIT_LIMIT_CODE:
            # an hour-old message has run out of edits: continue in a fresh status message
            log.info("status message of job %s is out of edits; posting a new one", job.id)
            try:
                await post_status_message(bot, job, position=None, eta_seconds=None, text=text)
            except discord.HTTPException:
                log.warning("could not post a new status message for job %s", job.id, exc_info=True)
                return EditOutcome.FAILED
            try:  # one status message per job: the new one replaces it
                await message.delete()
            except discord.HTTPException as gone:
                log.info("could not delete the old status message of job %s (%s)", job.id, gone.status)
            return EditOutcome.DONE
        log.warning("editing the status message of job %s failed: %s", job.id, error)
        return EditOutcome.FAILED
    return EditOutcome.DONE
