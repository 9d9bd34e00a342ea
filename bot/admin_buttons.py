"""What a click on an admin listing's button does: queue and audit-log paging, Cancel #N, the Clear confirmation.

Every button is a ``bot.views.ClickItem`` matching a custom-id template of ``bot.components``
(``i2va:<what>:...``, which also lays them out), so it keeps working after a restart and a forged ``custom_id``
gains nothing: the scope check runs on every click.

- ``i2va:queue:`` / ``i2va:log:`` page one server's listing (``/admin``): the server is the guild the click comes
  from, and the clicker must be its admin (or the operator).
- ``i2va:oqueue:`` / ``i2va:olog:`` page the bot-wide listings (``/operator``): operator only.
- ``i2va:cancel:<job>``: the operator cancels any job; a server admin only a job of the server the click comes from.
- ``i2va:clear:<expires>``: the ``/admin clear`` confirmation, for that server's admins.
- ``i2va:rep:<s|o>:<action>:<job>``: Delete, Ban maker or Dismiss on a reported video (``/admin reports``: that
  server's admins, its own videos only; ``/operator reports``: the operator, a ban there is bot-wide).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import discord

from bot.admin_actions import act_on_report, cancel_as_admin, wake_monitor
from bot.admin_commands import log_reply, queue_reply, reports_reply
from bot.admin_render import CLEAR_EXPIRED, render_cleared
from bot.components import (
    ADMIN_CANCEL_TEMPLATE,
    CLEAR_CONFIRM_TEMPLATE,
    PAGE_LISTINGS,
    PAGE_STEP,
    PAGE_TEMPLATE,
    REPORT_TEMPLATE,
)
from bot.permissions import is_operator, require_operator, require_server_admin
from bot.views import ClickItem
from jobs.control import clear_queue

if TYPE_CHECKING:
    from bot.app import I2VBot

log = logging.getLogger(__name__)


class _AdminButton(ClickItem[discord.ui.Button]):
    """Base of the admin listings' buttons: a click passes the scope check first, the operator's for a bot-wide
    listing (``bot_wide``), else a server admin's (the operator passes both)."""

    bot_wide = False

    async def allowed(self, interaction: discord.Interaction) -> bool:
        return await (require_operator if self.bot_wide else require_server_admin)(interaction)


ListingReply = Callable[["I2VBot", int | None, int], Awaitable[tuple[discord.Embed, discord.ui.View]]]

# a listing's custom-id segment -> (what renders one of its pages, whether it is the operator's bot-wide one)
LISTING_REPLIES: dict[str, tuple[ListingReply, bool]] = {
    "queue": (queue_reply, False),  # /admin queue: this server's jobs
    "oqueue": (queue_reply, True),  # /operator queue: every server's
    "log": (log_reply, False),
    "olog": (log_reply, True),
}


class PageButton(_AdminButton, template=PAGE_TEMPLATE):
    """Previous / Refresh / Next on a queue listing, Newer / Older on an audit-log listing; the listing and the
    page it was on are in the ``custom_id``."""

    def parse(self, match: re.Match[str]) -> None:
        self.listing = match["listing"]
        self.page = int(match["page"])
        self.kind = match["kind"]
        if self.kind not in PAGE_LISTINGS[self.listing]:
            raise ValueError(f"the {self.listing} listing has no {self.kind!r} button")
        self.reply, self.bot_wide = LISTING_REPLIES[self.listing]

    async def run(self, bot: I2VBot, interaction: discord.Interaction) -> None:
        await interaction.response.defer()
        guild_id = None if self.bot_wide else interaction.guild_id
        embed, view = await self.reply(bot, guild_id, max(0, self.page + PAGE_STEP[self.kind]))
        await interaction.edit_original_response(embed=embed, view=view)


class AdminCancelButton(_AdminButton, template=ADMIN_CANCEL_TEMPLATE):
    """ "Cancel #N" next to a job in a queue listing: the operator cancels any job, a server admin only their
    server's (the job's server must be the one the click comes from)."""

    def parse(self, match: re.Match[str]) -> None:
        self.job_id = int(match["job"])

    async def run(self, bot: I2VBot, interaction: discord.Interaction) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        bot_wide = is_operator(interaction, bot.operators)
        message = await cancel_as_admin(bot, interaction, self.job_id, bot_wide=bot_wide)
        await interaction.followup.send(message, ephemeral=True)


class ClearConfirmButton(_AdminButton, template=CLEAR_CONFIRM_TEMPLATE):
    """The confirmation of ``/admin clear`` (the clicking server's queued jobs); valid until the unix time in its
    ``custom_id``."""

    def parse(self, match: re.Match[str]) -> None:
        self.expires_at = int(match["expires"])

    async def run(self, bot: I2VBot, interaction: discord.Interaction) -> None:
        if interaction.guild_id is None:
            return
        if time.time() > self.expires_at:
            await interaction.response.edit_message(content=CLEAR_EXPIRED, view=None)
            return
        await interaction.response.defer()
        async with bot.sessions.begin() as session:
            ids = await clear_queue(session, by=interaction.user.id, guild_id=interaction.guild_id)
        wake_monitor(bot)
        log.info("admin %s cleared the queue of guild %s: %s", interaction.user.id, interaction.guild_id, ids)
        await interaction.edit_original_response(content=render_cleared(len(ids)), view=None)


class ReportActionButton(_AdminButton, template=REPORT_TEMPLATE):
    """Delete, Ban maker or Dismiss next to a reported video; the listing is then refreshed in place."""

    def parse(self, match: re.Match[str]) -> None:
        self.bot_wide = match["scope"] == "o"
        self.action = match["action"]
        self.job_id = int(match["job"])

    async def run(self, bot: I2VBot, interaction: discord.Interaction) -> None:
        await interaction.response.defer()  # the listing itself is edited after the action
        message = await act_on_report(bot, interaction, self.job_id, self.action, bot_wide=self.bot_wide)
        await interaction.followup.send(message, ephemeral=True)
        embed, view = await reports_reply(bot, None if self.bot_wide else interaction.guild_id)
        try:
            await interaction.edit_original_response(embed=embed, view=view)
        except discord.HTTPException as error:  # the listing is a convenience; the action is done
            log.info("could not refresh the reports listing: %s", error)


ADMIN_ITEMS: tuple[type[discord.ui.DynamicItem[Any]], ...] = (
    PageButton,
    AdminCancelButton,
    ClearConfirmButton,
    ReportActionButton,
)
