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
from bot.admin_render import (
    SafetyCounts,
    render_banned,
    render_blocklist,
    render_log,
    render_paused,
    render_queue,
    render_reports,
    render_resumed,
    render_safety,
    render_stats,
    render_term_added,
    render_term_removed,
    render_unbanned,
)
from bot.components import MAX_ROWS, log_listing_view, queue_listing_view, reports_view
from bot.discord_limits import INT53_MAX
from bot.errors import UserFacingError
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
    await interaction.followup.send(render_paused(bot_wide=guild_id is None, changed=changed), ephemeral=True)


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
    await interaction.followup.send(render_resumed(bot_wide=guild_id is None, changed=changed), ephemeral=True)


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
    text = render_banned(
        user.mention, reason, bot_wide=guild_id is None, newly=newly, cancelled=cancelled, running=running
    )
    await interaction.followup.send(text, ephemeral=True)


async def unban(bot: I2VBot, interaction: discord.Interaction, guild_id: int | None, user: discord.User) -> None:
    """Lift ``user``'s ban in the scope."""
    await defer(interaction)
    async with bot.sessions.begin() as session:
        if guild_id is None:
            changed = await unban_user(session, user.id, by=interaction.user.id)
        else:
            changed = await unban_from_guild(session, guild_id, user.id, by=interaction.user.id)
    await interaction.followup.send(
        render_unbanned(user.mention, bot_wide=guild_id is None, changed=changed), ephemeral=True
    )


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
    safety = SafetyCounts(blocked[0], blocked[1], reports, MAX_OPEN_REPORTS_COUNTED)
    embed = render_stats(
        stats,
        bot.supervisor,
        safety,
        server_paused=None if state is None else state.guild_paused,
        dead_after_s=bot.settings.worker_dead_after,
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
    text = render_term_added(term, new=new, bot_wide=guild_id is None)
    await interaction.followup.send(text, ephemeral=True, allowed_mentions=discord.AllowedMentions.none())


async def blocklist_remove(bot: I2VBot, interaction: discord.Interaction, guild_id: int | None, raw: str) -> None:
    """Take a word or phrase off the scope's blocklist."""
    await defer(interaction)
    async with bot.sessions.begin() as session:
        removed = await remove_term(session, guild_id, raw, by=interaction.user.id)
    text = render_term_removed(removed=removed, bot_wide=guild_id is None)
    await interaction.followup.send(text, ephemeral=True, allowed_mentions=discord.AllowedMentions.none())


async def blocklist_show(bot: I2VBot, interaction: discord.Interaction, guild_id: int | None) -> None:
    """The scope's stored terms (bot-wide: also how many come from the PROMPT_BLOCKLIST setting)."""
    await defer(interaction)
    async with bot.readers() as session:
        terms = await list_terms(session, guild_id)
    setting_terms = bot.settings.prompt_blocklist if guild_id is None else ()
    await interaction.followup.send(
        render_blocklist(terms, setting_terms, bot_wide=guild_id is None),
        ephemeral=True,
        allowed_mentions=discord.AllowedMentions.none(),
    )


async def safety_settings(
    bot: I2VBot, interaction: discord.Interaction, guild_id: int, unsafe_videos: str | None, spoilers: bool | None
) -> None:
    """Show or set this server's policy for flagged videos and whether every result is a spoiler."""
    await defer(interaction)
    default = bot.settings.unsafe_videos
    updated = unsafe_videos is not None or spoilers is not None
    if updated:
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
    text = render_safety(policy, spoiler_all, operator_default=default, updated=updated)
    await interaction.followup.send(text, ephemeral=True)


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


def _scope_name(guild_id: int | None) -> str:
    return "the whole bot" if guild_id is None else f"guild {guild_id}"
