"""``/quota``: your remaining GPU-time budget, when it refills, and your pending jobs."""

from __future__ import annotations

from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot.render import render_quota

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
        await interaction.followup.send(render_quota(await self.bot.quota_of(interaction)), ephemeral=True)


async def setup(bot: I2VBot) -> None:
    """Extension entry point."""
    await bot.add_cog(Quota(bot))
