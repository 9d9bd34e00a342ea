"""``/admin``: one server's admins run that server's part of the bot from Discord.

Who may: a member with Manage Server in *this* server, or the bot's operator (:mod:`bot.permissions`); every
command carries :func:`~bot.permissions.server_admin_only`, checked at run time on each interaction, and every
command acts on the server the interaction comes from and nothing else. ``default_permissions(manage_guild=True)``
only hides the group from other members in Discord's UI. Bot-wide powers are ``/operator`` (bot.cogs.operator).

- ``pause`` / ``resume``: hold this server's queued jobs (requests are still accepted and wait); running jobs finish.
- ``limits``: this server's caps on resolution, frames and steps.
- ``queue``, ``cancel``, ``clear``: this server's jobs.
- ``ban`` / ``unban``: who may make videos in this server.
- ``stats``, ``log``: this server's jobs and audited actions.

Every change is audited with scope ``server`` in the same transaction as the change (see bot.admin_actions).
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any, Literal

import discord
from discord import app_commands
from discord.ext import commands

from bot.admin_actions import NO_CAP, cancel_as_admin, set_guild_limits, wake_monitor
from bot.admin_buttons import ADMIN_ITEMS, ClearConfirmButton, log_reply, queue_reply
from bot.admin_render import render_limits, render_stats
from bot.errors import UserFacingError
from bot.permissions import server_admin_only
from generator.params import FRAMES_RANGE, STEPS_RANGE

if TYPE_CHECKING:
    from bot.app import I2VBot

log = logging.getLogger(__name__)

CLEAR_CONFIRM_SECONDS = 120  # how long the /admin clear confirmation button stays valid, seconds
MAX_REASON_CHARS = 300  # ban and pause reasons
MAX_JOB_ID = 2**53  # Discord integer options stop at 2^53

ResolutionCap = Literal["256p", "512p", "768p", "1024p", "none"]


@app_commands.guild_only()
@app_commands.default_permissions(manage_guild=True)
class ServerAdmin(commands.GroupCog, group_name="admin", group_description="Run this server's videos, caps and bans"):
    """The ``/admin`` command group: this server only. Each command checks the invoker at run time."""

    def __init__(self, bot: I2VBot) -> None:
        self.bot = bot
        super().__init__()

    async def _defer(self, interaction: discord.Interaction) -> int:
        """Acknowledge (ephemeral) and return this server's id."""
        await interaction.response.defer(ephemeral=True, thinking=True)
        assert interaction.guild_id is not None  # guild_only
        return interaction.guild_id

    # -- this server's jobs ---------------------------------------------------------------------------------

    @app_commands.command(name="queue")
    @server_admin_only()
    async def queue(self, interaction: discord.Interaction, page: app_commands.Range[int, 1, 10_000] = 1) -> None:
        """List this server's running and queued videos, with Cancel buttons.

        Parameters
        ----------
        page:
            Which page to show (10 jobs a page).
        """
        guild_id = await self._defer(interaction)
        embed, view = await queue_reply(self.bot, guild_id, page - 1)
        await interaction.followup.send(embed=embed, view=view, ephemeral=True)

    @app_commands.command(name="cancel")
    @server_admin_only()
    async def cancel(self, interaction: discord.Interaction, job: app_commands.Range[int, 1, MAX_JOB_ID]) -> None:
        """Cancel a video of this server: a queued one is refunded, a running one stops at its next step.

        Parameters
        ----------
        job:
            The job number (#N in /admin queue).
        """
        await self._defer(interaction)
        message = await cancel_as_admin(self.bot, interaction, job, bot_wide=False)
        await interaction.followup.send(message, ephemeral=True)

    @app_commands.command(name="clear")
    @server_admin_only()
    async def clear(self, interaction: discord.Interaction) -> None:
        """Cancel every queued video on this server (refunded), after a confirmation; running ones go on."""
        from jobs.stats import queue_page

        guild_id = await self._defer(interaction)
        async with self.bot.readers() as session:
            listing = await queue_page(session, limit=1, guild_id=guild_id)
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
    @server_admin_only()
    async def pause(
        self, interaction: discord.Interaction, reason: app_commands.Range[str, 1, MAX_REASON_CHARS] | None = None
    ) -> None:
        """Hold this server's videos: requests are still queued and start after /admin resume; running ones finish.

        Parameters
        ----------
        reason:
            Kept in this server's audit log.
        """
        from jobs.control import pause_guild

        guild_id = await self._defer(interaction)
        async with self.bot.sessions.begin() as session:
            changed = await pause_guild(session, guild_id, by=interaction.user.id, reason=reason)
        log.info("admin %s paused guild %s (changed=%s, reason=%r)", interaction.user.id, guild_id, changed, reason)
        text = ("Paused on this server: new requests are queued and wait, nothing starts here until /admin resume; "
                "running videos finish. Other servers are not affected.")
        await interaction.followup.send(text if changed else "This server was already paused. " + text, ephemeral=True)

    @app_commands.command(name="resume")
    @server_admin_only()
    async def resume(self, interaction: discord.Interaction) -> None:
        """Let this server's queued videos start again after /admin pause."""
        from jobs.control import resume_guild

        guild_id = await self._defer(interaction)
        async with self.bot.sessions.begin() as session:
            changed = await resume_guild(session, guild_id, by=interaction.user.id)
        wake_monitor(self.bot)
        log.info("admin %s resumed guild %s (changed=%s)", interaction.user.id, guild_id, changed)
        await interaction.followup.send(
            "Resumed: this server's queued videos start again." if changed
            else "This server was not paused; nothing changed.",
            ephemeral=True,
        )

    # -- caps -----------------------------------------------------------------------------------------------

    @app_commands.command(name="limits")
    @server_admin_only()
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

        guild_id = await self._defer(interaction)
        if max_resolution is None and max_frames is None and max_steps is None:
            async with self.bot.readers() as session:
                row = await session.get(GuildSettings, guild_id)
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
            row = await set_guild_limits(session, guild_id, by=interaction.user.id, **changes)
            text = render_limits(row)
        log.info("admin %s set limits of guild %s: %s", interaction.user.id, guild_id, changes)
        await interaction.followup.send(f"Updated. {text}", ephemeral=True)

    # -- bans from this server ------------------------------------------------------------------------------

    @app_commands.command(name="ban")
    @server_admin_only()
    async def ban(
        self,
        interaction: discord.Interaction,
        user: discord.User,
        reason: app_commands.Range[str, 1, MAX_REASON_CHARS] | None = None,
    ) -> None:
        """Stop someone from making videos in this server: their queued videos here are cancelled.

        Parameters
        ----------
        user:
            Who to ban (in this server only).
        reason:
            Shown to them when a request here is refused.
        """
        from jobs.control import ban_from_guild

        guild_id = await self._defer(interaction)
        if user.id == interaction.user.id:
            raise UserFacingError("You cannot ban yourself.")
        async with self.bot.sessions.begin() as session:
            newly, cancelled = await ban_from_guild(session, guild_id, user.id, reason=reason, by=interaction.user.id)
        wake_monitor(self.bot)
        log.info("admin %s banned user %s from guild %s (%r): %s", interaction.user.id, user.id, guild_id, reason,
                 cancelled)
        head = "is banned from making videos in this server" if newly else "was already banned in this server"
        lines = [f"{user.mention} {head}" + (f": {reason}" if reason else "") + "."]
        if cancelled:
            lines.append("Cancelled and refunded their queued job(s) " + ", ".join(f"#{j}" for j in cancelled) + ".")
        await interaction.followup.send("\n".join(lines), ephemeral=True)

    @app_commands.command(name="unban")
    @server_admin_only()
    async def unban(self, interaction: discord.Interaction, user: discord.User) -> None:
        """Let someone make videos in this server again.

        Parameters
        ----------
        user:
            Who to unban (in this server).
        """
        from jobs.control import unban_from_guild

        guild_id = await self._defer(interaction)
        async with self.bot.sessions.begin() as session:
            changed = await unban_from_guild(session, guild_id, user.id, by=interaction.user.id)
        text = (f"{user.mention} may make videos in this server again." if changed
                else f"{user.mention} was not banned in this server.")
        await interaction.followup.send(text, ephemeral=True)

    # -- views ----------------------------------------------------------------------------------------------

    @app_commands.command(name="stats")
    @server_admin_only()
    async def stats(self, interaction: discord.Interaction) -> None:
        """This server's jobs today and this week: states, waits and generation times, GPU time, failures."""
        from jobs.holds import pause_state
        from jobs.stats import admin_stats

        guild_id = await self._defer(interaction)
        async with self.bot.readers() as session:
            stats = await admin_stats(session, guild_id=guild_id)
            state = await pause_state(session, guild_id)
        embed = render_stats(stats, self.bot.supervisor, bot_wide=False,
                             dead_after_s=self.bot.settings.worker_dead_after)
        embed.set_footer(text="Paused on this server" if state.guild_paused else "Running on this server")
        await interaction.followup.send(embed=embed, ephemeral=True)

    @app_commands.command(name="log")
    @server_admin_only()
    async def audit_log(self, interaction: discord.Interaction, page: app_commands.Range[int, 1, 10_000] = 1) -> None:
        """Show this server's audit log (who did what here, when), newest first.

        Parameters
        ----------
        page:
            Which page to show (15 actions a page).
        """
        guild_id = await self._defer(interaction)
        embed, view = await log_reply(self.bot, guild_id, page - 1)
        await interaction.followup.send(embed=embed, view=view, ephemeral=True)


async def setup(bot: I2VBot) -> None:
    """Extension entry point: the restart-safe admin buttons (both scopes) and the ``/admin`` group."""
    bot.add_dynamic_items(*ADMIN_ITEMS)
    await bot.add_cog(ServerAdmin(bot))


async def teardown(bot: I2VBot) -> None:
    """Extension exit: forget the admin buttons (the cog is removed by discord.py)."""
    bot.remove_dynamic_items(*ADMIN_ITEMS)
