"""The bot's extensions, one cog per module; each module ends in ``async def setup(bot)``.

``I2VBot.setup_hook`` loads :data:`EXTENSIONS` in order, then each of :data:`OPTIONAL_EXTENSIONS` whose module
exists. The two admin groups are split by scope: ``/admin`` (one server's admins) and ``/operator`` (the bot's).
"""

from __future__ import annotations

EXTENSIONS: tuple[str, ...] = (
    "bot.cogs.animate",
    "bot.cogs.context_menu",
    "bot.cogs.queue",
    "bot.cogs.quota",
    "bot.cogs.mentions",
    "bot.cogs.mydata",
    "bot.cogs.web_signin",
    "bot.cogs.help",
)
OPTIONAL_EXTENSIONS: tuple[str, ...] = ("bot.cogs.server_admin", "bot.cogs.operator")
