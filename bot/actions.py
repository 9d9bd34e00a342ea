"""What the commands, buttons and modals do once they are allowed to: queue a job (and post its status message),
queue a variant of an existing job, cancel a job. Kept here so every entry point behaves identically."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import discord

from bot.errors import UserFacingError
from jobs.requests import Origin, StoredInput, enqueue_request, stored_input_of

if TYPE_CHECKING:
    from bot.app import I2VBot
    from generator.params import GenerationParams
    from jobs.models import Job
    from jobs.quota import QuotaPolicy

log = logging.getLogger(__name__)

INVALID_WEBHOOK_TOKEN_CODE = 50027  # Discord: the interaction token expired (15 minutes)
UNKNOWN_WEBHOOK_CODE = 10015  # Discord: the webhook (interaction) is unknown


def interaction_origin(
    interaction: discord.Interaction,
    *,
    source: str,
    reply_to_message_id: int | None = None,
    parent_job_id: int | None = None,
) -> Origin:
    """The :class:`Origin` of a request made through an interaction (stores its token and upload limit)."""
    if interaction.channel_id is None:
        raise UserFacingError("I can only make videos in a channel.")
    return Origin(
        user_id=interaction.user.id,
        guild_id=interaction.guild_id,
        channel_id=interaction.channel_id,
        source=source,
        upload_limit_bytes=interaction.filesize_limit,
        reply_to_message_id=reply_to_message_id,
        interaction_token=interaction.token,
        interaction_expires_at=interaction.expires_at,
        application_id=interaction.application_id,
        parent_job_id=parent_job_id,
    )


async def queue_job(
    bot: I2VBot,
    *,
    stored: StoredInput,
    params: GenerationParams,
    origin: Origin,
    policy: QuotaPolicy,
    size: tuple[int, int] | None = None,
) -> Job:
    """Enqueue through the shared request flow (``jobs.requests.enqueue_request``: image stored, quota reserved,
    in one transaction) and post the job's status message with its position, ETA and Cancel button.

    ``size`` is the output (width, height); computed from the image when not given (re-rolls pass the parent's).
    Raises ``ParamError`` or a ``jobs.errors.RequestRefused`` subclass (``InputGone`` when a re-roll's image was
    deleted meanwhile); then nothing was written. Once the transaction committed, nothing after it may raise into
    the caller's "nothing was queued" error path: a status message that cannot be posted now is posted later by
    the monitor.
    """
    async with bot.sessions.begin() as session:
        job = await enqueue_request(session, stored=stored, params=params, origin=origin, policy=policy, size=size)
    await announce_queued(bot, job)
    return job


async def pause_notice(bot: I2VBot, guild_id: int | None) -> str | None:
    """The sentences telling a requester what their job waits for: a resume (a pause holds it) or a worker
    (video generation is unavailable: ``jobs.requests.availability_notice``); None when nothing holds it (or it
    cannot be read: the job is queued either way)."""
    from jobs.holds import pause_state
    from jobs.requests import availability_notice

    try:
        async with bot.readers() as session:
            state = await pause_state(session, guild_id)
            unavailable = await availability_notice(session, own_problem=getattr(bot.supervisor, "failure_reason",
                                                                                  None),
                                                    dead_after_s=bot.settings.worker_dead_after)
    except Exception:
        log.warning("could not read the pause switches for guild %s", guild_id, exc_info=True)
        return None
    notices = [unavailable] if unavailable else []
    if state.bot_paused:
        reason = f" ({state.bot_reason})" if state.bot_reason else ""
        notices.append(f"⏸️ The queue is paused by the bot's operator{reason}: this job waits and starts after resume.")
    elif state.guild_paused:
        notices.append("⏸️ The queue is paused on this server by its admins: this job waits and starts after resume.")
    return "\n".join(notices) or None


async def announce_queued(bot: I2VBot, job: Job) -> None:
    """Post ``job``'s status message (with the pause notice, if a pause holds it); never raises. On any failure
    (Discord or the database) the monitor is asked to post it on a later pass."""
    from bot.status import post_status_message, render_status
    from jobs.queue import queue_position

    try:
        async with bot.readers() as session:
            place = await queue_position(session, job.id)
        text = render_status(job, position=place.position, eta_seconds=place.eta_seconds)
        notice = await pause_notice(bot, job.guild_id)
        await post_status_message(bot, job, position=place.position, eta_seconds=place.eta_seconds,
                                  text=f"{text}\n{notice}" if notice else None)
    except Exception:
        log.warning("could not post the status message of job %s; it stays queued, the monitor posts it later",
                    job.id, exc_info=True)
        if bot.monitor is not None:
            bot.monitor.post_later(job.id)


def _token_expired(error: discord.HTTPException) -> bool:
    """An interaction's webhook token that died (15 minutes) or is unknown: 401/50027 or 404/10015."""
    return (error.status, error.code) in ((401, INVALID_WEBHOOK_TOKEN_CODE), (404, UNKNOWN_WEBHOOK_CODE))


async def tell_queued(interaction: discord.Interaction, job: Job, text: str) -> None:
    """Send the ephemeral "queued" follow-up for a committed ``job``; never raises (the status message in the
    channel tells the same). An expired interaction token is expected (the request took long), not an error."""
    try:
        await interaction.followup.send(text, ephemeral=True)
    except discord.HTTPException as error:
        if _token_expired(error):
            log.info("job %s is queued; its interaction token expired before the follow-up could say so", job.id)
        else:
            log.warning("job %s is queued; the follow-up saying so failed: %s", job.id, error)


def queued_text(job: Job, head: str, notice: str | None) -> str:
    """``head`` plus where progress shows, or the pause notice when a pause holds the job."""
    if notice:
        return f"{head} {notice}"
    return f"{head}; progress is in the channel, and the video will be posted there."


async def queue_variant(
    bot: I2VBot, interaction: discord.Interaction, parent: Job, *, source: str, changes: dict[str, Any]
) -> Job:
    """Queue a new job from ``parent``'s input and parameters with ``changes`` applied (``seed: None`` = new seed).

    The status message replies to the message the button was on.
    """
    from jobs.requests import variant_of

    params, size = variant_of(parent, changes)
    stored = stored_input_of(parent)
    origin = interaction_origin(
        interaction,
        source=source,
        reply_to_message_id=interaction.message.id if interaction.message else parent.result_message_id,
        parent_job_id=parent.id,
    )
    return await queue_job(bot, stored=stored, params=params, origin=origin, policy=bot.quota_policy(interaction),
                           size=size)


async def cancel_job_for(bot: I2VBot, job: Job) -> str:
    """Cancel ``job``; return the sentence to show the user."""
    from jobs.queue import cancel_job

    async with bot.sessions.begin() as session:
        outcome = await cancel_job(session, job.id)
    kind = str(getattr(outcome, "value", outcome))
    if bot.monitor is not None:
        bot.monitor.wake()
    log.info("cancel of job %s: %s", job.id, kind)
    if kind == "cancelled":
        return f"Cancelled job #{job.id} before it started; its quota was refunded."
    if kind == "requested":
        return f"Stopping job #{job.id}; you are charged only for the GPU time it already used."
    return f"Job #{job.id} has already finished; there is nothing to cancel."
