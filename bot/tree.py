"""The one error funnel: :class:`I2VTree.on_error` turns every refusal into one short ephemeral message.

Buttons and modals route their errors here too (:func:`explain_error`), so a refusal reads the same wherever it
happens. Only unexpected errors are logged with a traceback.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import discord
from discord import app_commands

from bot.errors import UserFacingError
from generator.images import ImageError
from generator.params import ParamError
from jobs.errors import RequestRefused

if TYPE_CHECKING:
    from bot.app import I2VBot  # noqa: F401 - named as a string in I2VTree's base class, evaluated at import

log = logging.getLogger(__name__)

GENERIC_FAILURE = "Something went wrong on our side; nothing was queued or charged. Please try again."


def user_message(error: BaseException) -> str | None:
    """The user-facing sentence for a known refusal, or None for an unexpected error."""
    if isinstance(error, (app_commands.CommandInvokeError, app_commands.TransformerError)) and error.__cause__:
        inner = error.__cause__
        if not isinstance(error, app_commands.TransformerError) or user_message(inner) is not None:
            return user_message(inner)
    if isinstance(error, app_commands.CommandInvokeError):
        return user_message(error.original)
    if isinstance(error, UserFacingError):
        return error.message
    if isinstance(error, (RequestRefused, ParamError, ImageError)):
        return str(error)
    if isinstance(error, app_commands.TransformerError):
        return f"{error.value!r} is not a valid value for that option."
    if isinstance(error, app_commands.NoPrivateMessage):
        return "This command only works in a server."
    if isinstance(error, app_commands.CheckFailure):
        return str(error) or "You can't use this here."
    return None


async def send_ephemeral(interaction: discord.Interaction, message: str) -> None:
    """Answer ``interaction`` with an ephemeral message, whether or not it was already acknowledged."""
    try:
        if interaction.response.is_done():
            await interaction.followup.send(message, ephemeral=True)
        else:
            await interaction.response.send_message(message, ephemeral=True)
    except discord.HTTPException:
        log.warning("could not tell user %s: %s", interaction.user.id, message, exc_info=True)


async def explain_error(interaction: discord.Interaction, error: BaseException) -> None:
    """Tell the user why their interaction was refused; log anything unexpected."""
    message = user_message(error)
    if message is None:
        log.error("unexpected error in interaction %s", interaction.id, exc_info=error)
        message = GENERIC_FAILURE
    await send_ephemeral(interaction, message)


class I2VTree(app_commands.CommandTree["I2VBot"]):
    """Command tree whose ``on_error`` is the bot's single error funnel."""

    async def on_error(self, interaction: discord.Interaction, error: app_commands.AppCommandError, /) -> None:
        """Send one short ephemeral message for ``error``."""
        await explain_error(interaction, error)
