"""Mention-replies (only with ``MESSAGE_CONTENT_INTENT=true``): ``@bot the sea moves --frames 12`` with an image,
or as a reply to a message that has one. The text is the prompt; ``--flag value`` pairs set parameters.
Errors are replies to the request message.
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING, Any

import discord
from discord.ext import commands

from bot.errors import UserFacingError
from bot.requests import handle_mention
from bot.tree import GENERIC_FAILURE, user_message

if TYPE_CHECKING:
    from bot.app import I2VBot

log = logging.getLogger(__name__)

FLAG_PATTERN = re.compile(r'(?<!\S)--([A-Za-z_-]+)(?:\s+("[^"]*"|\'[^\']*\'|(?!--)\S+))?')
#: flag -> (resolve_params keyword, converter)
FLAGS: dict[str, tuple[str, type]] = {
    "model": ("model", str),
    "preset": ("preset", str),
    "frames": ("frames", int),
    "steps": ("steps", int),
    "seed": ("seed", int),
    "fps": ("fps", int),
    "guidance": ("guidance", float),
    "resolution": ("resolution", str),
    "neg": ("negative_prompt", str),
}


class FlagError(UserFacingError):
    """A mention request's flags do not parse."""


def parse_request(text: str) -> tuple[str, dict[str, Any]]:
    """Split a mention's text (mentions already removed) into the prompt and the parameters named by flags."""
    options: dict[str, Any] = {}
    for match in FLAG_PATTERN.finditer(text):
        name, raw = match.group(1).lower(), match.group(2)
        if name not in FLAGS:
            raise FlagError(f"Unknown flag --{name}; use " + ", ".join(f"--{flag}" for flag in FLAGS) + ".")
        if raw is None:
            raise FlagError(f"--{name} needs a value, e.g. --{name} {'quick' if name == 'preset' else '10'}.")
        key, convert = FLAGS[name]
        value = raw[1:-1] if raw[:1] in "\"'" and raw[-1:] == raw[:1] and len(raw) >= 2 else raw
        try:
            options[key] = convert(value)
        except ValueError:
            kind = "a whole number" if convert is int else "a number"
            raise FlagError(f"--{name} {value!r} is not {kind}.") from None
    prompt = " ".join(FLAG_PATTERN.sub(" ", text).split())
    return prompt, options


def strip_mentions(content: str, bot_id: int) -> str:
    """The message text without the bot's mention."""
    return re.sub(rf"<@!?{bot_id}>", " ", content).strip()


class Mentions(commands.Cog):
    """Listens for messages that mention the bot."""

    def __init__(self, bot: I2VBot) -> None:
        self.bot = bot

    def _addresses_bot(self, message: discord.Message) -> bool:
        me = self.bot.user.id
        return f"<@{me}>" in message.content or f"<@!{me}>" in message.content

    @commands.Cog.listener()
    async def on_message(self, message: discord.Message) -> None:
        """Treat a message that mentions the bot as a request; reply with the error if it is refused."""
        if message.author.bot or message.guild is None or not self._addresses_bot(message):
            return
        try:
            await self._handle(message)
        except Exception as error:
            text = user_message(error)
            if text is None:
                log.error("mention request %s failed", message.id, exc_info=error)
                text = GENERIC_FAILURE
            try:
                await message.reply(text, mention_author=False)
            except discord.HTTPException:
                log.warning("could not reply to message %s: %s", message.id, text)

    async def _handle(self, message: discord.Message) -> None:
        prompt, options = parse_request(strip_mentions(message.content, self.bot.user.id))
        await handle_mention(self.bot, message, prompt, options)


async def setup(bot: I2VBot) -> None:
    """Extension entry point: only when the Message Content intent is enabled (MESSAGE_CONTENT_INTENT=true)."""
    if bot.settings.message_content_intent:
        await bot.add_cog(Mentions(bot))
