"""The admin and operator texts: the listings (queue, audit log, reports), the stats embed, a server's caps,
models and safety settings, and the answers of the ``/admin`` and ``/operator`` commands (``bot.admin_commands``).

Pure functions of what the store returned (no I/O), like ``bot.render`` (the texts members see), whose helpers
they share. Each takes ``bot_wide``: the operator's bot-wide answer, or one server's admins'.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import discord

from bot.render import (
    DETAIL_PREVIEW_CHARS,
    EMBED_COLOUR,
    EMBED_FIELD_CHARS,
    PROMPT_PREVIEW_CHARS,
    job_list,
    neutralise_mentions,
    preview,
)
from generator.model_spaces import display_name
from jobs.errors import discord_time, format_duration
from jobs.models import AUDIT_SCOPE_BOT
from jobs.safety import UnsafePolicy
from jobs.workers import WORKER_DEAD_AFTER_S, unavailable_reason

if TYPE_CHECKING:
    from jobs.listings import AuditPage, QueuePage
    from jobs.models import AuditLog, GuildSettings, Job
    from jobs.quota import EffectiveLimits, QuotaStatus
    from jobs.stats import AdminStats

# -- the admin listings -------------------------------------------------------------------------------------------


def _bytes_text(size: int | None) -> str:
    if size is None:
        return "unknown memory"
    return f"{size / 2**30:.1f} GiB"


def render_queue(
    page: QueuePage, now: datetime, *, bot_wide: bool = False, server_paused: bool = False
) -> discord.Embed:
    """The queue embed (``/admin queue``: one server's jobs; ``/operator queue``: every server's): one line per job
    with requester, parameters, state, position, age, progress."""
    title = f"Queue: {page.running} running, {page.queued} queued"
    if page.paused:
        title += " (paused bot-wide)"
    elif server_paused:
        title += " (paused on this server)"
    where = "" if bot_wide else " on this server"
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
            f'  {entry.summary} · "{preview(entry.prompt, PROMPT_PREVIEW_CHARS)}"'
        )
    embed.description = "\n".join(lines) if lines else f"Nothing is queued or running{where}."
    embed.set_footer(text=f"Page {page.page + 1} of {page.pages}")
    return embed


@dataclass(frozen=True)
class SafetyCounts:
    """The stats embed's content-safety numbers: prompts blocked today and in the last 7 days, open reports
    (counted up to ``reports_counted_max``, then shown as "N+")."""

    blocked_today: int
    blocked_week: int
    open_reports: int
    reports_counted_max: int


def _safety_field(counts: SafetyCounts) -> str:
    reports = counts.open_reports
    shown = f"{reports}+" if reports >= counts.reports_counted_max else str(reports)
    return (
        f"Prompts blocked: {counts.blocked_today} today, {counts.blocked_week} in the last 7 days\n"
        f"Reported videos waiting for an admin: {shown}"
    )


def render_stats(
    stats: AdminStats,
    supervisor: Any | None,
    safety: SafetyCounts,
    *,
    server_paused: bool | None = None,
    dead_after_s: float = WORKER_DEAD_AFTER_S,
) -> discord.Embed:
    """The stats embed: ``/operator stats`` (``server_paused`` None: every server, with the workers) or
    ``/admin stats`` (one server's jobs and whether it is paused; the workers and the bot-wide switch are the
    operator's business). Both say first when video generation is unavailable, and why (the embedded
    ``supervisor``'s reason, else the worker registry's), and end with the content-safety numbers."""
    bot_wide = server_paused is None
    title = "Video bot statistics" if bot_wide else "Video bot statistics for this server"
    embed = discord.Embed(title=title, colour=EMBED_COLOUR)
    problem = getattr(supervisor, "failure_reason", None) or unavailable_reason(
        stats.workers, now=stats.now, dead_after_s=dead_after_s
    )
    if problem:
        embed.description = (
            f"⚠️ Video generation is unavailable right now: {problem}\n"
            "Requests are still queued; they run once a worker starts (fix the setting, restart)."
        )
    for label, period in (("Today (UTC)", stats.today), ("Last 7 days", stats.week)):
        states = ", ".join(f"{status.value} {count}" for status, count in period.by_state.items())
        lines = [f"{period.created} jobs: {states}", f"GPU time used: {format_duration(period.gpu_seconds)}"]
        for timing in period.timings:
            lines.append(
                f"{timing.preset}: wait mean {format_duration(timing.wait.mean_seconds)}, "
                f"p95 {format_duration(timing.wait.p95_seconds)}; generation mean "
                f"{format_duration(timing.generation.mean_seconds)}, "
                f"p95 {format_duration(timing.generation.p95_seconds)} ({timing.generation.count} done)"
            )
        if period.failures:
            lines.append(
                "Failures: " + "; ".join(f"{count}× {preview(error, 60)}" for error, count in period.failures[:5])
            )
        else:
            lines.append("Failures: none")
        embed.add_field(name=label, value="\n".join(lines)[:EMBED_FIELD_CHARS], inline=False)
    if server_paused is not None:
        embed.set_footer(text="Paused on this server" if server_paused else "Running on this server")
    else:
        embed.add_field(name="Workers", value=_workers_text(stats, supervisor)[:EMBED_FIELD_CHARS], inline=False)
        embed.set_footer(text="Queue paused" if stats.paused else "Queue running")
    embed.add_field(name="Content safety", value=_safety_field(safety), inline=False)
    return embed


def _workers_text(stats: AdminStats, supervisor: Any | None) -> str:
    """One line per worker (and the embedded one's state), for the operator's stats."""
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
            + (f" · holds {display_name(worker.loaded_model)}" if worker.loaded_model else "")
            + (
                f" (may load {', '.join(display_name(k) for k in worker.loadable_models)}; {worker.switches} switches)"
                if len(worker.loadable_models) > 1
                else ""
            )
            + (f" · could not start: {preview(worker.failure_reason, 120)}" if worker.failure_reason else "")
        )
    if not worker_lines:
        worker_lines.append("No worker has reported in.")
    return "\n".join(worker_lines)


def _audit_line(row: AuditLog) -> str:
    target = f" → <@{row.target_user_id}>" if row.target_user_id is not None else ""
    job = f" job #{row.job_id}" if row.job_id is not None else ""
    actor = f"<@{row.actor_id}>" if row.actor_id is not None else "system"
    detail = ""
    if row.detail:
        shown = ", ".join(f"{key}={value}" for key, value in row.detail.items() if value is not None)
        detail = f" ({preview(shown, DETAIL_PREVIEW_CHARS)})" if shown else ""
    scope = "bot-wide" if row.scope == AUDIT_SCOPE_BOT else "server"
    where = f" in server {row.guild_id}" if row.guild_id is not None else ""
    return f"{discord_time(row.created_at, 'f')} [{scope}{where}] {actor} **{row.action}**{target}{job}{detail}"


def render_log(page: AuditPage, *, bot_wide: bool = True) -> discord.Embed:
    """The audit log embed, newest first: everything (``/operator log``) or one server's (``/admin log``)."""
    title = "Audit log (newest first)" if bot_wide else "This server's audit log (newest first)"
    embed = discord.Embed(title=title, colour=EMBED_COLOUR)
    embed.description = "\n".join(_audit_line(row) for row in page.rows) or "No admin actions recorded yet."
    embed.set_footer(text=f"Page {page.page + 1} of {page.pages} · {page.total} actions")
    return embed


def render_limits(row: GuildSettings | None, *, updated: bool = False) -> str:
    """The server's caps as one sentence (after ``Updated.`` when ``updated``)."""
    if updated:
        return "Updated. " + render_limits(row)
    if row is None:
        return "No caps on this server: any resolution, frames and steps the bot accepts."
    parts = [
        f"resolution up to {row.max_resolution}" if row.max_resolution else "any resolution",
        f"up to {row.max_frames} frames" if row.max_frames else "any number of frames",
        f"up to {row.max_steps} steps" if row.max_steps else "any number of steps",
    ]
    return "This server allows " + ", ".join(parts) + "."


def render_models(chosen: Sequence[str], enabled: Sequence[str]) -> str:
    """Which of the bot's ``enabled`` models a server allows (``chosen``, the default first)."""
    names = ", ".join(display_name(key) for key in chosen)
    forbidden = [display_name(key) for key in enabled if key not in chosen]
    text = f"Models allowed on this server: {names} (the first is the default)."
    if forbidden:
        text += f" Not allowed here: {', '.join(forbidden)}."
    return text


# -- the answers of the admin commands ----------------------------------------------------------------------------

NOTHING_TO_CLEAR = "Nothing is queued on this server; nothing to clear."
CLEAR_EXPIRED = "This confirmation has expired; nothing was cleared. Run /admin clear again."


def render_clear_prompt(queued: int, expires_at: int) -> str:
    """The ``/admin clear`` question above its confirmation button, valid until the unix time ``expires_at``."""
    return (
        f"Cancel all {queued} queued job(s) on this server? Their GPU time is refunded and running jobs "
        f"go on. This button works until <t:{expires_at}:T>."
    )


def render_cleared(cancelled: int) -> str:
    """After the ``/admin clear`` confirmation."""
    return f"Cleared the queue: {cancelled} queued job(s) cancelled and refunded. Running jobs go on."


def render_member_quota(mention: str, status: QuotaStatus, limits: EffectiveLimits, *, changed: bool) -> str:
    """``/operator quota``: a member's budget (and where it comes from), use, pending cap, refill and ban."""
    lines = [
        f"Updated {mention}'s quota." if changed else f"{mention}'s quota:",
        f"Budget {status.budget:.0f} GPU-seconds per 24 h (from {limits.budget_source}); used {status.used:.0f}, "
        f"reserved {status.reserved:.0f}, remaining {status.remaining:.0f}.",
        f"Pending jobs: {status.pending} of {status.max_pending}.",
    ]
    if status.refill_at is not None:
        lines.append(f"Next refill {discord_time(status.refill_at)}.")
    if limits.banned:
        lines.append(f"Banned: {limits.ban_reason or 'no reason given'}.")
    return "\n".join(lines)


def render_tier_set(role_mention: str, daily_seconds: float, max_pending: int) -> str:
    """After ``/operator tier``."""
    return (
        f"Members with {role_mention} now get {daily_seconds:.0f} GPU-seconds per 24 h and up to {max_pending} "
        "pending videos (a personal override still wins)."
    )


def render_paused(*, bot_wide: bool, changed: bool) -> str:
    """After ``/operator pause`` (every server) or ``/admin pause`` (this one); ``changed``: it was running."""
    if bot_wide:
        text = (
            "Paused on every server: new requests are queued and wait, no video starts until /operator resume; "
            "running ones finish."
        )
        again = "The queue was already paused. "
    else:
        text = (
            "Paused on this server: new requests are queued and wait, nothing starts here until /admin resume; "
            "running videos finish. Other servers are not affected."
        )
        again = "This server was already paused. "
    return text if changed else again + text


def render_resumed(*, bot_wide: bool, changed: bool) -> str:
    """After ``/operator resume`` or ``/admin resume``; ``changed``: it was paused."""
    if bot_wide:
        return "Resumed: queued videos start again." if changed else "The queue was not paused; nothing changed."
    return (
        "Resumed: this server's queued videos start again."
        if changed
        else "This server was not paused; nothing changed."
    )


def render_banned(
    mention: str,
    reason: str | None,
    *,
    bot_wide: bool,
    newly: bool,
    cancelled: Sequence[int],
    running: Sequence[int] = (),
) -> str:
    """After a ban: who, why, and which of their jobs were cancelled (refunded) or left running (bot-wide)."""
    why = f": {reason}" if reason else ""
    if newly:
        lines = [f"{mention} is banned" + ("" if bot_wide else " from making videos in this server") + why + "."]
    elif bot_wide:
        lines = [f"{mention} was already banned; reason now: {reason or 'none'}."]
    else:
        lines = [f"{mention} was already banned in this server{why}."]
    if cancelled:
        lines.append("Cancelled and refunded their queued job(s) " + job_list(cancelled) + ".")
    if running:
        lines.append("Left running (will be delivered, not retried): " + job_list(running) + ".")
    return "\n".join(lines)


def render_unbanned(mention: str, *, bot_wide: bool, changed: bool) -> str:
    """After an unban; ``changed``: they were banned."""
    where = "" if bot_wide else " in this server"
    return f"{mention} may make videos{where} again." if changed else f"{mention} was not banned{where}."


# -- content safety -----------------------------------------------------------------------------------------------

BLOCKLIST_SHOWN_CHARS = 1800  # characters of listed terms shown in one answer (Discord's content limit is 2000)
UNSAFE_POLICY_TEXT = {
    "age_restricted": "flagged videos are posted only in age-restricted channels, as spoilers; elsewhere they are "
    "deleted and their requester is told privately",
    "refuse": "flagged videos are never posted: they are deleted and their requester is told privately",
}


def blocklist_title(*, bot_wide: bool) -> str:
    return "the bot's blocklist" if bot_wide else "this server's blocklist"


def render_blocklist(terms: list[str], setting_terms: tuple[str, ...] = (), *, bot_wide: bool) -> str:
    """A blocklist's stored terms (cut to fit one message), plus how many come from the PROMPT_BLOCKLIST setting."""
    lines = [f"{blocklist_title(bot_wide=bot_wide).capitalize()}: {len(terms)} term(s) (whole words, any case)."]
    if setting_terms:
        lines.append(f"Plus {len(setting_terms)} from the PROMPT_BLOCKLIST setting (change them in its .env).")
    shown: list[str] = []
    used = 0
    for term in terms:
        item = f"`{term.replace('`', 'ˋ')}`"
        if used + len(item) + 2 > BLOCKLIST_SHOWN_CHARS:
            shown.append(f"… and {len(terms) - len(shown)} more")
            break
        shown.append(item)
        used += len(item) + 2
    if shown:
        lines.append(", ".join(shown))
    return "\n".join(lines)


def render_term_added(term: str, *, new: bool, bot_wide: bool) -> str:
    """After ``blocklist add``; ``new``: it was not listed yet."""
    if new:
        return f"Prompts holding “{term}” are now refused {'on every server' if bot_wide else 'on this server'}."
    return f"“{term}” was already on {blocklist_title(bot_wide=bot_wide)}."


def render_term_removed(*, removed: bool, bot_wide: bool) -> str:
    """After ``blocklist remove``."""
    title = blocklist_title(bot_wide=bot_wide)
    return f"Removed it from {title}." if removed else f"That is not on {title}; nothing changed."


def render_safety(
    policy: UnsafePolicy, spoiler_all: bool, *, operator_default: UnsafePolicy, updated: bool = False
) -> str:
    """A server's effective content-safety settings (after ``Updated.`` when ``updated``)."""
    value = policy.value
    head = "Updated. " if updated else ""
    lines = [f"{head}Flagged videos here: **{value}**: {UNSAFE_POLICY_TEXT.get(value, value)}."]
    if operator_default == UnsafePolicy.REFUSE:
        lines.append("(The bot's operator refuses flagged videos everywhere; a server can only be stricter.)")
    lines.append(
        "Every result is posted as a spoiler."
        if spoiler_all
        else "Results are spoilers only when their requester asks (`spoiler: True`)."
    )
    return "\n".join(lines)


def report_settled_text(settled: Any, action: str, *, bot_wide: bool) -> str:
    """What an admin is told after acting on a reported video (``settled``: ``jobs.control.ReportSettled``)."""
    job_id = settled.job.id
    if action == "dismiss":
        return f"Dismissed {settled.reports} report(s) of video #{job_id}; it stays."
    text = f"Deleted video #{job_id} (its message, stored copy and file) and closed {settled.reports} report(s)."
    if action == "ban":
        where = "from the bot" if bot_wide else "from making videos in this server"
        text += f" <@{settled.job.user_id}> is {'now' if settled.banned else 'already'} banned {where}."
    return text


def render_reports(rows: list[tuple[Job, int, datetime]], *, bot_wide: bool) -> discord.Embed:
    """Reported videos waiting for an admin, most reported first: who made each, how many reports, a link."""
    title = "Reported videos (every server)" if bot_wide else "Reported videos on this server"
    embed = discord.Embed(title=title, colour=EMBED_COLOUR)
    lines = []
    for job, count, first in rows:
        link = (
            f" · [message](https://discord.com/channels/{job.guild_id}/{job.channel_id}/{job.result_message_id})"
            if job.guild_id and job.result_message_id
            else ""
        )
        flagged = " · flagged by the safety check" if job.output_verdict == "unsafe" else ""
        lines.append(
            f"**#{job.id}** by <@{job.user_id}> in <#{job.channel_id}>: {count} report(s), first "
            f"{discord_time(first)}{flagged}{link}\n"
            f"  {neutralise_mentions(preview(job.prompt, PROMPT_PREVIEW_CHARS))}"
        )
    embed.description = "\n".join(lines) or "No reported videos are waiting."
    if rows:
        embed.set_footer(text="Delete removes the message, the stored video and its file; Ban also stops its maker.")
    return embed
