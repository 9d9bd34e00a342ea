"""The bodies of the admin commands both scopes have: ``/operator`` (the whole bot) and ``/admin`` (one server).

Each function takes the scope as ``guild_id``: ``None`` is bot-wide (the operator), a server's id is that server
only (its admins). The cogs (bot.cogs.operator, bot.cogs.server_admin) keep the command declarations, the
permission checks and the help texts; what a command does and answers is here, once. Every change goes through
``jobs/`` and is audited there with its scope.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from typing import TYPE_CHECKING

import discord
from discord import app_commands

from bot.admin_actions import cancel_as_admin, wake_monitor
from bot.components import log_listing_view, queue_listing_view
from bot.errors import UserFacingError
from bot.render import render_log, render_queue, render_stats
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
from jobs.stats import admin_stats

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from bot.app import I2VBot
    from jobs.listings import AuditPage

log = logging.getLogger(__name__)

MAX_REASON_CHARS = 300  # ban and pause reasons
MAX_JOB_ID = 2**53  # Discord integer options stop at 2^53
MAX_PAGE = 10_000  # the highest listing page a command accepts

Page = app_commands.Range[int, 1, MAX_PAGE]
JobNumber = app_commands.Range[int, 1, MAX_JOB_ID]
Reason = app_commands.Range[str, 1, MAX_REASON_CHARS]

QUEUE_PAGE_SIZE = 10  # jobs per queue page (two rows of five Cancel buttons)
LOG_PAGE_SIZE = 15  # audit rows per log page

QUEUE_PAGE_HELP = "Which page to show (10 jobs a page)."
LOG_PAGE_HELP = "Which page to show (15 actions a page)."
SERVER_ONLY = " on this server"


async def queue_reply(bot: I2VBot, guild_id: int | None, page: int) -> tuple[discord.Embed, discord.ui.View]:
    """A queue page (clamped to the last one) with its buttons: ``guild_id``'s jobs, or every job for ``None``."""
    async with bot.readers() as session:
        listing = await queue_page(session, offset=page * QUEUE_PAGE_SIZE, limit=QUEUE_PAGE_SIZE, guild_id=guild_id)
        if listing.page >= listing.pages:  # the queue shrank under this page
            last = listing.pages - 1
            listing = await queue_page(session, offset=last * QUEUE_PAGE_SIZE, limit=QUEUE_PAGE_SIZE, guild_id=guild_id)
        server_paused = guild_id is not None and (await pause_state(session, guild_id)).guild_paused
    view = queue_listing_view([entry.job_id for entry in listing.entries], listing.page, listing.pages,
                              bot_wide=guild_id is None)
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
    log.info("admin %s paused %s (changed=%s, reason=%r)", interaction.user.id, _scope_name(guild_id), changed,
             reason)
    if guild_id is None:
        text = ("Paused on every server: new requests are queued and wait, no video starts until /operator resume; "
                "running ones finish.")
        again = "The queue was already paused. "
    else:
        text = ("Paused on this server: new requests are queued and wait, nothing starts here until /admin resume; "
                "running videos finish. Other servers are not affected.")
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
        text = ("Resumed: this server's queued videos start again." if changed
                else "This server was not paused; nothing changed.")
    await interaction.followup.send(text, ephemeral=True)


async def ban(bot: I2VBot, interaction: discord.Interaction, guild_id: int | None, user: discord.User,
              reason: str | None) -> None:
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
    log.info("admin %s banned user %s from %s (%r): cancelled %s, running %s", interaction.user.id, user.id,
             _scope_name(guild_id), reason, cancelled, running)
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
    text = (f"{user.mention} may make videos{where} again." if changed
            else f"{user.mention} was not banned{where}.")
    await interaction.followup.send(text, ephemeral=True)


async def show_stats(bot: I2VBot, interaction: discord.Interaction, guild_id: int | None) -> None:
    """The scope's jobs today and this week; bot-wide also the workers; a server's also its pause state."""
    await defer(interaction)
    async with bot.readers() as session:
        stats = await admin_stats(session, guild_id=guild_id)
        state = await pause_state(session, guild_id) if guild_id is not None else None
    dead_after = bot.settings.worker_dead_after
    if state is None:
        embed = render_stats(stats, bot.supervisor, dead_after_s=dead_after)
    else:
        embed = render_stats(stats, bot.supervisor, bot_wide=False, dead_after_s=dead_after)
        embed.set_footer(text="Paused on this server" if state.guild_paused else "Running on this server")
    await interaction.followup.send(embed=embed, ephemeral=True)


def _scope_name(guild_id: int | None) -> str:
    return "the whole bot" if guild_id is None else f"guild {guild_id}"


def _job_list(job_ids: list[int]) -> str:
    return ", ".join(f"#{job_id}" for job_id in job_ids)
