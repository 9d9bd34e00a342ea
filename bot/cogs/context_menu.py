"""*Apps → Animate*: a message context-menu command that animates the image in (or embedded in) a message.

It needs no privileged intent: Discord sends the target message whole with the interaction. The handler only
picks the image, reads which models the server allows and opens the form (a modal must be the first response,
within Discord's 3 seconds); the form's submission goes through the same request path as ``/animate``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot.errors import UserFacingError
from bot.image_origin import check_image_url
from bot.modals import AnimateModal
from bot.requests import NO_IMAGE_MESSAGE, check_interaction_channel, find_image, server_models

if TYPE_CHECKING:
    from bot.app import I2VBot


class ContextMenu(commands.Cog):
    """Registers the *Animate* message command."""

    def __init__(self, bot: I2VBot) -> None:
        self.bot = bot
        self.menu = app_commands.ContextMenu(name="Animate", callback=self.animate_message)
        self.menu.guild_only = True

    async def cog_load(self) -> None:
        self.bot.tree.add_command(self.menu)

    async def cog_unload(self) -> None:
        self.bot.tree.remove_command(self.menu.name, type=self.menu.type)

    async def animate_message(self, interaction: discord.Interaction, message: discord.Message) -> None:
        """Open the prompt modal for the image in ``message`` (unless the bot may not post here: refused before
        the user fills the form)."""
        check_interaction_channel(interaction)
        image = find_image(message)
        if image is None:
            raise UserFacingError(NO_IMAGE_MESSAGE)
        url, size = image
        check_image_url(url, self.bot.settings.api_base)  # refuse before asking for a prompt (checked again later)
        models = await server_models(self.bot, interaction.guild_id)  # the model select's options
        await interaction.response.send_modal(
            AnimateModal(
                image_url=url, image_size=size, message_id=message.id, prefill=message.content or "", models=models
            )
        )


async def setup(bot: I2VBot) -> None:
    """Extension entry point."""
    await bot.add_cog(ContextMenu(bot))
