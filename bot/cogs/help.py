"""``/help``: what the bot does, the commands this user may run, the presets with their values, the user's quota
and the web page's address (when WEB_PUBLIC_URL gives it one). Ephemeral.

The command list is read from the command tree and filtered by the same scope checks that guard each command
(:func:`bot.permissions.may_use`), so a member sees fewer commands than a server admin, and an admin fewer than
the operator; a command added later is listed without touching this module.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot.permissions import may_use
from bot.render import render_help
from generator.model_spaces import DEFAULT_PRESET, SPACES

if TYPE_CHECKING:
    from bot.app import I2VBot


def usable_commands(
    tree: app_commands.CommandTree[I2VBot], interaction: discord.Interaction
) -> tuple[list[tuple[str, str]], list[tuple[str, str, list[str]]]]:
    """The slash commands (name, description) and groups (name, description, subcommands) the interaction's user
    may run, in the tree's order; a group none of whose subcommands they may run is left out."""
    plain: list[tuple[str, str]] = []
    groups: list[tuple[str, str, list[str]]] = []
    for command in tree.get_commands(type=discord.AppCommandType.chat_input):
        if isinstance(command, app_commands.Group):
            subs = [
                sub.name
                for sub in command.walk_commands()
                if isinstance(sub, app_commands.Command) and may_use(interaction, sub)
            ]
            if subs:
                groups.append((command.name, command.description, subs))
        elif isinstance(command, app_commands.Command) and may_use(interaction, command):
            plain.append((command.name, command.description))
    return plain, groups


class Help(commands.Cog):
    """The /help command."""

    def __init__(self, bot: I2VBot) -> None:
        self.bot = bot

    @app_commands.command(name="help")
    async def help(self, interaction: discord.Interaction) -> None:
        """What this bot does, the commands you may use, the presets' values and your quota."""
        await interaction.response.defer(ephemeral=True, thinking=True)
        quota = await self.bot.quota_of(interaction)
        plain, groups = usable_commands(self.bot.tree, interaction)
        models = [(SPACES[key].display_name, SPACES[key].presets) for key in self.bot.settings.models]
        embed = render_help(
            plain,
            groups,
            models,
            DEFAULT_PRESET,
            quota,
            page_url=self.bot.settings.web_public_url,
            mentions=self.bot.get_cog("Mentions") is not None,
        )
        await interaction.followup.send(embed=embed, ephemeral=True)


async def setup(bot: I2VBot) -> None:
    """Extension entry point."""
    await bot.add_cog(Help(bot))
