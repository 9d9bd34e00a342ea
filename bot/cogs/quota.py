"""``/quota``: your remaining GPU-time budget, when it refills, and your pending jobs."""

from __future__ import annotations

from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

if TYPE_CHECKING:
    from bot.app import I2VBot


def render_quota(status: object) -> str:
    """The /quota answer for a ``jobs.quota.QuotaStatus``."""
    budget = getattr(status, "budget")
    used = getattr(status, "used")
    reserved = getattr(status, "reserved")
    remaining = getattr(status, "remaining")
    refill_at = getattr(status, "refill_at", None)
    pending = getattr(status, "pending")
    max_pending = getattr(status, "max_pending")
    lines = [
        f"Budget: **{remaining:.0f}** of {budget:.0f} GPU-seconds left today "
        f"(used {used:.0f}, reserved for pending jobs {reserved:.0f}).",
        f"Pending jobs: {pending} of {max_pending}.",
    ]
    if refill_at is not None:
        lines.append(f"Next refill: <t:{int(refill_at.timestamp())}:R>.")
    return "\n".join(lines)


class Quota(commands.Cog):
    """The user's quota."""

    def __init__(self, bot: I2VBot) -> None:
        self.bot = bot

    @app_commands.command(name="quota")
    async def quota(self, interaction: discord.Interaction) -> None:
        """Show how much GPU time you have left today, when it refills, and your pending videos."""
        from jobs.quota import quota_status

        await interaction.response.defer(ephemeral=True, thinking=True)
        async with self.bot.readers() as session:
            status = await quota_status(session, interaction.user.id, self.bot.quota_policy(interaction))
        await interaction.followup.send(render_quota(status), ephemeral=True)


async def setup(bot: I2VBot) -> None:
    """Extension entry point."""
    await bot.add_cog(Quota(bot))
