"""Status messages: the text shown while a job waits and runs (pure functions), and posting/editing it.

The status message is an ordinary channel message sent with the bot token, so it can still be edited after the
interaction's 15-minute token has died. :class:`bot.monitor.JobMonitor` re-renders it and edits only when the text
changed and at most once per ``STATUS_EDIT_INTERVAL_SECONDS``.
"""

from __future__ import annotations

import enum
import logging
import math
import re
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import discord

if TYPE_CHECKING:
    from bot.app import I2VBot
    from jobs.models import Job

log = logging.getLogger(__name__)

MENTION_PATTERN = re.compile(r"<@([!&]?)(\d+)>")
OLD_MESSAGE_EDIT_LIMIT_CODE = 30046  # Discord: too many edits to a message older than an hour
PROGRESS_BAR_CELLS = 20  # characters in the text progress bar
BAR_FULL = "█"
BAR_EMPTY = "░"
PHASE_LABELS = {
    "queued": "Waiting in the queue",
    "loading": "Loading the model",
    "preparing": "Preparing the image",
    "denoising": "Denoising",
    "decoding": "Decoding frames",
    "encoding": "Encoding the MP4",
    "done": "Finishing",
}


def progress_bar(done: int, total: int, cells: int = PROGRESS_BAR_CELLS) -> str:
    """``█████░░░░░ 50%`` for ``done`` of ``total`` (clamped)."""
    if total <= 0:
        return BAR_EMPTY * cells + "   0%"
    fraction = min(1.0, max(0.0, done / total))
    filled = math.floor(fraction * cells)
    return f"{BAR_FULL * filled}{BAR_EMPTY * (cells - filled)} {round(fraction * 100):3d}%"


def _value(value: Any) -> str:
    return str(getattr(value, "value", value))


def describe_params(job: Job) -> str:
    """One line of the parameters used: preset, size, frames, fps, steps, guidance, seed."""
    preset = job.preset or "custom"
    return (
        f"preset {preset} · {job.resolution} ({job.width}×{job.height}) · {job.frames} frames @ {job.fps} fps · "
        f"{job.steps} steps · guidance {job.guidance:g} · seed {job.seed}"
    )


def neutralise_mentions(text: str) -> str:
    """``text`` with user, role and @everyone/@here mentions broken by a zero-width space (shown, never pinging)."""
    return MENTION_PATTERN.sub("<@\u200b\\1\\2>", discord.utils.escape_mentions(text))


def quote_prompt(prompt: str) -> str:
    """The prompt as a Discord quote, with mentions neutralised."""
    text = neutralise_mentions(prompt.strip()) or "(no prompt)"
    return "\n".join("> " + line for line in text.splitlines())


def render_status(job: Job, *, position: int | None = None, eta_seconds: float | None = None,
                  now: datetime | None = None) -> str:
    """The status message text for a queued or running job (pure: depends only on its arguments)."""
    now = now or datetime.now(timezone.utc)
    status = _value(job.status)
    head = f"**Job #{job.id}** for <@{job.user_id}>\n{quote_prompt(job.prompt)}\n{describe_params(job)}"
    if status == "queued":
        if position is None:
            line = "⏳ Queued."
        else:
            line = f"⏳ Queued: position **{position}**"
            if eta_seconds is not None:
                start = int(now.timestamp() + eta_seconds)
                line += f", video expected <t:{start}:R>"
            line += "."
        if (job.attempt or 0) > 0:
            line += f" (retry {job.attempt + 1}: the previous attempt was interrupted)"
        return f"{head}\n{line}"
    if status == "running":
        phase = str(getattr(job.phase, "value", job.phase) or "loading")
        label = PHASE_LABELS.get(phase, phase.capitalize())
        if getattr(job, "cancel_requested", False):
            return f"{head}\n🛑 Cancelling…"
        if phase == "denoising" and job.progress_total:
            step = job.progress_step or 0
            return f"{head}\n⚙️ {label}: step {step}/{job.progress_total}\n`{progress_bar(step, job.progress_total)}`"
        return f"{head}\n⚙️ {label}…"
    if status == "succeeded":
        return f"{head}\n✅ Done."
    if status == "failed":
        return f"{head}\n❌ Failed: {job.error or 'unknown error'}"
    if status == "cancelled":
        return f"{head}\n🛑 Cancelled."
    return f"{head}\n{status}"


def status_key(job: Job, position: int | None) -> tuple[object, ...]:
    """What a status message shows, without the clock: the message is edited only when this changes (an ETA
    that drifts by a second each poll is not a change)."""
    return (_value(job.status), position, job.phase, job.progress_step, job.progress_total,
            bool(getattr(job, "cancel_requested", False)), job.attempt, job.error)


def is_final(job: Job) -> bool:
    """True once the job can no longer change (its status message loses the Cancel button)."""
    return _value(job.status) in ("succeeded", "failed", "cancelled")


def status_view(job: Job) -> discord.ui.View | None:
    """The Cancel button while the job can still be cancelled, else no components."""
    from bot.views import CancelButton

    if is_final(job):
        return None
    view = discord.ui.View(timeout=None)
    view.add_item(CancelButton(job.id))
    return view


async def post_status_message(bot: I2VBot, job: Job, *, position: int | None, eta_seconds: float | None,
                              text: str | None = None) -> int:
    """Send a status message in the job's channel (a reply to the request message if there is one), tell the
    monitor what it shows, record its id on the job and return it."""
    from jobs.queue import set_status_message

    channel = bot.get_partial_messageable(job.channel_id, guild_id=job.guild_id)
    reference = None
    if job.reply_to_message_id:
        reference = discord.MessageReference(
            message_id=job.reply_to_message_id, channel_id=job.channel_id, fail_if_not_exists=False
        )
    message = await channel.send(
        text or render_status(job, position=position, eta_seconds=eta_seconds),
        view=status_view(job),
        reference=reference,
        mention_author=False,
        allowed_mentions=discord.AllowedMentions.none(),
    )
    if bot.monitor is not None:
        # before the id is stored: from then on the monitor edits the message, and it must know what it shows
        # (a pass between the commit and this call re-sent the same text, closer than the edit interval)
        bot.monitor.note_posted(job, position)
    async with bot.sessions.begin() as session:
        await set_status_message(session, job.id, status_message_id=message.id)
    job.status_message_id = message.id
    return message.id


async def post_missing_status(bot: I2VBot, job_ids: set[int]) -> None:
    """Post the status message of each job in ``job_ids`` whose first post failed (``job_ids`` shrinks as they
    are posted, or as they stop needing one: finished, or posted meanwhile). Failures stay for the next pass."""
    from jobs.models import PENDING_STATUSES, Job

    for job_id in sorted(job_ids):
        async with bot.readers() as session:
            job = await session.get(Job, job_id)
        if job is None or job.status not in PENDING_STATUSES or job.status_message_id:
            job_ids.discard(job_id)
            continue
        try:
            await post_status_message(bot, job, position=None, eta_seconds=None)
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
            return EditOutcome.DONE
        log.warning("editing the status message of job %s failed: %s", job.id, error)
        return EditOutcome.FAILED
    return EditOutcome.DONE
