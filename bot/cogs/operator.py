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
- ``blocklist add|remove|list``: the bot-wide run-time blocklist (beside the PROMPT_BLOCKLIST setting).
- ``reports``: reported videos on every server, with Delete, Ban maker (bot-wide) and Dismiss.

Every change is audited with scope ``bot`` in the same transaction as the change. The commands ``/admin`` also
has run the same bodies with the whole bot as their scope (bot.admin_commands).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot import admin_commands as scoped
from bot.admin_commands import LOG_PAGE_HELP, QUEUE_PAGE_HELP, BlocklistTerm, JobNumber, Page, Reason
from bot.admin_render import render_member_quota, render_tier_set
from bot.errors import UserFacingError
from bot.job_choices import job_id_choices
from bot.permissions import operator_only
from jobs.models import UserLimit
from jobs.quota import effective_limits, quota_status, set_role_tier, set_user_limit

if TYPE_CHECKING:
    from bot.app import I2VBot

MAX_DAILY_SECONDS = 7 * 24 * 3600.0  # the largest per-user or per-tier budget the operator may set, GPU-seconds/24 h
MAX_PENDING_LIMIT = 100  # the largest pending-jobs cap the operator may set
BOT_WIDE = None  # the scope of every /operator command: no one server (see bot.admin_commands)


@app_commands.guild_only()
@app_commands.default_permissions(administrator=True)
class Operator(commands.GroupCog, group_name="operator", group_description="Run the whole bot (operator only)"):
    """The ``/operator`` command group: bot-wide. Each command checks the invoker at run time."""

    blocklist = app_commands.Group(name="blocklist", description="Words and phrases refused in prompts everywhere")

    def __init__(self, bot: I2VBot) -> None:
        self.bot = bot
        super().__init__()

    async def _defer(self, interaction: discord.Interaction) -> None:
        await scoped.defer(interaction)

    # -- the whole queue ------------------------------------------------------------------------------------

    @app_commands.command(name="queue")
    @app_commands.describe(page=QUEUE_PAGE_HELP)
    @operator_only()
    async def queue(self, interaction: discord.Interaction, page: Page = 1) -> None:
        """List every server's running and queued videos, with Cancel buttons."""
        await scoped.show_queue(self.bot, interaction, BOT_WIDE, page)

    @app_commands.command(name="cancel")
    @app_commands.describe(job="The job number (#N in /operator queue).")
    @operator_only()
    async def cancel(self, interaction: discord.Interaction, job: JobNumber) -> None:
        """Cancel anyone's video on any server: a queued one is refunded, a running one stops at its next step."""
        await scoped.cancel(self.bot, interaction, BOT_WIDE, job)

    @cancel.autocomplete("job")
    async def cancel_job_choices(
        self, interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[int]]:
        """Every server's queued and running jobs."""
        return await job_id_choices(self.bot, interaction, current)

    @app_commands.command(name="pause")
    @app_commands.describe(reason="Told to people whose requests wait while paused.")
    @operator_only()
    async def pause(self, interaction: discord.Interaction, reason: Reason | None = None) -> None:
        """Hold every server's videos: requests are still queued and start after resume; running ones finish."""
        await scoped.pause(self.bot, interaction, BOT_WIDE, reason)

    @app_commands.command(name="resume")
    @operator_only()
    async def resume(self, interaction: discord.Interaction) -> None:
        """Start making videos again after /operator pause."""
        await scoped.resume(self.bot, interaction, BOT_WIDE)

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
        await interaction.followup.send(
            render_member_quota(user.mention, status, limits, changed=changed), ephemeral=True
        )

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
        await interaction.followup.send(render_tier_set(role.mention, daily_seconds, max_pending), ephemeral=True)

    # -- bans ---------------------------------------------------------------------------------------------

    @app_commands.command(name="ban")
    @app_commands.describe(
        user="Who to ban (from every server the bot is in).", reason="Shown to them when a request is refused."
    )
    @operator_only()
    async def ban(self, interaction: discord.Interaction, user: discord.User, reason: Reason | None = None) -> None:
        """Ban someone on every server: their queued videos are cancelled and refunded, a running one finishes."""
        await scoped.ban(self.bot, interaction, BOT_WIDE, user, reason)

    @app_commands.command(name="unban")
    @app_commands.describe(user="Who to unban.")
    @operator_only()
    async def unban(self, interaction: discord.Interaction, user: discord.User) -> None:
        """Let someone make videos again (lifts a bot-wide ban)."""
        await scoped.unban(self.bot, interaction, BOT_WIDE, user)

    # -- views ----------------------------------------------------------------------------------------------

    @app_commands.command(name="stats")
    @operator_only()
    async def stats(self, interaction: discord.Interaction) -> None:
        """Every server's jobs today and this week, waits and generation times, GPU time, failures and workers."""
        await scoped.show_stats(self.bot, interaction, BOT_WIDE)

    @app_commands.command(name="log")
    @app_commands.describe(page=LOG_PAGE_HELP)
    @operator_only()
    async def audit_log(self, interaction: discord.Interaction, page: Page = 1) -> None:
        """Show the audit log of every action on every server (who, what, which scope, when), newest first."""
        await scoped.show_log(self.bot, interaction, BOT_WIDE, page)

    # -- content safety -------------------------------------------------------------------------------------

    @blocklist.command(name="add")
    @app_commands.describe(term="A word or phrase (whole words, any case).")
    @operator_only()
    async def blocklist_add(self, interaction: discord.Interaction, term: BlocklistTerm) -> None:
        """Refuse prompts holding a word or phrase on every server."""
        await scoped.blocklist_add(self.bot, interaction, BOT_WIDE, term)

    @blocklist.command(name="remove")
    @app_commands.describe(term="The word or phrase to allow again.")
    @operator_only()
    async def blocklist_remove(self, interaction: discord.Interaction, term: BlocklistTerm) -> None:
        """Take a word or phrase off the bot-wide run-time blocklist."""
        await scoped.blocklist_remove(self.bot, interaction, BOT_WIDE, term)

    @blocklist.command(name="list")
    @operator_only()
    async def blocklist_list(self, interaction: discord.Interaction) -> None:
        """Show the bot-wide blocklist."""
        await scoped.blocklist_show(self.bot, interaction, BOT_WIDE)

    @app_commands.command(name="reports")
    @operator_only()
    async def reports(self, interaction: discord.Interaction) -> None:
        """Reported videos on every server, with Delete, Ban maker (bot-wide) and Dismiss."""
        await scoped.show_reports(self.bot, interaction, BOT_WIDE)


async def setup(bot: I2VBot) -> None:
    """Extension entry point: the ``/operator`` group (its buttons are registered by bot.cogs.server_admin)."""
    await bot.add_cog(Operator(bot))
