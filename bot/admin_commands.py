"""The bodies of the admin commands both scopes have: ``/operator`` (the whole bot) and ``/admin`` (one server).

Each function takes the scope as ``guild_id``: ``None`` is bot-wide (the operator), a server's id is that server
only (its admins). The cogs (bot.cogs.operator, bot.cogs.server_admin) keep the command declarations, the
permission checks and the help texts; what a command does and answers is here, once. Every change goes through
``jobs/`` and is audited there with its scope.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from datetime import timedelta
from typing import TYPE_CHECKING

import discord
from discord import app_commands

from bot.admin_actions import cancel_as_admin, wake_monitor
from bot.components import MAX_ROWS, log_listing_view, queue_listing_view, reports_view
from bot.discord_limits import INT53_MAX
from bot.errors import UserFacingError
from bot.render import render_blocklist, render_log, render_queue, render_reports, render_safety, render_stats
from jobs.control import (
    ban_and_settle,
    ban_from_guild,
    pause_guild,
    pause_queue,
    pause_state,
    resume_guild,
    resume_queue,
    unban_from_guild,
)
from jobs.listings import audit_page, queue_page
from jobs.quota import unban_user
from jobs.safety import (
    BlocklistError,
    UnsafePolicy,
    add_term,
    blocked_count,
    list_terms,
    open_reports,
    remove_term,
    server_safety,
    set_server_safety,
)
from jobs.stats import admin_stats

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from bot.app import I2VBot
    from jobs.listings import AuditPage

log = logging.getLogger(__name__)

MAX_REASON_CHARS = 300  # ban and pause reasons
MAX_JOB_ID = INT53_MAX  # Discord's integer options hold -(2^53 - 1) to 2^53 - 1
MAX_PAGE = 10_000  # the highest listing page a command accepts

Page = app_commands.Range[int, 1, MAX_PAGE]
JobNumber = app_commands.Range[int, 1, MAX_JOB_ID]
Reason = app_commands.Range[str, 1, MAX_REASON_CHARS]

QUEUE_PAGE_SIZE = 10  # jobs per queue page (two rows of five Cancel buttons)
LOG_PAGE_SIZE = 15  # audit rows per log page
MAX_OPEN_REPORTS_COUNTED = 100  # /admin stats counts open reports up to this, then says "100+"

REPORTS_SHOWN = MAX_ROWS  # reported videos per listing: one row of buttons each
BlocklistTerm = app_commands.Range[str, 1, 100]

QUEUE_PAGE_HELP = "Which page to show (10 jobs a page)."
LOG_PAGE_HELP = "Which page to show (15 actions a page)."


async def queue_reply(bot: I2VBot, guild_id: int | None, page: int) -> tuple[discord.Embed, discord.ui.View]:
    """A queue page (clamped to the last one) with its buttons: ``guild_id``'s jobs, or every job for ``None``."""
    async with bot.readers() as session:
        listing = await queue_page(session, offset=page * QUEUE_PAGE_SIZE, limit=QUEUE_PAGE_SIZE, guild_id=guild_id)
        if listing.page >= listing.pages:  # the queue shrank under this page
            last = listing.pages - 1
            listing = await queue_page(session, offset=last * QUEUE_PAGE_SIZE, limit=QUEUE_PAGE_SIZE, guild_id=guild_id)
        server_paused = guild_id is not None and (await pause_state(session, guild_id)).guild_paused
    view = queue_listing_view(
        [entry.job_id for entry in listing.entries], listing.page, listing.pages, bot_wide=guild_id is None
    )
    embed = render_queue(listing, discord.utils.utcnow(), bot_wide=guild_id is None, server_paused=server_paused)
    return embed, view


async def log_reply(bot: I2VBot, guild_id: int | None, page: int) -> tuple[discord.Embed, discord.ui.View]:
    """An audit-log page (clamped to the last one): ``guild_id``'s own actions, or everything for ``None``."""

    def fetch(session: AsyncSession, offset: int) -> Awaitable[AuditPage]:
        return audit_page(session, offset=offset, limit=LOG_PAGE_SIZE, guild_id=guild_id, with_bot_wide=False)

    async with bot.readers() as session:
        listing = await fetch(session, page * LOG_PAGE_SIZE)
        if listing.page >= listing.pages:
            listing = await fetch(session, (listing.pages - 1) * LOG_PAGE_SIZE)
    view = log_listing_view(listing.page, listing.pages, bot_wide=guild_id is None)
    return render_log(listing, bot_wide=guild_id is None), view


async def defer(interaction: discord.Interaction) -> None:
    """Acknowledge privately; the answer follows."""
    await interaction.response.defer(ephemeral=True, thinking=True)


async def show_queue(bot: I2VBot, interaction: discord.Interaction, guild_id: int | None, page: int) -> None:
    """One page of the scope's running and queued jobs, with Cancel buttons."""
    await defer(interaction)
    embed, view = await queue_reply(bot, guild_id, page - 1)
    await interaction.followup.send(embed=embed, view=view, ephemeral=True)


async def show_log(bot: I2VBot, interaction: discord.Interaction, guild_id: int | None, page: int) -> None:
    """One page of the scope's audit log, newest first."""
    await defer(interaction)
    embed, view = await log_reply(bot, guild_id, page - 1)
    await interaction.followup.send(embed=embed, view=view, ephemeral=True)


async def cancel(bot: I2VBot, interaction: discord.Interaction, guild_id: int | None, job_id: int) -> None:
    """Cancel a job of the scope (another server's job is answered as if it did not exist)."""
    await defer(interaction)
    message = await cancel_as_admin(bot, interaction, job_id, bot_wide=guild_id is None)
    await interaction.followup.send(message, ephemeral=True)


async def pause(bot: I2VBot, interaction: discord.Interaction, guild_id: int | None, reason: str | None) -> None:
    """Hold the scope's queued jobs (requests are still accepted and wait); running ones finish."""
    await defer(interaction)
    async with bot.sessions.begin() as session:
        if guild_id is None:
            changed = await pause_queue(session, by=interaction.user.id, reason=reason)
        else:
            changed = await pause_guild(session, guild_id, by=interaction.user.id, reason=reason)
    log.info("admin %s paused %s (changed=%s, reason=%r)", interaction.user.id, _scope_name(guild_id), changed, reason)
    if guild_id is None:
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
    await interaction.followup.send(text if changed else again + text, ephemeral=True)


async def resume(bot: I2VBot, interaction: discord.Interaction, guild_id: int | None) -> None:
    """Let the scope's queued jobs start again."""
    await defer(interaction)
    async with bot.sessions.begin() as session:
        if guild_id is None:
            changed = await resume_queue(session, by=interaction.user.id)
        else:
            changed = await resume_guild(session, guild_id, by=interaction.user.id)
    wake_monitor(bot)
    log.info("admin %s resumed %s (changed=%s)", interaction.user.id, _scope_name(guild_id), changed)
    if guild_id is None:
        text = "Resumed: queued videos start again." if changed else "The queue was not paused; nothing changed."
    else:
        text = (
            "Resumed: this server's queued videos start again."
            if changed
            else "This server was not paused; nothing changed."
        )
    await interaction.followup.send(text, ephemeral=True)


async def ban(
    bot: I2VBot, interaction: discord.Interaction, guild_id: int | None, user: discord.User, reason: str | None
) -> None:
    """Ban ``user`` in the scope: their queued jobs there are cancelled and refunded. Bot-wide, a running job
    finishes and is delivered but is not retried (``jobs.control.ban_and_settle``)."""
    await defer(interaction)
    if user.id == interaction.user.id:
        raise UserFacingError("You cannot ban yourself.")
    running: list[int] = []
    async with bot.sessions.begin() as session:
        if guild_id is None:
            outcome = await ban_and_settle(session, user.id, reason=reason, by=interaction.user.id)
            newly, cancelled, running = outcome.newly_banned, outcome.cancelled_job_ids, outcome.running_job_ids
        else:
            newly, cancelled = await ban_from_guild(session, guild_id, user.id, reason=reason, by=interaction.user.id)
    wake_monitor(bot)
    log.info(
        "admin %s banned user %s from %s (%r): cancelled %s, running %s",
        interaction.user.id,
        user.id,
        _scope_name(guild_id),
        reason,
        cancelled,
        running,
    )
    where = "" if guild_id is None else " in this server"
    if newly:
        head = f"{user.mention} is banned" + (" from making videos in this server" if guild_id else "")
        lines = [head + (f": {reason}" if reason else "") + "."]
    elif guild_id is None:
        lines = [f"{user.mention} was already banned; reason now: {reason or 'none'}."]
    else:
        lines = [f"{user.mention} was already banned{where}" + (f": {reason}" if reason else "") + "."]
    if cancelled:
        lines.append("Cancelled and refunded their queued job(s) " + _job_list(cancelled) + ".")
    if running:
        lines.append("Left running (will be delivered, not retried): " + _job_list(running) + ".")
    await interaction.followup.send("\n".join(lines), ephemeral=True)


async def unban(bot: I2VBot, interaction: discord.Interaction, guild_id: int | None, user: discord.User) -> None:
    """Lift ``user``'s ban in the scope."""
    await defer(interaction)
    async with bot.sessions.begin() as session:
        if guild_id is None:
            changed = await unban_user(session, user.id, by=interaction.user.id)
        else:
            changed = await unban_from_guild(session, guild_id, user.id, by=interaction.user.id)
    where = "" if guild_id is None else " in this server"
    text = f"{user.mention} may make videos{where} again." if changed else f"{user.mention} was not banned{where}."
    await interaction.followup.send(text, ephemeral=True)


async def show_stats(bot: I2VBot, interaction: discord.Interaction, guild_id: int | None) -> None:
    """The scope's jobs today and this week; bot-wide also the workers; a server's also its pause state."""
    await defer(interaction)
    async with bot.readers() as session:
        stats = await admin_stats(session, guild_id=guild_id)
        state = await pause_state(session, guild_id) if guild_id is not None else None
        blocked = [
            await blocked_count(session, since=period_start, until=stats.now + timedelta(seconds=1), guild_id=guild_id)
            for period_start in (
                stats.now.replace(hour=0, minute=0, second=0, microsecond=0),
                stats.now - timedelta(days=7),
            )
        ]
        reports = len(await open_reports(session, guild_id, limit=MAX_OPEN_REPORTS_COUNTED))
    dead_after = bot.settings.worker_dead_after
    if state is None:
        embed = render_stats(stats, bot.supervisor, dead_after_s=dead_after)
    else:
        embed = render_stats(stats, bot.supervisor, bot_wide=False, dead_after_s=dead_after)
        embed.set_footer(text="Paused on this server" if state.guild_paused else "Running on this server")
    open_text = f"{reports}+" if reports >= MAX_OPEN_REPORTS_COUNTED else str(reports)
    embed.add_field(
        name="Content safety",
        value=f"Prompts blocked: {blocked[0]} today, {blocked[1]} in the last 7 days\n"
        f"Reported videos waiting for an admin: {open_text}",
        inline=False,
    )
    await interaction.followup.send(embed=embed, ephemeral=True)


# -- content safety: blocklists, the server's safety settings, reports --------------------------------------------


async def blocklist_add(bot: I2VBot, interaction: discord.Interaction, guild_id: int | None, raw: str) -> None:
    """List a word or phrase on the scope's blocklist (this server's, or the bot-wide run-time one)."""
    await defer(interaction)
    try:
        async with bot.sessions.begin() as session:
            term, new = await add_term(session, guild_id, raw, by=interaction.user.id)
    except BlocklistError as error:
        raise UserFacingError(str(error)) from None
    log.info("admin %s listed a term on the blocklist of %s", interaction.user.id, _scope_name(guild_id))
    whose = _list_name(guild_id)
    text = (
        f"Prompts holding “{term}” are now refused {whose}."
        if new
        else f"“{term}” was already on {_list_title(guild_id)}."
    )
    await interaction.followup.send(text, ephemeral=True, allowed_mentions=discord.AllowedMentions.none())


async def blocklist_remove(bot: I2VBot, interaction: discord.Interaction, guild_id: int | None, raw: str) -> None:
    """Take a word or phrase off the scope's blocklist."""
    await defer(interaction)
    async with bot.sessions.begin() as session:
        removed = await remove_term(session, guild_id, raw, by=interaction.user.id)
    text = (
        f"Removed it from {_list_title(guild_id)}."
        if removed
        else f"That is not on {_list_title(guild_id)}; nothing changed."
    )
    await interaction.followup.send(text, ephemeral=True, allowed_mentions=discord.AllowedMentions.none())


async def blocklist_show(bot: I2VBot, interaction: discord.Interaction, guild_id: int | None) -> None:
    """The scope's stored terms (bot-wide: also how many come from the PROMPT_BLOCKLIST setting)."""
    await defer(interaction)
    async with bot.readers() as session:
        terms = await list_terms(session, guild_id)
    setting_terms = bot.settings.prompt_blocklist if guild_id is None else ()
    await interaction.followup.send(
        render_blocklist(_list_title(guild_id), terms, setting_terms),
        ephemeral=True,
        allowed_mentions=discord.AllowedMentions.none(),
    )


async def safety_settings(
    bot: I2VBot, interaction: discord.Interaction, guild_id: int, unsafe_videos: str | None, spoilers: bool | None
) -> None:
    """Show or set this server's policy for flagged videos and whether every result is a spoiler."""
    await defer(interaction)
    default = bot.settings.unsafe_videos
    if unsafe_videos is not None or spoilers is not None:
        async with bot.sessions.begin() as session:
            await set_server_safety(
                session,
                guild_id,
                by=interaction.user.id,
                policy=UnsafePolicy(unsafe_videos) if unsafe_videos else None,
                spoiler_all=spoilers,
            )
        log.info(
            "admin %s set the safety settings of guild %s: unsafe_videos=%s spoilers=%s",
            interaction.user.id,
            guild_id,
            unsafe_videos,
            spoilers,
        )
    async with bot.readers() as session:
        policy, spoiler_all = await server_safety(session, guild_id, default)
    head = "Updated. " if unsafe_videos is not None or spoilers is not None else ""
    await interaction.followup.send(head + render_safety(policy, spoiler_all, operator_default=default), ephemeral=True)


async def reports_reply(bot: I2VBot, guild_id: int | None) -> tuple[discord.Embed, discord.ui.View | None]:
    """The open reports of the scope, most reported first, with Delete / Ban / Dismiss buttons."""
    async with bot.readers() as session:
        rows = await open_reports(session, guild_id, limit=REPORTS_SHOWN)
    embed = render_reports(rows, bot_wide=guild_id is None)
    return embed, reports_view([job.id for job, _, _ in rows], bot_wide=guild_id is None)


async def show_reports(bot: I2VBot, interaction: discord.Interaction, guild_id: int | None) -> None:
    """The scope's reported videos waiting for an admin."""
    await defer(interaction)
    embed, view = await reports_reply(bot, guild_id)
    if view is None:
        await interaction.followup.send(embed=embed, ephemeral=True)
    else:
        await interaction.followup.send(embed=embed, view=view, ephemeral=True)


def _list_title(guild_id: int | None) -> str:
    return "the bot's blocklist" if guild_id is None else "this server's blocklist"


def _list_name(guild_id: int | None) -> str:
    return "on every server" if guild_id is None else "on this server"


def _scope_name(guild_id: int | None) -> str:
    return "the whole bot" if guild_id is None else f"guild {guild_id}"


def _job_list(job_ids: list[int]) -> str:
    return ", ".join(f"#{job_id}" for job_id in job_ids)
