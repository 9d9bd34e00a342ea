"""``/admin``: run the queue, the quotas and the server's limits from Discord, without touching the database.

Who may: see :mod:`bot.permissions`. Every command carries :func:`~bot.permissions.admin_only` (checked at run time,
per interaction) and every admin button calls :func:`~bot.permissions.require_admin` before doing anything; the
group's ``default_permissions(manage_guild=True)`` only hides the commands from other members in Discord's UI.

Scope. The GPU queue is shared by every server the bot is in, so ``pause``/``resume``, bans, user quotas and role
tiers are bot-wide. ``queue``, ``clear`` and ``cancel`` act on this server's jobs (a bot operator listed in
``ADMIN_USER_IDS`` may cancel any job). ``limits`` are per server. ``stats`` describes the whole GPU.

Audit. Every change (cancel, clear, pause, resume, quota, tier, limits, ban, unban) is written to the audit log in
the same transaction as the change itself (by the ``jobs`` function, or here when the function does not), so the
log cannot miss or invent an action. Read-only views (queue, stats, log, showing a quota or the limits) are not
recorded.

Bans (:func:`ban_and_settle`): the user's new requests are refused with the reason (``jobs.queue.enqueue_job``);
their queued jobs are cancelled and refunded at once; a running job is left to finish and is delivered, but it is
not retried: if its worker dies, the lease rescue fails it (refunded) instead of putting it back in the queue.

Buttons are ``DynamicItem``s whose ``custom_id`` carries everything they need (``i2va:<what>:...``), so they keep
working after a restart and a forged ``custom_id`` gains nothing: the admin check runs on every click.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

import discord
from discord import app_commands
from discord.ext import commands
from sqlalchemy import select, update

from bot.errors import JobNotFound, UserFacingError
from bot.permissions import admin_only, require_admin
from bot.tree import explain_error
from generator.params import FRAMES_RANGE, RESOLUTIONS, STEPS_RANGE
from jobs.durations import format_duration

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from bot.app import I2VBot
    from jobs.models import AuditLog, GuildSettings
    from jobs.stats import AdminStats, AuditPage, QueuePage

log = logging.getLogger(__name__)

QUEUE_PAGE_SIZE = 10  # jobs per /admin queue page (two rows of five Cancel buttons)
CANCEL_BUTTONS_PER_ROW = 5  # Discord allows five buttons in one action row
LOG_PAGE_SIZE = 15  # audit rows per /admin log page
CLEAR_CONFIRM_SECONDS = 120  # how long the /admin clear confirmation button stays valid, seconds
PROMPT_PREVIEW_CHARS = 40  # characters of a prompt shown in the queue listing
DETAIL_PREVIEW_CHARS = 120  # characters of an audit row's detail shown in the log
MAX_DAILY_SECONDS = 7 * 24 * 3600.0  # the largest per-user or per-tier budget an admin may set, GPU-seconds/24 h
MAX_PENDING_LIMIT = 100  # the largest pending-jobs cap an admin may set
MAX_REASON_CHARS = 300  # ban and pause reasons
MAX_JOB_ID = 2**53  # Discord integer options stop at 2^53
NO_CAP = "none"  # the max_resolution choice that removes the cap
EMBED_COLOUR = discord.Colour.dark_teal()
CUSTOM_ID_PREFIX = "i2va"

ResolutionCap = Literal["256p", "512p", "768p", "1024p", "none"]


# --------------------------------------------------------------------------------------------- small renderers


def _bytes_text(size: int | None) -> str:
    if size is None:
        return "unknown memory"
    return f"{size / 2**30:.1f} GiB"


def _preview(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _discord_time(when: datetime, style: str = "R") -> str:
    return f"<t:{int(when.timestamp())}:{style}>"


def render_queue(page: QueuePage, now: datetime) -> discord.Embed:
    """The ``/admin queue`` embed: one line per job with requester, parameters, state, position, age, progress."""
    title = f"Queue: {page.running} running, {page.queued} queued"
    if page.paused:
        title += " (paused)"
    embed = discord.Embed(title=title, colour=EMBED_COLOUR)
    lines: list[str] = []
    for entry in page.entries:
        if entry.status.value == "running":
            state = f"running, {entry.phase}"
            if entry.progress_total:
                percent = 100 * entry.progress_step // entry.progress_total
                state += f" {entry.progress_step}/{entry.progress_total} ({percent} %)"
            if entry.cancel_requested:
                state += ", cancel requested"
        else:
            state = f"queued, position {entry.position}"
        lines.append(
            f"**#{entry.job_id}** <@{entry.user_id}> · {state} · {format_duration(entry.age_seconds(now))} old\n"
            f"  {entry.summary} · \"{_preview(entry.prompt, PROMPT_PREVIEW_CHARS)}\""
        )
    embed.description = "\n".join(lines) if lines else "Nothing is queued or running on this server."
    embed.set_footer(text=f"Page {page.page + 1} of {page.pages}")
    return embed


def render_stats(stats: AdminStats, supervisor: Any | None) -> discord.Embed:
    """The ``/admin stats`` embed."""
    embed = discord.Embed(title="Video bot statistics", colour=EMBED_COLOUR)
    for label, period in (("Today (UTC)", stats.today), ("Last 7 days", stats.week)):
        states = ", ".join(f"{status.value} {count}" for status, count in period.by_state.items())
        lines = [f"{period.created} jobs: {states}", f"GPU time used: {format_duration(period.gpu_seconds)}"]
        for timing in period.timings:
            lines.append(
                f"{timing.preset}: wait mean {format_duration(timing.wait.mean_seconds)}, "
                f"p95 {format_duration(timing.wait.p95_seconds)}; generation mean "
                f"{format_duration(timing.generation.mean_seconds)}, p95 {format_duration(timing.generation.p95_seconds)}"
                f" ({timing.generation.count} done)"
            )
        if period.failures:
            lines.append(
                "Failures: " + "; ".join(f"{count}× {_preview(error, 60)}" for error, count in period.failures[:5])
            )
        else:
            lines.append("Failures: none")
        embed.add_field(name=label, value="\n".join(lines)[:1024], inline=False)

    worker_lines: list[str] = []
    if supervisor is not None:
        state = supervisor.state
        worker_lines.append(f"Embedded worker: {state.describe()}")
    for worker in stats.workers:
        gpu = worker.gpu_name or "no GPU reported"
        busy = f" on job #{worker.current_job_id}" if worker.current_job_id is not None else ""
        stale = " (no heartbeat for a while)" if worker.stale else ""
        worker_lines.append(
            f"`{worker.worker_id}`: {worker.state.value}{busy}{stale} · {gpu}, {_bytes_text(worker.gpu_memory_bytes)}"
            f" · {worker.restarts} restarts · {worker.jobs_done} jobs done"
        )
    if not worker_lines:
        worker_lines.append("No worker has reported in.")
    embed.add_field(name="Workers", value="\n".join(worker_lines)[:1024], inline=False)
    embed.set_footer(text="Queue paused" if stats.paused else "Queue running")
    return embed


def _audit_line(row: AuditLog) -> str:
    target = f" → <@{row.target_user_id}>" if row.target_user_id is not None else ""
    job = f" job #{row.job_id}" if row.job_id is not None else ""
    actor = f"<@{row.actor_id}>" if row.actor_id is not None else "system"
    detail = ""
    if row.detail:
        shown = ", ".join(f"{key}={value}" for key, value in row.detail.items() if value is not None)
        detail = f" ({_preview(shown, DETAIL_PREVIEW_CHARS)})" if shown else ""
    return f"{_discord_time(row.created_at, 'f')} {actor} **{row.action}**{target}{job}{detail}"


def render_log(page: AuditPage) -> discord.Embed:
    """The ``/admin log`` embed, newest first."""
    embed = discord.Embed(title="Admin audit log (newest first)", colour=EMBED_COLOUR)
    embed.description = "\n".join(_audit_line(row) for row in page.rows) or "No admin actions recorded yet."
    embed.set_footer(text=f"Page {page.page + 1} of {page.pages} · {page.total} actions")
    return embed


def render_limits(row: GuildSettings | None) -> str:
    """The server's caps as one sentence."""
    if row is None:
        return "No caps on this server: any resolution, frames and steps the bot accepts."
    parts = [
        f"resolution up to {row.max_resolution}" if row.max_resolution else "any resolution",
        f"up to {row.max_frames} frames" if row.max_frames else "any number of frames",
        f"up to {row.max_steps} steps" if row.max_steps else "any number of steps",
    ]
    return "This server allows " + ", ".join(parts) + "."


# ------------------------------------------------------------------------------------------------ the actions


def _wake_monitor(bot: I2VBot) -> None:
    if bot.monitor is not None:
        bot.monitor.wake()


async def cancel_as_admin(bot: I2VBot, interaction: discord.Interaction, job_id: int) -> str:
    """Cancel ``job_id`` on behalf of an admin (audited as ``cancel_job``); return the sentence to show.

    A Manage Server admin may cancel the jobs of their own server; an ``ADMIN_USER_IDS`` operator any job.
    """
    from jobs.audit import record_action
    from jobs.models import Job
    from jobs.queue import cancel_job

    async with bot.sessions.begin() as session:
        job = await session.get(Job, job_id)
        if job is None:
            raise JobNotFound(f"There is no job #{job_id}.")
        if job.guild_id != interaction.guild_id and interaction.user.id not in bot.settings.admin_user_ids:
            raise UserFacingError(f"Job #{job_id} belongs to another server; only a bot operator can cancel it.")
        outcome = await cancel_job(session, job_id)
        await record_action(
            session,
            actor_id=interaction.user.id,
            action="cancel_job",
            target_user_id=job.user_id,
            guild_id=interaction.guild_id,
            job_id=job_id,
            detail={"outcome": outcome.value},
        )
    _wake_monitor(bot)
    log.info("admin %s cancelled job %s: %s", interaction.user.id, job_id, outcome.value)
    if outcome.value == "cancelled":
        return f"Cancelled job #{job_id} of <@{job.user_id}> before it started; their GPU time was refunded."
    if outcome.value == "requested":
        return f"Stopping job #{job_id} of <@{job.user_id}>; it is charged only for the GPU time already used."
    return f"Job #{job_id} had already finished; nothing to cancel."


@dataclass(frozen=True)
class BanOutcome:
    """What a ban did to the user's jobs."""

    newly_banned: bool
    cancelled_job_ids: list[int]
    running_job_ids: list[int]


async def ban_and_settle(
    session: AsyncSession, user_id: int, *, reason: str | None, by: int, guild_id: int | None
) -> BanOutcome:
    """Ban ``user_id`` and settle their jobs, in the caller's transaction.

    - New requests are refused with ``reason`` (``enqueue_job`` raises ``Banned``).
    - Queued jobs are cancelled and refunded now (``cancel_job``).
    - A running job is left to finish and is delivered, but is not retried: its ``max_attempts`` is lowered to
      the current attempt, so if its worker dies the lease rescue fails it (refunded) instead of requeueing it.

    Audited as ``ban_user`` (by ``jobs.quota.ban_user``) and, when jobs were touched, ``ban_settle_jobs``.
    """
    from jobs.audit import record_action
    from jobs.models import Job, JobStatus, UserLimit
    from jobs.queue import CancelOutcome, cancel_job
    from jobs.quota import ban_user

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
            guild_id=guild_id,
            detail={"cancelled": cancelled, "running_not_retried": sorted(running)},
        )
    return BanOutcome(newly_banned=newly_banned, cancelled_job_ids=cancelled, running_job_ids=sorted(running))


_KEEP: Any = object()  # "leave this cap as it is" in set_guild_limits


async def set_guild_limits(
    session: AsyncSession,
    guild_id: int,
    *,
    max_resolution: str | None = _KEEP,
    max_frames: int | None = _KEEP,
    max_steps: int | None = _KEEP,
    by: int,
) -> GuildSettings:
    """Set (a value), clear (``None``) or keep (omitted) each of a server's caps; audited as ``set_guild_limits``.

    Raises
    ------
    UserFacingError
        A cap outside what the bot can do at all (a resolution it does not know, frames or steps below the
        smallest request, which would refuse everything).
    """
    from jobs.audit import record_action
    from jobs.models import GuildSettings, utcnow

    if max_resolution is not _KEEP and max_resolution is not None and max_resolution not in RESOLUTIONS:
        raise UserFacingError(f"max_resolution must be one of {', '.join(RESOLUTIONS)} or {NO_CAP}.")
    for name, value, (low, high) in (("max_frames", max_frames, FRAMES_RANGE), ("max_steps", max_steps, STEPS_RANGE)):
        if value is not _KEEP and value is not None and not low <= value <= high:
            raise UserFacingError(f"{name} must be 0 (no cap) or between {low} and {high}; you gave {value}.")

    row = await session.get(GuildSettings, guild_id, with_for_update=True)
    if row is None:
        row = GuildSettings(guild_id=guild_id, paused=False, mention_replies=False)
        session.add(row)
    before = {"max_resolution": row.max_resolution, "max_frames": row.max_frames, "max_steps": row.max_steps}
    if max_resolution is not _KEEP:
        row.max_resolution = max_resolution
    if max_frames is not _KEEP:
        row.max_frames = max_frames
    if max_steps is not _KEEP:
        row.max_steps = max_steps
    row.updated_by, row.updated_at = by, utcnow()
    after = {"max_resolution": row.max_resolution, "max_frames": row.max_frames, "max_steps": row.max_steps}
    await record_action(
        session, actor_id=by, action="set_guild_limits", guild_id=guild_id, detail={"before": before, "after": after}
    )
    return row


# ----------------------------------------------------------------------------------------------------- buttons


async def _run_guarded(interaction: discord.Interaction, body: Any) -> None:
    """Run an admin button's body after the admin check; refusals and failures become one ephemeral message."""
    if not await require_admin(interaction):
        return
    try:
        await body()
    except Exception as error:  # the funnel tells the user, and logs anything unexpected
        await explain_error(interaction, error)


async def queue_reply(bot: I2VBot, guild_id: int | None, page: int) -> tuple[discord.Embed, discord.ui.View]:
    """The ``/admin queue`` page ``page`` (clamped to the last one) with its buttons."""
    from jobs.stats import queue_page

    async with bot.sessions() as session:
        listing = await queue_page(session, offset=page * QUEUE_PAGE_SIZE, limit=QUEUE_PAGE_SIZE, guild_id=guild_id)
        if listing.page >= listing.pages:  # the queue shrank under this page
            last = listing.pages - 1
            listing = await queue_page(session, offset=last * QUEUE_PAGE_SIZE, limit=QUEUE_PAGE_SIZE, guild_id=guild_id)
    now = discord.utils.utcnow()
    view = discord.ui.View(timeout=None)
    for index, entry in enumerate(listing.entries):
        view.add_item(AdminCancelButton(entry.job_id, row=index // CANCEL_BUTTONS_PER_ROW))
    nav_row = (len(listing.entries) + CANCEL_BUTTONS_PER_ROW - 1) // CANCEL_BUTTONS_PER_ROW
    view.add_item(QueuePageButton(listing.page, "prev", row=nav_row, disabled=listing.page == 0))
    view.add_item(QueuePageButton(listing.page, "refresh", row=nav_row))
    view.add_item(QueuePageButton(listing.page, "next", row=nav_row, disabled=listing.page + 1 >= listing.pages))
    return render_queue(listing, now), view


async def log_reply(bot: I2VBot, guild_id: int | None, page: int) -> tuple[discord.Embed, discord.ui.View]:
    """The ``/admin log`` page ``page`` (clamped to the last one) with its buttons."""
    from jobs.stats import audit_page

    async with bot.sessions() as session:
        listing = await audit_page(session, offset=page * LOG_PAGE_SIZE, limit=LOG_PAGE_SIZE, guild_id=guild_id)
        if listing.page >= listing.pages:
            last = listing.pages - 1
            listing = await audit_page(session, offset=last * LOG_PAGE_SIZE, limit=LOG_PAGE_SIZE, guild_id=guild_id)
    view = discord.ui.View(timeout=None)
    view.add_item(LogPageButton(listing.page, "prev", disabled=listing.page == 0))
    view.add_item(LogPageButton(listing.page, "next", disabled=listing.page + 1 >= listing.pages))
    return render_log(listing), view


_PAGE_STEP = {"prev": -1, "refresh": 0, "next": 1}


class _PageButton(
    discord.ui.DynamicItem[discord.ui.Button], template=CUSTOM_ID_PREFIX + r":(?P<listing>[a-z]+):(?P<page>[0-9]{1,6})"
):
    """Base for the paging buttons of an admin listing; the page it was on is in the ``custom_id``. Subclasses set
    LISTING (the ``custom_id`` segment), LABELS (kind -> label, kinds from ``_PAGE_STEP``) and ``reply``."""

    LISTING = ""
    LABELS: dict[str, str] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        kinds = "|".join(cls.LABELS)
        super().__init_subclass__(template=rf"{CUSTOM_ID_PREFIX}:{cls.LISTING}:(?P<page>[0-9]{{1,6}}):(?P<kind>{kinds})")

    def __init__(self, page: int, kind: str, *, row: int | None = None, disabled: bool = False) -> None:
        super().__init__(
            discord.ui.Button(
                label=self.LABELS[kind],
                style=discord.ButtonStyle.secondary,
                custom_id=f"{CUSTOM_ID_PREFIX}:{self.LISTING}:{page}:{kind}",
                row=row,
                disabled=disabled,
            )
        )
        self.page = page
        self.kind = kind

    @staticmethod
    async def reply(bot: I2VBot, guild_id: int | None, page: int) -> tuple[discord.Embed, discord.ui.View]:
        """The listing's page ``page`` (subclasses)."""
        raise NotImplementedError

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> _PageButton:
        return cls(int(match["page"]), match["kind"])

    async def callback(self, interaction: discord.Interaction) -> None:  # type: ignore[override]
        bot: I2VBot = interaction.client  # type: ignore[assignment]

        async def body() -> None:
            await interaction.response.defer()
            embed, view = await self.reply(bot, interaction.guild_id, max(0, self.page + _PAGE_STEP[self.kind]))
            await interaction.edit_original_response(embed=embed, view=view)

        await _run_guarded(interaction, body)


class QueuePageButton(_PageButton):
    """Previous / Refresh / Next on an ``/admin queue`` listing."""

    LISTING = "queue"
    LABELS = {"prev": "◀ Previous", "refresh": "Refresh", "next": "Next ▶"}
    reply = staticmethod(queue_reply)


class AdminCancelButton(
    discord.ui.DynamicItem[discord.ui.Button], template=CUSTOM_ID_PREFIX + r":cancel:(?P<job>[0-9]{1,20})"
):
    """"Cancel #N" next to a job in ``/admin queue``: cancels anyone's job, so admins only."""

    def __init__(self, job_id: int, *, row: int | None = None) -> None:
        super().__init__(
            discord.ui.Button(
                label=f"Cancel #{job_id}",
                style=discord.ButtonStyle.danger,
                custom_id=f"{CUSTOM_ID_PREFIX}:cancel:{job_id}",
                row=row,
            )
        )
        self.job_id = job_id

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> AdminCancelButton:
        return cls(int(match["job"]))

    async def callback(self, interaction: discord.Interaction) -> None:  # type: ignore[override]
        bot: I2VBot = interaction.client  # type: ignore[assignment]

        async def body() -> None:
            await interaction.response.defer(ephemeral=True, thinking=True)
            message = await cancel_as_admin(bot, interaction, self.job_id)
            await interaction.followup.send(message, ephemeral=True)

        await _run_guarded(interaction, body)


class ClearConfirmButton(
    discord.ui.DynamicItem[discord.ui.Button], template=CUSTOM_ID_PREFIX + r":clear:(?P<expires>[0-9]{1,12})"
):
    """The confirmation of ``/admin clear``; valid until the unix time in its ``custom_id``."""

    def __init__(self, expires_at: int) -> None:
        super().__init__(
            discord.ui.Button(
                label="Yes, cancel them all",
                style=discord.ButtonStyle.danger,
                custom_id=f"{CUSTOM_ID_PREFIX}:clear:{expires_at}",
            )
        )
        self.expires_at = expires_at

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> ClearConfirmButton:
        return cls(int(match["expires"]))

    async def callback(self, interaction: discord.Interaction) -> None:  # type: ignore[override]
        bot: I2VBot = interaction.client  # type: ignore[assignment]

        async def body() -> None:
            from jobs.queue import clear_queue

            if time.time() > self.expires_at:
                await interaction.response.edit_message(
                    content="This confirmation has expired; nothing was cleared. Run /admin clear again.", view=None
                )
                return
            await interaction.response.defer()
            async with bot.sessions.begin() as session:
                ids = await clear_queue(session, by=interaction.user.id, guild_id=interaction.guild_id)
            _wake_monitor(bot)
            log.info("admin %s cleared the queue of guild %s: %s", interaction.user.id, interaction.guild_id, ids)
            await interaction.edit_original_response(
                content=f"Cleared the queue: {len(ids)} queued job(s) cancelled and refunded. Running jobs go on.",
                view=None,
            )

        await _run_guarded(interaction, body)


class LogPageButton(_PageButton):
    """Previous / Next on an ``/admin log`` listing."""

    LISTING = "log"
    LABELS = {"prev": "◀ Newer", "next": "Older ▶"}
    reply = staticmethod(log_reply)


ADMIN_ITEMS: tuple[type[discord.ui.DynamicItem[Any]], ...] = (
    QueuePageButton,
    AdminCancelButton,
    ClearConfirmButton,
    LogPageButton,
)


# --------------------------------------------------------------------------------------------------------- cog


@app_commands.guild_only()
@app_commands.default_permissions(manage_guild=True)
class Admin(commands.GroupCog, group_name="admin", group_description="Run the video queue, quotas and limits"):
    """The ``/admin`` command group. Each command checks the invoker at run time (:func:`admin_only`)."""

    def __init__(self, bot: I2VBot) -> None:
        self.bot = bot
        super().__init__()

    async def _defer(self, interaction: discord.Interaction) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)

    # -- the queue ------------------------------------------------------------------------------------------

    @app_commands.command(name="queue")
    @admin_only()
    async def queue(self, interaction: discord.Interaction, page: app_commands.Range[int, 1, 10_000] = 1) -> None:
        """List this server's running and queued videos, with Cancel buttons.

        Parameters
        ----------
        page:
            Which page to show (10 jobs a page).
        """
        await self._defer(interaction)
        embed, view = await queue_reply(self.bot, interaction.guild_id, page - 1)
        await interaction.followup.send(embed=embed, view=view, ephemeral=True)

    @app_commands.command(name="cancel")
    @admin_only()
    async def cancel(self, interaction: discord.Interaction, job: app_commands.Range[int, 1, MAX_JOB_ID]) -> None:
        """Cancel anyone's video: a queued one is refunded, a running one stops at its next step.

        Parameters
        ----------
        job:
            The job number (#N in /admin queue).
        """
        await self._defer(interaction)
        message = await cancel_as_admin(self.bot, interaction, job)
        await interaction.followup.send(message, ephemeral=True)

    @app_commands.command(name="clear")
    @admin_only()
    async def clear(self, interaction: discord.Interaction) -> None:
        """Cancel every queued video on this server (refunded), after a confirmation; running ones go on."""
        from jobs.stats import queue_page

        await self._defer(interaction)
        async with self.bot.sessions() as session:
            listing = await queue_page(session, limit=1, guild_id=interaction.guild_id)
        if listing.queued == 0:
            await interaction.followup.send("Nothing is queued on this server; nothing to clear.", ephemeral=True)
            return
        expires_at = int(time.time()) + CLEAR_CONFIRM_SECONDS
        view = discord.ui.View(timeout=None)
        view.add_item(ClearConfirmButton(expires_at))
        await interaction.followup.send(
            f"Cancel all {listing.queued} queued job(s) on this server? Their GPU time is refunded and running jobs "
            f"go on. This button works until <t:{expires_at}:T>.",
            view=view,
            ephemeral=True,
        )

    @app_commands.command(name="pause")
    @admin_only()
    async def pause(
        self, interaction: discord.Interaction, reason: app_commands.Range[str, 1, MAX_REASON_CHARS] | None = None
    ) -> None:
        """Stop starting new videos (on every server); running ones finish, new requests are refused.

        Parameters
        ----------
        reason:
            Shown to people whose requests are refused while paused.
        """
        from jobs.queue import pause_queue

        await self._defer(interaction)
        async with self.bot.sessions.begin() as session:
            changed = await pause_queue(session, by=interaction.user.id, reason=reason)
        log.info("admin %s paused the queue (changed=%s, reason=%r)", interaction.user.id, changed, reason)
        text = "Paused: no new video starts until /admin resume; running ones finish."
        await interaction.followup.send(text if changed else "The queue was already paused. " + text, ephemeral=True)

    @app_commands.command(name="resume")
    @admin_only()
    async def resume(self, interaction: discord.Interaction) -> None:
        """Start making videos again after /admin pause."""
        from jobs.queue import resume_queue

        await self._defer(interaction)
        async with self.bot.sessions.begin() as session:
            changed = await resume_queue(session, by=interaction.user.id)
        _wake_monitor(self.bot)
        log.info("admin %s resumed the queue (changed=%s)", interaction.user.id, changed)
        await interaction.followup.send(
            "Resumed: queued videos start again." if changed else "The queue was not paused; nothing changed.",
            ephemeral=True,
        )

    # -- quotas ---------------------------------------------------------------------------------------------

    @app_commands.command(name="quota")
    @admin_only()
    async def quota(
        self,
        interaction: discord.Interaction,
        user: discord.Member,
        daily_seconds: app_commands.Range[float, 0.0, MAX_DAILY_SECONDS] | None = None,
        max_pending: app_commands.Range[int, 1, MAX_PENDING_LIMIT] | None = None,
        reset: bool = False,
    ) -> None:
        """Show a member's quota, or set their own budget and pending cap.

        Parameters
        ----------
        user:
            The member.
        daily_seconds:
            Their GPU-seconds per rolling 24 hours (overrides tiers and the default).
        max_pending:
            How many of their videos may wait or run at once.
        reset:
            Remove their personal overrides (tiers and defaults apply again).
        """
        from jobs.models import UserLimit
        from jobs.quota import effective_limits, quota_status, set_user_limit

        await self._defer(interaction)
        if reset and (daily_seconds is not None or max_pending is not None):
            raise UserFacingError("Use reset alone, or give daily_seconds / max_pending without reset.")
        policy = self.bot.quota_policy(user)
        changed = reset or daily_seconds is not None or max_pending is not None
        async with self.bot.sessions.begin() as session:
            if changed:
                # An option left out keeps the member's current override; reset clears both.
                current = await session.get(UserLimit, user.id)
                if not reset and current is not None:
                    daily_seconds = current.daily_gpu_seconds if daily_seconds is None else daily_seconds
                    max_pending = current.max_pending if max_pending is None else max_pending
                await set_user_limit(
                    session, user.id, daily_gpu_seconds=daily_seconds, max_pending=max_pending, by=interaction.user.id
                )
            status = await quota_status(session, user.id, policy)
            limits = await effective_limits(session, user.id, policy)
        head = f"Updated {user.mention}'s quota." if changed else f"{user.mention}'s quota:"
        lines = [
            head,
            f"Budget {status.budget:.0f} GPU-seconds per 24 h (from {limits.budget_source}); used {status.used:.0f}, "
            f"reserved {status.reserved:.0f}, remaining {status.remaining:.0f}.",
            f"Pending jobs: {status.pending} of {status.max_pending}.",
        ]
        if status.refill_at is not None:
            lines.append(f"Next refill {_discord_time(status.refill_at)}.")
        if limits.banned:
            lines.append(f"Banned: {limits.ban_reason or 'no reason given'}.")
        await interaction.followup.send("\n".join(lines), ephemeral=True)

    @app_commands.command(name="tier")
    @admin_only()
    async def tier(
        self,
        interaction: discord.Interaction,
        role: discord.Role,
        daily_seconds: app_commands.Range[float, 0.0, MAX_DAILY_SECONDS],
        max_pending: app_commands.Range[int, 1, MAX_PENDING_LIMIT],
    ) -> None:
        """Give every member with a role a GPU budget and pending cap (the best of their tiers applies).

        Parameters
        ----------
        role:
            The role.
        daily_seconds:
            GPU-seconds per rolling 24 hours for its members.
        max_pending:
            How many videos each member may have waiting or running.
        """
        from jobs.quota import set_role_tier

        await self._defer(interaction)
        if not isinstance(role, discord.Role):  # resolved data missing: look the role up in the cached guild
            cached = interaction.guild.get_role(role.id) if interaction.guild is not None else None
            if cached is None:
                raise UserFacingError(f"I cannot find role {role.id} on this server.")
            role = cached
        async with self.bot.sessions.begin() as session:
            await set_role_tier(
                session,
                role.id,
                guild_id=interaction.guild_id,
                name=role.name,
                daily_gpu_seconds=daily_seconds,
                max_pending=max_pending,
                by=interaction.user.id,
            )
        await interaction.followup.send(
            f"Members with {role.mention} now get {daily_seconds:.0f} GPU-seconds per 24 h and up to {max_pending} "
            "pending videos (a personal override still wins).",
            ephemeral=True,
            allowed_mentions=discord.AllowedMentions.none(),
        )

    @app_commands.command(name="limits")
    @admin_only()
    async def limits(
        self,
        interaction: discord.Interaction,
        max_resolution: ResolutionCap | None = None,
        max_frames: app_commands.Range[int, 0, FRAMES_RANGE[1]] | None = None,
        max_steps: app_commands.Range[int, 0, STEPS_RANGE[1]] | None = None,
    ) -> None:
        """Show or set this server's caps (a 12 GB GPU cannot do 1024p); requests above a cap are refused.

        Parameters
        ----------
        max_resolution:
            The largest resolution allowed here ("none" removes the cap).
        max_frames:
            The most frames allowed here (0 removes the cap).
        max_steps:
            The most denoising steps allowed here (0 removes the cap).
        """
        from jobs.models import GuildSettings

        await self._defer(interaction)
        assert interaction.guild_id is not None  # guild_only
        if max_resolution is None and max_frames is None and max_steps is None:
            async with self.bot.sessions() as session:
                row = await session.get(GuildSettings, interaction.guild_id)
            await interaction.followup.send(render_limits(row), ephemeral=True)
            return
        changes: dict[str, Any] = {}
        if max_resolution is not None:
            changes["max_resolution"] = None if max_resolution == NO_CAP else max_resolution
        if max_frames is not None:
            changes["max_frames"] = max_frames or None
        if max_steps is not None:
            changes["max_steps"] = max_steps or None
        async with self.bot.sessions.begin() as session:
            row = await set_guild_limits(session, interaction.guild_id, by=interaction.user.id, **changes)
            text = render_limits(row)
        log.info("admin %s set limits of guild %s: %s", interaction.user.id, interaction.guild_id, changes)
        await interaction.followup.send(f"Updated. {text}", ephemeral=True)

    # -- bans -----------------------------------------------------------------------------------------------

    @app_commands.command(name="ban")
    @admin_only()
    async def ban(
        self,
        interaction: discord.Interaction,
        user: discord.User,
        reason: app_commands.Range[str, 1, MAX_REASON_CHARS] | None = None,
    ) -> None:
        """Stop someone from making videos: their queued videos are cancelled, a running one finishes.

        Parameters
        ----------
        user:
            Who to ban (from every server the bot is in).
        reason:
            Shown to them when a request is refused.
        """
        await self._defer(interaction)
        if user.id == interaction.user.id:
            raise UserFacingError("You cannot ban yourself.")
        async with self.bot.sessions.begin() as session:
            outcome = await ban_and_settle(
                session, user.id, reason=reason, by=interaction.user.id, guild_id=interaction.guild_id
            )
        _wake_monitor(self.bot)
        log.info("admin %s banned user %s (%r): %s", interaction.user.id, user.id, reason, outcome)
        lines = [f"{user.mention} is banned" + (f": {reason}" if reason else "") + "."]
        if not outcome.newly_banned:
            lines[0] = f"{user.mention} was already banned; reason now: {reason or 'none'}."
        if outcome.cancelled_job_ids:
            lines.append(
                "Cancelled and refunded their queued job(s) "
                + ", ".join(f"#{job_id}" for job_id in outcome.cancelled_job_ids)
                + "."
            )
        if outcome.running_job_ids:
            lines.append(
                "Left running (will be delivered, not retried): "
                + ", ".join(f"#{job_id}" for job_id in outcome.running_job_ids)
                + "."
            )
        await interaction.followup.send(
            "\n".join(lines), ephemeral=True, allowed_mentions=discord.AllowedMentions.none()
        )

    @app_commands.command(name="unban")
    @admin_only()
    async def unban(self, interaction: discord.Interaction, user: discord.User) -> None:
        """Let someone make videos again.

        Parameters
        ----------
        user:
            Who to unban.
        """
        from jobs.quota import unban_user

        await self._defer(interaction)
        async with self.bot.sessions.begin() as session:
            changed = await unban_user(session, user.id, by=interaction.user.id)
        text = f"{user.mention} may make videos again." if changed else f"{user.mention} was not banned."
        await interaction.followup.send(text, ephemeral=True, allowed_mentions=discord.AllowedMentions.none())

    # -- views ----------------------------------------------------------------------------------------------

    @app_commands.command(name="stats")
    @admin_only()
    async def stats(self, interaction: discord.Interaction) -> None:
        """Jobs today and this week, waits and generation times per preset, GPU time, failures and workers."""
        from jobs.stats import admin_stats

        await self._defer(interaction)
        async with self.bot.sessions() as session:
            stats = await admin_stats(session)
        await interaction.followup.send(embed=render_stats(stats, self.bot.supervisor), ephemeral=True)

    @app_commands.command(name="log")
    @admin_only()
    async def audit_log(self, interaction: discord.Interaction, page: app_commands.Range[int, 1, 10_000] = 1) -> None:
        """Show the audit log of admin actions (who did what, when), newest first.

        Parameters
        ----------
        page:
            Which page to show (15 actions a page).
        """
        await self._defer(interaction)
        embed, view = await log_reply(self.bot, interaction.guild_id, page - 1)
        await interaction.followup.send(embed=embed, view=view, ephemeral=True)


async def setup(bot: I2VBot) -> None:
    """Extension entry point: the restart-safe admin buttons and the ``/admin`` group."""
    bot.add_dynamic_items(*ADMIN_ITEMS)
    await bot.add_cog(Admin(bot))


async def teardown(bot: I2VBot) -> None:
    """Extension exit: forget the admin buttons (the cog is removed by discord.py)."""
    bot.remove_dynamic_items(*ADMIN_ITEMS)
