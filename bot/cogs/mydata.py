"""``/delete-my-data``: delete every image and video the bot keeps of you; an operator may name any user.

What goes: the stored input images and finished videos of the user's jobs (in the job store and the bot's disk
copies), the reports they made and the reports about their videos, and the image safety check's verdicts on their
jobs. Queued jobs are cancelled (refunded) and lose their image too; a running job is asked to stop, and its
bytes go with the next deletion or retention pass. Job rows stay for statistics and the audit log (the deletion is
audited). Posted Discord messages are the user's to delete in Discord.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot.errors import NotYours
from bot.permissions import is_operator
from bot.render import render_data_deleted
from bot.withholding import delete_user_data_and_copies

if TYPE_CHECKING:
    from bot.app import I2VBot

log = logging.getLogger(__name__)

OPERATOR_ONLY = "Only the bot's operator can delete another user's data."


class MyData(commands.Cog):
    """A user's control over what the bot keeps of them."""

    def __init__(self, bot: I2VBot) -> None:
        self.bot = bot

    @app_commands.command(name="delete-my-data")
    async def delete_my_data(self, interaction: discord.Interaction, user: discord.User | None = None) -> None:
        """Delete every image and video the bot keeps of yours (queued videos are cancelled and refunded).

        Parameters
        ----------
        user:
            Operator only: whose data to delete (default: yours).
        """
        target = user or interaction.user
        if target.id != interaction.user.id and not is_operator(interaction, self.bot.operators):  # a bot-wide power
            log.warning("user %s may not delete the data of user %s", interaction.user.id, target.id)
            raise NotYours(OPERATOR_ONLY)
        await interaction.response.defer(ephemeral=True, thinking=True)
        deleted = await delete_user_data_and_copies(self.bot, target.id, by=interaction.user.id)
        own = target.id == interaction.user.id
        text = render_data_deleted(deleted, None if own else target.id)
        await interaction.followup.send(text, ephemeral=True, allowed_mentions=discord.AllowedMentions.none())


async def setup(bot: I2VBot) -> None:
    """Extension entry point."""
    await bot.add_cog(MyData(bot))
