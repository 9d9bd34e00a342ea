"""``/web``: a personal, single-use sign-in link to the web page, shown only to the user who asked.

The link acts as that Discord user on the page (their quota, pending cap, bans and history); it carries the
member's role ids in this server, so the page applies the same role tiers (re-read from Discord while the session
lasts: ``bot.web_roles``). It works once and expires after ``jobs.web_sessions.DEFAULT_LINK_TTL_SECONDS``; the
page's address is WEB_PUBLIC_URL (default http://WEB_HOST:WEB_PORT). A user banned from the bot or from this server
gets no link.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot.permissions import member_role_ids
from bot.render import render_signin_link
from jobs.control import refuse_banned
from jobs.web_sessions import DEFAULT_LINK_TTL_SECONDS, create_link

if TYPE_CHECKING:
    from bot.app import I2VBot


def page_address(bot: I2VBot) -> str:
    """Where users reach the page."""
    settings = bot.settings
    if settings.web_public_url:
        return settings.web_public_url
    port = getattr(bot.web_server, "port", None) or settings.web_port
    host = f"[{settings.web_host}]" if ":" in settings.web_host else settings.web_host
    return f"http://{host}:{port}"


class WebSignIn(commands.Cog):
    """The web page's sign-in link."""

    def __init__(self, bot: I2VBot) -> None:
        self.bot = bot

    @app_commands.command(name="web")
    async def web(self, interaction: discord.Interaction) -> None:
        """Get a personal sign-in link to the web page (works once, for a few minutes)."""

        await interaction.response.defer(ephemeral=True, thinking=True)
        async with self.bot.sessions.begin() as session:
            # a user banned from the bot, or from this server, gets no link (the tree's error answer says why)
            await refuse_banned(session, interaction.user.id, interaction.guild_id)
            token = await create_link(
                session, interaction.user.id, guild_id=interaction.guild_id, role_ids=member_role_ids(interaction)
            )
        link = f"{page_address(self.bot)}/signin?token={token}"
        await interaction.followup.send(render_signin_link(link, DEFAULT_LINK_TTL_SECONDS), ephemeral=True)


async def setup(bot: I2VBot) -> None:
    """Extension entry point."""
    await bot.add_cog(WebSignIn(bot))
