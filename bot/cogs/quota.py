"""``/quota``: your remaining GPU-time budget, when it refills, and your pending jobs."""

from __future__ import annotations

from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot.render import render_quota
from jobs.quota import quota_status

if TYPE_CHECKING:
    from bot.app import I2VBot


class Quota(commands.Cog):
    """The user's quota."""

    def __init__(self, bot: I2VBot) -> None:
        self.bot = bot

    @app_commands.command(name="quota")
    async def quota(self, interaction: discord.Interaction) -> None:
        """Show how much GPU time you have left today, when it refills, and your pending videos."""
        await interaction.response.defer(ephemeral=True, thinking=True)
        async with self.bot.readers() as session:
            status = await quota_status(session, interaction.user.id, self.bot.quota_policy(interaction))
        await interaction.followup.send(render_quota(status), ephemeral=True)


async def setup(bot: I2VBot) -> None:
    """Extension entry point."""
    await bot.add_cog(Quota(bot))
