"""Every text and embed the admin commands show: queue listings, stats, the audit log, a server's caps.

Pure functions of what the store returned. Everything they render goes out with no pings allowed (the client's
default), so a user id shown as ``<@id>`` only names the member.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

import discord

from jobs.durations import format_duration
from jobs.models import AUDIT_SCOPE_BOT
from jobs.workers import WORKER_DEAD_AFTER_S, unavailable_reason

if TYPE_CHECKING:
    from jobs.models import AuditLog, GuildSettings
    from jobs.stats import AdminStats, AuditPage, QueuePage

PROMPT_PREVIEW_CHARS = 40  # characters of a prompt shown in the queue listing
DETAIL_PREVIEW_CHARS = 120  # characters of an audit row's detail shown in the log
EMBED_COLOUR = discord.Colour.dark_teal()


def _bytes_text(size: int | None) -> str:
    if size is None:
        return "unknown memory"
    return f"{size / 2**30:.1f} GiB"


def _preview(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _discord_time(when: datetime, style: str = "R") -> str:
    return f"<t:{int(when.timestamp())}:{style}>"


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
            f"  {entry.summary} · \"{_preview(entry.prompt, PROMPT_PREVIEW_CHARS)}\""
        )
    embed.description = "\n".join(lines) if lines else f"Nothing is queued or running{where}."
    embed.set_footer(text=f"Page {page.page + 1} of {page.pages}")
    return embed


def render_stats(stats: AdminStats, supervisor: Any | None, *, bot_wide: bool = True,
                 dead_after_s: float = WORKER_DEAD_AFTER_S) -> discord.Embed:
    """The stats embed: ``/operator stats`` (every server, with the workers) or ``/admin stats`` (one server's
    jobs; the workers and the bot-wide switch are the operator's business). Both say first when video generation is
    unavailable, and why (the embedded ``supervisor``'s reason, else the worker registry's)."""
    title = "Video bot statistics" if bot_wide else "Video bot statistics for this server"
    embed = discord.Embed(title=title, colour=EMBED_COLOUR)
    problem = getattr(supervisor, "failure_reason", None) or unavailable_reason(
        stats.workers, now=stats.now, dead_after_s=dead_after_s)
    if problem:
        embed.description = (f"⚠️ Video generation is unavailable right now: {problem}\n"
                             "Requests are still queued; they run once a worker starts (fix the setting, restart).")
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
    if not bot_wide:
        return embed

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
            + (f" · could not start: {_preview(worker.failure_reason, 120)}" if worker.failure_reason else "")
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
    scope = "bot-wide" if row.scope == AUDIT_SCOPE_BOT else "server"
    where = f" in server {row.guild_id}" if row.guild_id is not None else ""
    return f"{_discord_time(row.created_at, 'f')} [{scope}{where}] {actor} **{row.action}**{target}{job}{detail}"


def render_log(page: AuditPage, *, bot_wide: bool = True) -> discord.Embed:
    """The audit log embed, newest first: everything (``/operator log``) or one server's (``/admin log``)."""
    title = "Audit log (newest first)" if bot_wide else "This server's audit log (newest first)"
    embed = discord.Embed(title=title, colour=EMBED_COLOUR)
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
