"""Posting results: the MP4 (or a failure/cancel notice) as a channel message, exactly once per job, in place of
the job's status message (deleted once the result is posted, so each job leaves one message in the channel; the
result is a new message, so it pings the requester and lands where the conversation is now).

Everything goes through the bot token and the channel endpoint, never the interaction webhook, so it works
after the 15-minute interaction token has died.

Exactly once, including a crash between posting and ``mark_delivered``: before posting, the bot writes a
*delivery journal* entry (``<data_dir>/deliveries/<job>.json``, fsynced) with the time of the attempt. Every
delivery message carries the job's Info button, whose ``custom_id`` (``i2v:info:<job>``) names the job. If a
journal entry exists when a delivery starts (the bot died mid-delivery, or a previous upload timed out and may
have landed), the bot first reads the channel's messages since the attempt and, if it finds its own message with
that button, records that message as the result instead of posting again. The post itself also carries a nonce
derived from the job id with ``enforce_nonce``, which real Discord uses to drop a duplicate sent within minutes.
We chose a journal file over a database column because the job table belongs to the store; the journal holds
nothing but a timestamp, and losing it merely falls back to the channel check being skipped.

Retries are bounded and each has a reason. discord.py's HTTP client already retries a 429 and a 500, 502, 504 or
524 (``DISCORD_PY_TRIES`` requests per call); the bot adds at most ``UPLOAD_RETRIES_MAX`` retries of its own, and
only after what discord.py does not retry: an upload that timed out (``UPLOAD_TIMEOUT_SECONDS``; it may still land,
so the channel is read before the next try and once more before giving up), a failed connection, or a 503. One
result thus costs at most ``UPLOAD_RETRIES_MAX + 1`` upload calls: a persistent 500 costs discord.py's five requests
and no retry of ours, a persistent 503 or timeout three. Each own retry counts in ``i2v_upload_retries_total``
(``web.metrics``), labelled with its reason.

Content safety (``jobs.safety``, ``bot.withholding``): a video the worker's image classifier called unsafe is
posted only where the server's policy allows it (an age-restricted channel, as a spoiler); elsewhere
``bot.withholding`` withholds it and tells its requester privately, and the channel gets a notice without a reason.
An input image the classifier flagged fails its job before generation (nothing charged); the channel's notice says
only that the video was not made, the reason goes to the requester privately. A result is also a spoiler (the
``SPOILER_`` file name) when its requester asked for one or the server makes every result one. Deleting what the
bot keeps is ``bot.withholding`` too.

The MP4 comes from the job store (``jobs.blobs``), wherever the worker that made it ran. Unless
``SAVE_OUTPUT_COPY=false``, the delivering process also writes it to ``OUTPUT_DIR/video_YYYYMMDD_HHMMSS_<job>.mp4``
(the finish time, UTC) and records that path on the job; Delete, delete-my-data and retention remove that copy too.
"""

from __future__ import annotations

import asyncio
import enum
import io
import json
import logging
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import aiohttp
import discord

from bot.components import job_custom_id, notice_view, result_view
from bot.render import (
    render_channel_closed_reason,
    render_input_refused,
    render_not_posted,
    render_notice,
    render_result,
    render_status,
    render_upload_failed,
)
from bot.status import edit_status_message
from bot.withholding import screen_unsafe, tell_directly, tell_privately
from jobs.blobs import DATABASE_BLOBS
from jobs.copies import output_filename, write_copy
from jobs.models import JobStatus
from jobs.queue import delivered_among, find_job
from jobs.safety import Verdict, server_safety
from jobs.transitions import mark_delivered
from web.metrics import UPLOAD_RETRIES

if TYPE_CHECKING:
    from bot.app import I2VBot
    from jobs.models import Job

log = logging.getLogger(__name__)

UPLOAD_RETRIES_MAX = 2  # own retries of one result upload, only after failures discord.py does not retry
UPLOAD_BACKOFF_SECONDS = (2.0, 4.0)  # waits before own retry 1, 2 (the last repeats); a timed-out upload may land
DISCORD_PY_TRIES = 5  # requests discord.py's HTTPClient.request makes for one call before it raises
DISCORD_PY_RETRIED_STATUSES = frozenset({429, 500, 502, 504, 524})  # the statuses it retries (others raise at once)
HISTORY_SCAN_LIMIT = 100  # messages read back when checking whether an earlier attempt landed
HISTORY_SCAN_MARGIN = timedelta(minutes=1)  # read from a little before the journalled attempt
CHANNEL_CLOSED_STATUSES = frozenset({403, 404})  # the bot may not post there, or the channel is gone: never retried


def nonce_for(job_id: int) -> str:
    """The message nonce for a job's delivery (max 25 characters)."""
    return f"i2v-{job_id}"[:25]


def _journal_dir(bot: I2VBot) -> Path:
    """Where a delivery in progress is recorded (one ``<job id>.json`` each)."""
    return bot.settings.data_dir / "deliveries"


def _journal_path(bot: I2VBot, job_id: int) -> Path:
    return _journal_dir(bot) / f"{job_id}.json"


def _write_journal(path: Path, started_at: datetime) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w") as handle:
        json.dump({"started_at": started_at.isoformat()}, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def _read_journal(path: Path) -> datetime | None:
    try:
        return datetime.fromisoformat(json.loads(path.read_text())["started_at"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


async def find_posted(bot: I2VBot, job: Job, since: datetime) -> int | None:
    """The id of a message this bot already posted for ``job`` since ``since`` (by its Info button), or None."""
    wanted = job_custom_id("info", job.id)
    channel = bot.get_partial_messageable(job.channel_id, guild_id=job.guild_id)
    after = discord.Object(discord.utils.time_snowflake(since - HISTORY_SCAN_MARGIN))
    async for message in channel.history(limit=HISTORY_SCAN_LIMIT, after=after, oldest_first=True):
        if message.author.id != bot.user.id:
            continue
        for row in message.components:
            for child in getattr(row, "children", [row]):
                if getattr(child, "custom_id", None) == wanted:
                    return message.id
    return None


def retry_reason(error: BaseException) -> str | None:
    """Why a failed upload is worth one of our own retries (a reason of ``web.metrics.UPLOAD_RETRY_REASONS``), or
    None when it is not: discord.py already retried it (429, 500, 502, 504, 524, up to ``DISCORD_PY_TRIES``
    requests) or retrying cannot help. discord.py does not retry a timeout, a failed connection or a 503."""
    if isinstance(error, TimeoutError):  # asyncio.wait_for's, or aiohttp's socket timeouts
        return "timeout"
    if isinstance(error, discord.HTTPException):
        if error.status in DISCORD_PY_RETRIED_STATUSES or error.status < 500:
            return None
        return "server_error"
    if isinstance(error, (aiohttp.ClientError, OSError)):
        return "connection"
    return None


class DeliveryResult(enum.Enum):
    """Outcome of one :meth:`Delivery.deliver` call."""

    DELIVERED = "delivered"  # this call recorded the delivery
    ALREADY = "already"  # it was delivered before (or is being delivered right now)
    RETRY_LATER = "retry_later"  # could not complete; try again later


class Delivery:
    """Delivers finished jobs one at a time per job; safe to call for the same job from several places."""

    def __init__(self, bot: I2VBot, *, backoff: tuple[float, ...] = UPLOAD_BACKOFF_SECONDS) -> None:
        self.bot = bot
        self.backoff = backoff
        self._in_flight: set[int] = set()

    async def prune_journal(self) -> int:
        """Remove journal entries of jobs already recorded as delivered (left by a crash right after recording);
        returns how many were removed."""
        folder = _journal_dir(self.bot)
        entries = {int(p.stem): p for p in folder.glob("*.json") if p.stem.isdigit()} if folder.exists() else {}
        if not entries:
            return 0
        async with self.bot.readers() as session:
            done = await delivered_among(session, list(entries))
        for job_id in done:
            entries[job_id].unlink(missing_ok=True)
        return len(done)

    async def deliver(self, job: Job) -> DeliveryResult:
        """Post ``job``'s result or notice unless it was already posted."""
        if job.id in self._in_flight:
            return DeliveryResult.ALREADY
        self._in_flight.add(job.id)
        try:
            return await self._deliver(job)
        finally:
            self._in_flight.discard(job.id)

    async def _deliver(self, stale: Job) -> DeliveryResult:
        # the caller's row may predate a delivery that just finished: decide on a fresh read, under the guard
        async with self.bot.readers() as session:
            job = await find_job(session, stale.id)
            video = None
            policy, spoiler_all = self.bot.settings.unsafe_videos, False
            if job is not None and job.delivered_at is None and job.status == JobStatus.SUCCEEDED:
                video = await DATABASE_BLOBS.read_video(session, job.id)
                policy, spoiler_all = await server_safety(session, job.guild_id, self.bot.settings.unsafe_videos)
        if job is None or job.delivered_at is not None:
            return DeliveryResult.ALREADY
        journal = _journal_path(self.bot, job.id)
        copy: Path | None = None
        spoiler = False
        if job.status == JobStatus.SUCCEEDED:
            unsafe = job.output_verdict == Verdict.UNSAFE.value
            if unsafe:
                screened = await screen_unsafe(self.bot, job, policy)
                if screened is None:  # cannot tell now; never post or delete on a guess
                    return DeliveryResult.RETRY_LATER
                job, may_post = screened
                if not may_post:
                    video = None  # withheld: a notice without a reason goes instead
            spoiler = unsafe or job.spoiler or spoiler_all
            if video is None and job.withheld_at is None:
                log.error("job %s succeeded but its video is no longer stored", job.id)
                return await self._give_up(job, journal, "its video is no longer kept.", kept=False)
            if self.bot.settings.save_output_copy and video is not None:
                copy = await asyncio.to_thread(write_copy, self.bot.settings.output_dir, job.id, job.finished_at, video)
        attempts = UPLOAD_RETRIES_MAX + 1
        failure = ""
        may_have_landed: datetime | None = None  # the journalled start of an upload that timed out
        for attempt in range(1, attempts + 1):
            earlier = _read_journal(journal) if journal.exists() else None
            if earlier is not None:
                found = await self._check_channel(job, earlier)
                if found is None:  # cannot tell whether it landed: try again later rather than risk a duplicate
                    return DeliveryResult.RETRY_LATER
                if found:
                    log.info("job %s was already posted as message %s; recording it", job.id, found)
                    return await self._mark(job, found, journal, copy)
                may_have_landed = None
            started = datetime.now(UTC)
            await asyncio.to_thread(_write_journal, journal, started)  # fsync: off the loop
            try:
                message_id = await asyncio.wait_for(
                    self._post(job, video, spoiler=spoiler), self.bot.settings.upload_timeout
                )
            except (discord.HTTPException, aiohttp.ClientError, OSError) as error:  # TimeoutError is an OSError
                status = getattr(error, "status", None)
                if status in CHANNEL_CLOSED_STATUSES:
                    return await self._channel_closed(job, journal, error, copy)
                if isinstance(status, int) and 400 <= status < 500 and status != 429:
                    log.error("delivery of job %s refused (%s): %s", job.id, status, error)
                    return await self._give_up(job, journal, f"Discord refused the upload ({status}).", copy=copy)
                reason = retry_reason(error)
                if reason == "timeout":
                    may_have_landed = started
                if reason is None or attempt == attempts:
                    log.warning(
                        "delivery of job %s failed for good (try %d of %d): %r", job.id, attempt, attempts, error
                    )
                    failure = (
                        f"Discord kept answering {status}." if reason is None else f"the upload failed {attempt} times."
                    )
                    break
                UPLOAD_RETRIES.labels(reason=reason).inc()
                wait = self.backoff[min(attempt - 1, len(self.backoff) - 1)]
                log.warning(
                    "delivery of job %s failed (%s), retry %d of %d in %.0f s: %r",
                    job.id,
                    reason,
                    attempt,
                    UPLOAD_RETRIES_MAX,
                    wait,
                    error,
                )
                await asyncio.sleep(wait)
                continue
            outcome = await self._mark(job, message_id, journal, copy)
            if outcome is DeliveryResult.DELIVERED and job.input_verdict == Verdict.UNSAFE.value:
                await tell_privately(self.bot, job, render_input_refused(job))  # the channel's notice gives no reason
            return outcome
        if may_have_landed is not None:  # the last upload timed out: give it time to land, then look once more
            await asyncio.sleep(self.backoff[-1])
            found = await self._check_channel(job, may_have_landed)
            if found is None:
                return DeliveryResult.RETRY_LATER
            if found:
                log.info("job %s was posted as message %s after all; recording it", job.id, found)
                return await self._mark(job, found, journal, copy)
        return await self._give_up(job, journal, failure, copy=copy)

    async def _check_channel(self, job: Job, since: datetime) -> int | bool | None:
        """Message id if found, False if surely not posted, None if the channel could not be read."""
        try:
            found = await find_posted(self.bot, job, since)
        except (TimeoutError, discord.HTTPException, aiohttp.ClientError) as error:
            log.warning("could not read channel %s to check job %s: %r", job.channel_id, job.id, error)
            return None
        return found if found is not None else False

    async def _post(self, job: Job, video: bytes | None, *, spoiler: bool = False) -> int:
        channel = self.bot.get_partial_messageable(job.channel_id, guild_id=job.guild_id)
        reference = None
        if job.reply_to_message_id:
            reference = discord.MessageReference(
                message_id=job.reply_to_message_id, channel_id=job.channel_id, fail_if_not_exists=False
            )
        mentions = discord.AllowedMentions(everyone=False, roles=False, users=[discord.Object(job.user_id)])
        if job.status == JobStatus.SUCCEEDED and video is not None:
            file = discord.File(io.BytesIO(video), filename=output_filename(job.id, job.finished_at), spoiler=spoiler)
            # send() takes None for "no reply" (it checks `is not None`); its overloads leave None out.
            message = await channel.send(
                render_result(job),
                file=file,
                view=result_view(job.id, self.bot.settings.models),
                reference=reference,  # type: ignore[arg-type]  # None: see above
                allowed_mentions=mentions,
                nonce=nonce_for(job.id),
            )
        else:
            message = await channel.send(
                render_notice(job),
                view=notice_view(job.id),
                allowed_mentions=mentions,
                nonce=nonce_for(job.id),
                reference=reference,  # type: ignore[arg-type]  # None: as above
            )
        return message.id

    async def _mark(self, job: Job, message_id: int | None, journal: Path, copy: Path | None = None) -> DeliveryResult:
        await self._remove_status_message(job, message_id)
        async with self.bot.sessions.begin() as session:
            marked = await mark_delivered(
                session, job.id, result_message_id=message_id, output_path=str(copy) if copy is not None else None
            )
        journal.unlink(missing_ok=True)
        if not marked:
            log.warning("job %s was already marked delivered; message %s is extra", job.id, message_id)
            return DeliveryResult.ALREADY
        log.info("job %s delivered as message %s", job.id, message_id)
        return DeliveryResult.DELIVERED

    async def _channel_closed(self, job: Job, journal: Path, error: BaseException, copy: Path | None) -> DeliveryResult:
        """The channel refused the result with 403 (the bot may no longer post or attach there) or 404 (the channel
        is gone): knocking again only spends Discord's invalid-request allowance, so stop here. Tell the requester
        once, by the interaction's follow-up while its token lives, else by direct message; record why on the job.
        The video stays in the store (the page shows and serves it)."""
        reason = render_channel_closed_reason(getattr(error, "status", 0), getattr(error, "code", 0))
        log.error(
            "job %s: channel %s refused the result (%s); not retrying, video kept in the store%s",
            job.id,
            job.channel_id,
            error,
            f" and at {copy}" if copy is not None else "",
        )
        text = render_not_posted(job, reason)
        how = await tell_privately(self.bot, job, text)
        log.info("job %s: requester %s told by %s", job.id, job.user_id, how)
        async with self.bot.sessions.begin() as session:
            marked = await mark_delivered(
                session,
                job.id,
                result_message_id=None,
                delivery_error=reason,
                output_path=str(copy) if copy is not None else None,
            )
            fresh = await find_job(session, job.id)
        journal.unlink(missing_ok=True)
        if fresh is not None:  # one try: an own message can often still be edited where nothing can be posted
            await edit_status_message(self.bot, fresh, render_status(fresh))
        return DeliveryResult.DELIVERED if marked else DeliveryResult.ALREADY

    async def _remove_status_message(self, job: Job, result_id: int | None) -> None:
        """Delete the job's status message: its result (or notice) takes its place, one message per job.

        Before the delivery is recorded, so a bot that dies in between deletes it on the next start, when the
        journal leads it back here (a message already gone is fine). Any other failure is logged and the delivery
        goes on: a status message left behind is untidy, a result recorded twice would not be."""
        if not job.status_message_id or job.status_message_id == result_id:
            return
        channel = self.bot.get_partial_messageable(job.channel_id, guild_id=job.guild_id)
        try:
            await channel.get_partial_message(job.status_message_id).delete()
        except discord.NotFound:
            return
        except (discord.HTTPException, aiohttp.ClientError, OSError) as error:
            log.warning("could not delete the status message %s of job %s: %r", job.status_message_id, job.id, error)
            return
        log.info("job %s: status message %s replaced by the delivery", job.id, job.status_message_id)

    async def _give_up(
        self, job: Job, journal: Path, reason: str, *, copy: Path | None = None, kept: bool = True
    ) -> DeliveryResult:
        """Tell the user the upload failed (the file is kept) and record that notice as the delivery.

        If the channel itself refuses the notice (403/404: deleted, or no permission), the user is told by direct
        message instead, and the job is recorded as delivered either way so the bot stops knocking on a closed
        door (repeated 403/404s count against Discord's invalid-request limit).
        """
        text = render_upload_failed(job, reason, kept=kept)
        view = notice_view(job.id)
        channel = self.bot.get_partial_messageable(job.channel_id, guild_id=job.guild_id)
        notice_id: int | None = None
        try:
            message = await channel.send(
                text, view=view, allowed_mentions=discord.AllowedMentions(users=[discord.Object(job.user_id)])
            )
            notice_id = message.id
        except (discord.NotFound, discord.Forbidden):
            log.error("job %s: channel %s refuses messages; telling the user directly", job.id, job.channel_id)
            await tell_directly(self.bot, job, text)
        except discord.HTTPException:
            log.exception("could not tell user %s that job %s failed to upload; will retry", job.user_id, job.id)
            return DeliveryResult.RETRY_LATER
        log.error(
            "job %s: upload given up (%s); video kept in the store%s",
            job.id,
            reason,
            f" and at {copy}" if copy is not None else "",
        )
        return await self._mark(job, notice_id, journal, copy)
