"""The job monitor: one background task that keeps status messages current and delivers finished jobs.

Every ``POLL_INTERVAL_SECONDS`` (or at once when woken) it reads the pending jobs that have a status message and
edits each message only when its text changed and at most once per ``STATUS_EDIT_INTERVAL_SECONDS``; then it
delivers every job ``jobs.queue.undelivered_jobs`` returns (on start-up this is what succeeded while the bot was
down). It also runs the store's maintenance (``jobs.maintenance.Maintenance``): every few seconds it requeues the
running jobs of dead workers and of expired leases, so a dead worker's job runs again within seconds, and every
RETENTION_INTERVAL_SECONDS it prunes the stored images and videos of jobs that finished more than RETENTION_DAYS
ago, and their disk copies.
Status messages' positions come from one query for the whole queue (``queue_positions``); what holds a queued job
(video generation unavailable, with the reason, or a pause) is read once a pass, and a queued job whose status said
generation was unavailable says so again when a worker is back. A delivered job's status message is deleted by the
delivery (``bot.delivery``): its result or notice takes its place.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from bot.delivery import Delivery, DeliveryResult
from bot.render import AVAILABLE_AGAIN, render_status, status_key
from bot.status import EditOutcome, edit_status_message, post_missing_status
from jobs.control import pause_state
from jobs.maintenance import Maintenance
from jobs.models import JobSource, JobStatus
from jobs.queue import pending_with_status_message, queue_positions, undelivered_jobs
from jobs.requests import UNAVAILABLE_NOTICE, availability_notice, download_notice
from jobs.workers import model_downloads

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from bot.app import I2VBot
    from jobs.models import Job

log = logging.getLogger(__name__)

DELIVERY_RETRY_SECONDS = 30.0  # wait before trying again a delivery that could not complete
UNAVAILABLE_HEAD = UNAVAILABLE_NOTICE.partition("{reason}")[0]  # how an "unavailable" notice begins


class JobMonitor:
    """Status edits and deliveries; ``start()`` in setup_hook, ``stop()`` in close."""

    def __init__(self, bot: I2VBot) -> None:
        self.bot = bot
        self.delivery = Delivery(bot)
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._shown: dict[int, tuple[object, ...]] = {}  # job id -> status_key last written to its message
        self._edited_at: dict[int, float] = {}  # job id -> monotonic time of the last edit
        self._deliveries: dict[int, asyncio.Task[None]] = {}
        self._retry_after: dict[int, float] = {}  # job id -> monotonic time before which not to retry
        settings = bot.settings
        self.maintenance = Maintenance(
            bot.sessions,
            dead_after_s=settings.worker_dead_after,
            retention_days=settings.retention_days,
            retention_interval_s=settings.retention_interval,
            output_dir=settings.output_dir,
        )
        self._gone: set[int] = set()  # jobs whose status message was deleted or cannot be edited
        self._unposted: set[int] = set()  # queued jobs whose first status-message post failed (post_later)
        self._told_unavailable: set[int] = set()  # queued jobs whose status said video generation is unavailable

    def start(self) -> None:
        """Start the background task."""
        self._task = asyncio.create_task(self._run(), name="job-monitor")

    def note_posted(self, job: Job, position: int | None, notice: str | None = None) -> None:
        """Record that a status message was just posted showing ``job`` at ``position`` with ``notice`` (no
        immediate re-edit)."""
        self._shown[job.id] = status_key(job, position, notice)
        if notice and UNAVAILABLE_HEAD in notice:  # it will say when generation is back, however soon
            self._told_unavailable.add(job.id)
        self._edited_at[job.id] = time.monotonic()

    def post_later(self, job_id: int) -> None:
        """The status message of committed job ``job_id`` could not be posted: post it on the next passes."""
        self._unposted.add(job_id)
        self.wake()

    def wake(self) -> None:
        """Run a pass now instead of waiting for the next tick."""
        self._wake.set()

    async def deliver_finished(self, timeout: float) -> None:
        """Deliver what finished and wait for those deliveries (on shutdown: the job the worker finished in its
        grace period), for at most ``timeout`` seconds; what is left is delivered on the next start."""

        async def deliver() -> None:
            async with self.bot.readers() as session:
                finished = [job for job in await undelivered_jobs(session) if job.source != JobSource.WEB]
            for job in finished:
                self._start_delivery(job)
            if self._deliveries:
                await asyncio.gather(*self._deliveries.values(), return_exceptions=True)

        try:
            await asyncio.wait_for(deliver(), timeout)
        except TimeoutError:
            log.warning("shutting down with deliveries still in progress; they finish on the next start")
        except Exception:
            log.exception("delivering finished jobs on shutdown failed; they are delivered on the next start")

    async def stop(self) -> None:
        """Stop the loop and any delivery in progress (a half-done one is finished on the next start)."""
        tasks = [t for t in (self._task, *self._deliveries.values()) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _run(self) -> None:
        await self.bot.wait_until_ready()
        pruned = await self.delivery.prune_journal()
        if pruned:
            log.info("removed %d delivery journal entries of delivered jobs", pruned)
        while True:
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("job monitor pass failed; continuing")
            try:
                await asyncio.wait_for(self._wake.wait(), self.bot.settings.poll_interval)
            except TimeoutError:
                pass
            self._wake.clear()

    async def tick(self) -> None:
        """One pass: the store's maintenance when it is due, then refresh status messages and start deliveries."""
        await self.maintenance.run_due()
        if self._unposted:
            await post_missing_status(self.bot, self._unposted)
        async with self.bot.readers() as session:
            pending = await pending_with_status_message(session)
            places = await queue_positions(session) if pending else {}
            positions = {
                job.id: places[job.id] for job in pending if job.status == JobStatus.QUEUED and job.id in places
            }
            waiting = {job.guild_id for job in pending if job.status == JobStatus.QUEUED}
            unavailable, paused = await self._holds(session, waiting) if waiting else (None, {})
            downloads = (
                await model_downloads(session, dead_after_s=self.bot.settings.worker_dead_after) if waiting else {}
            )
            # The web page delivers its own jobs (web.delivery marks them); Discord never posts them.
            finished = [job for job in await undelivered_jobs(session) if job.source != JobSource.WEB]
        for job in finished:  # first: deliveries run as their own tasks and must not wait behind status edits
            self._start_delivery(job)
        for job in pending:
            place = positions.get(job.id)
            notice = self._notice(job, unavailable, paused) if job.status == JobStatus.QUEUED else None
            eta_seconds = place.eta_seconds if place else None
            download = downloads.get(job.model) if job.status == JobStatus.QUEUED else None
            if download is not None:  # the model's first download: its progress instead of an estimate
                eta_seconds = None
                notice = "\n".join(filter(None, (download_notice(download), notice)))
            await self._maybe_edit(job, place.position if place else None, eta_seconds, notice)

    async def _holds(
        self, session: AsyncSession, guild_ids: set[int | None]
    ) -> tuple[str | None, dict[int | None, str | None]]:
        """What holds queued jobs now: the "unavailable" sentence (None while a worker is alive) and each
        server's pause sentence, the same sentences a request is told when it is queued (``bot.requests``)."""
        unavailable = await availability_notice(
            session,
            own_problem=getattr(self.bot.supervisor, "failure_reason", None),
            dead_after_s=self.bot.settings.worker_dead_after,
        )
        paused = {guild_id: (await pause_state(session, guild_id)).notice() for guild_id in guild_ids}
        return unavailable, paused

    def _notice(self, job: Job, unavailable: str | None, paused: dict[int | None, str | None]) -> str | None:
        """The lines a queued job's status shows under its position: the worker is unavailable (and why), or back
        after its status said so; and a pause that holds it."""
        worker: str | None = unavailable
        if unavailable:
            self._told_unavailable.add(job.id)
        else:
            worker = AVAILABLE_AGAIN if job.id in self._told_unavailable else None
        return "\n".join(line for line in (worker, paused.get(job.guild_id)) if line) or None

    async def _maybe_edit(
        self, job: Job, position: int | None, eta_seconds: float | None, notice: str | None = None
    ) -> None:
        """Edit the status message if what it shows changed and the last edit is old enough."""
        key = status_key(job, position, notice)
        if job.id in self._gone or self._shown.get(job.id, ()) == key:
            return
        now = time.monotonic()
        if now - self._edited_at.get(job.id, 0.0) < self.bot.settings.status_edit_interval:
            return
        self._edited_at[job.id] = now
        text = render_status(job, position=position, eta_seconds=eta_seconds, notice=notice)
        outcome = await edit_status_message(self.bot, job, text)
        if outcome is EditOutcome.DONE:
            self._shown[job.id] = key
        elif outcome is EditOutcome.GONE:
            self._gone.add(job.id)

    def _start_delivery(self, job: Job) -> None:
        if job.id in self._deliveries or time.monotonic() < self._retry_after.get(job.id, 0.0):
            return
        task = asyncio.create_task(self._deliver(job), name=f"deliver-{job.id}")
        self._deliveries[job.id] = task

    async def _deliver(self, job: Job) -> None:
        try:
            result = await self.delivery.deliver(job)
            if result is DeliveryResult.RETRY_LATER:
                self._retry_after[job.id] = time.monotonic() + DELIVERY_RETRY_SECONDS
                return
            self._retry_after.pop(job.id, None)
            self._forget(job.id)  # its status message went with the delivery (bot.delivery)
        except Exception:
            log.exception("delivering job %s failed; will retry", job.id)
            self._retry_after[job.id] = time.monotonic() + DELIVERY_RETRY_SECONDS
        finally:
            self._deliveries.pop(job.id, None)

    def _forget(self, job_id: int) -> None:
        """Drop what the monitor remembers about a delivered job."""
        self._shown.pop(job_id, None)
        self._edited_at.pop(job_id, None)
        self._gone.discard(job_id)
        self._told_unavailable.discard(job_id)
