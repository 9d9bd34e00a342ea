"""``/operator``: the bot's operator runs the whole bot from Discord: every server's queue, pause, bans, quotas.

Who may: only the operator (``OPERATOR_USER_IDS`` / ``OPERATOR_ROLE_IDS``, see :mod:`bot.permissions`); every
command carries :func:`~bot.permissions.operator_only`, checked at run time on each interaction. A server's own
admins (Manage Server) are refused here whatever their permissions: ``/admin`` (bot.cogs.server_admin) is theirs.
``default_permissions(administrator=True)`` only hides the group in Discord's UI.

- ``pause`` / ``resume``: hold every server's queued jobs (requests are still accepted and wait); running ones finish.
- ``queue``, ``cancel``: every server's jobs.
- ``ban`` / ``unban``: bot-wide (queued jobs cancelled and refunded, a running one finishes and is not retried).
- ``quota``, ``tier``: a user's own budget and pending cap; a role's tier.
- ``stats``, ``log``: the whole GPU, the workers, every audited action.

Every change is audited with scope ``bot`` in the same transaction as the change.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot.admin_actions import ban_and_settle, cancel_as_admin, wake_monitor
from bot.admin_buttons import log_reply, queue_reply
from bot.admin_render import render_stats
from bot.errors import UserFacingError
from bot.permissions import operator_only

if TYPE_CHECKING:
    from bot.app import I2VBot

log = logging.getLogger(__name__)

MAX_DAILY_SECONDS = 7 * 24 * 3600.0  # the largest per-user or per-tier budget the operator may set, GPU-seconds/24 h
MAX_PENDING_LIMIT = 100  # the largest pending-jobs cap the operator may set
MAX_REASON_CHARS = 300  # ban and pause reasons
MAX_JOB_ID = 2**53  # Discord integer options stop at 2^53


@app_commands.guild_only()
@app_commands.default_permissions(administrator=True)
class Operator(commands.GroupCog, group_name="operator", group_description="Run the whole bot (operator only)"):
    """The ``/operator`` command group: bot-wide. Each command checks the invoker at run time."""

    def __init__(self, bot: I2VBot) -> None:
        self.bot = bot
        super().__init__()

    async def _defer(self, interaction: discord.Interaction) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)

    # -- the whole queue ------------------------------------------------------------------------------------

    @app_commands.command(name="queue")
    @operator_only()
    async def queue(self, interaction: discord.Interaction, page: app_commands.Range[int, 1, 10_000] = 1) -> None:
        """List every server's running and queued videos, with Cancel buttons.

        Parameters
        ----------
        page:
            Which page to show (10 jobs a page).
        """
        await self._defer(interaction)
        embed, view = await queue_reply(self.bot, None, page - 1)
        await interaction.followup.send(embed=embed, view=view, ephemeral=True)

    @app_commands.command(name="cancel")
    @operator_only()
    async def cancel(self, interaction: discord.Interaction, job: app_commands.Range[int, 1, MAX_JOB_ID]) -> None:
        """Cancel anyone's video on any server: a queued one is refunded, a running one stops at its next step.

        Parameters
        ----------
        job:
            The job number (#N in /operator queue).
        """
        await self._defer(interaction)
        message = await cancel_as_admin(self.bot, interaction, job, bot_wide=True)
        await interaction.followup.send(message, ephemeral=True)

    @app_commands.command(name="pause")
    @operator_only()
    async def pause(
        self, interaction: discord.Interaction, reason: app_commands.Range[str, 1, MAX_REASON_CHARS] | None = None
    ) -> None:
        """Hold every server's videos: requests are still queued and start after resume; running ones finish.

        Parameters
        ----------
        reason:
            Told to people whose requests wait while paused.
        """
        from jobs.queue import pause_queue

        await self._defer(interaction)
        async with self.bot.sessions.begin() as session:
            changed = await pause_queue(session, by=interaction.user.id, reason=reason)
        log.info("operator %s paused the queue (changed=%s, reason=%r)", interaction.user.id, changed, reason)
        text = ("Paused on every server: new requests are queued and wait, no video starts until /operator resume; "
                "running ones finish.")
        await interaction.followup.send(text if changed else "The queue was already paused. " + text, ephemeral=True)

    @app_commands.command(name="resume")
    @operator_only()
    async def resume(self, interaction: discord.Interaction) -> None:
        """Start making videos again after /operator pause."""
        from jobs.queue import resume_queue

        await self._defer(interaction)
        async with self.bot.sessions.begin() as session:
            changed = await resume_queue(session, by=interaction.user.id)
        wake_monitor(self.bot)
        log.info("operator %s resumed the queue (changed=%s)", interaction.user.id, changed)
        await interaction.followup.send(
            "Resumed: queued videos start again." if changed else "The queue was not paused; nothing changed.",
            ephemeral=True,
        )

    # -- quotas ---------------------------------------------------------------------------------------------

    @app_commands.command(name="quota")
    @operator_only()
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
            lines.append(f"Next refill <t:{int(status.refill_at.timestamp())}:R>.")
        if limits.banned:
            lines.append(f"Banned: {limits.ban_reason or 'no reason given'}.")
        await interaction.followup.send("\n".join(lines), ephemeral=True)

    @app_commands.command(name="tier")
    @operator_only()
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
        )

    # -- bans ---------------------------------------------------------------------------------------------

    @app_commands.command(name="ban")
    @operator_only()
    async def ban(
        self,
        interaction: discord.Interaction,
        user: discord.User,
        reason: app_commands.Range[str, 1, MAX_REASON_CHARS] | None = None,
    ) -> None:
        """Stop someone from making videos on every server: their queued videos are cancelled, a running one finishes.

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
            outcome = await ban_and_settle(session, user.id, reason=reason, by=interaction.user.id)
        wake_monitor(self.bot)
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
        await interaction.followup.send("\n".join(lines), ephemeral=True)

    @app_commands.command(name="unban")
    @operator_only()
    async def unban(self, interaction: discord.Interaction, user: discord.User) -> None:
        """Let someone make videos again (lifts a bot-wide ban).

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
        await interaction.followup.send(text, ephemeral=True)

    # -- views ----------------------------------------------------------------------------------------------

    @app_commands.command(name="stats")
    @operator_only()
    async def stats(self, interaction: discord.Interaction) -> None:
        """Every server's jobs today and this week, waits and generation times, GPU time, failures and workers."""
        from jobs.stats import admin_stats

        await self._defer(interaction)
        async with self.bot.readers() as session:
            stats = await admin_stats(session)
        await interaction.followup.send(embed=render_stats(stats, self.bot.supervisor,
                                                           dead_after_s=self.bot.settings.worker_dead_after),
                                        ephemeral=True)

    @app_commands.command(name="log")
    @operator_only()
    async def audit_log(self, interaction: discord.Interaction, page: app_commands.Range[int, 1, 10_000] = 1) -> None:
        """Show the audit log of every action on every server (who, what, which scope, when), newest first.

        Parameters
        ----------
        page:
            Which page to show (15 actions a page).
        """
        await self._defer(interaction)
        embed, view = await log_reply(self.bot, None, page - 1)
        await interaction.followup.send(embed=embed, view=view, ephemeral=True)


async def setup(bot: I2VBot) -> None:
    """Extension entry point: the ``/operator`` group (its buttons are registered by bot.cogs.server_admin)."""
    await bot.add_cog(Operator(bot))
