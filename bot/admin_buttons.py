"""What a click on an admin listing's button does: queue and audit-log paging, Cancel #N, the Clear confirmation.

Every button is a ``DynamicItem`` matching a custom-id template of ``bot.components`` (``i2va:<what>:...``, which
also lays them out), so it keeps working after a restart and a forged ``custom_id`` gains nothing: the scope check
runs on every click.

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
from bot.components import ADMIN_CANCEL_TEMPLATE, CLEAR_CONFIRM_TEMPLATE, PAGE_STEP, REPORT_TEMPLATE, page_template
from bot.permissions import is_operator, require_operator, require_server_admin
from bot.tree import explain_error
from jobs.control import clear_queue

if TYPE_CHECKING:
    from bot.app import I2VBot

log = logging.getLogger(__name__)

Check = Callable[[discord.Interaction], Awaitable[bool]]


async def _run_guarded(interaction: discord.Interaction, check: Check, body: Callable[[], Awaitable[None]]) -> None:
    """Run a button's body after its scope check; refusals and failures become one ephemeral message."""
    if not await check(interaction):
        return
    try:
        await body()
    except Exception as error:  # noqa: BLE001 - the funnel tells the user, and logs anything unexpected
        await explain_error(interaction, error)


class _PageButton(discord.ui.DynamicItem[discord.ui.Button], template=page_template("queue")):
    """Base for the paging buttons of a listing; the page it was on is in the ``custom_id``. Subclasses set
    LISTING (the ``custom_id`` segment, a ``bot.components.PAGE_LISTINGS`` key), BOT_WIDE and ``reply``."""

    LISTING = "queue"
    BOT_WIDE = False  # True: an /operator listing (every server), operator only

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(template=page_template(cls.LISTING))

    def __init__(self, item: discord.ui.Button, page: int, kind: str) -> None:
        super().__init__(item)
        self.page = page
        self.kind = kind

    @staticmethod
    async def reply(bot: I2VBot, guild_id: int | None, page: int) -> tuple[discord.Embed, discord.ui.View]:
        """The listing's page ``page`` (subclasses)."""
        raise NotImplementedError

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> _PageButton:
        assert isinstance(item, discord.ui.Button)
        return cls(item, int(match["page"]), match["kind"])

    async def callback(self, interaction: discord.Interaction) -> None:
        bot: I2VBot = interaction.client  # type: ignore[assignment]
        guild_id = None if self.BOT_WIDE else interaction.guild_id

        async def body() -> None:
            await interaction.response.defer()
            embed, view = await self.reply(bot, guild_id, max(0, self.page + PAGE_STEP[self.kind]))
            await interaction.edit_original_response(embed=embed, view=view)

        await _run_guarded(interaction, require_operator if self.BOT_WIDE else require_server_admin, body)


class QueuePageButton(_PageButton):
    """Previous / Refresh / Next on an ``/admin queue`` listing (this server's jobs)."""

    LISTING = "queue"
    reply = staticmethod(queue_reply)


class OperatorQueuePageButton(QueuePageButton):
    """Previous / Refresh / Next on an ``/operator queue`` listing (every server's jobs)."""

    LISTING = "oqueue"
    BOT_WIDE = True


class LogPageButton(_PageButton):
    """Previous / Next on an ``/admin log`` listing."""

    LISTING = "log"
    reply = staticmethod(log_reply)


class OperatorLogPageButton(LogPageButton):
    """Previous / Next on an ``/operator log`` listing."""

    LISTING = "olog"
    BOT_WIDE = True


class AdminCancelButton(discord.ui.DynamicItem[discord.ui.Button], template=ADMIN_CANCEL_TEMPLATE):
    """ "Cancel #N" next to a job in a queue listing: the operator cancels any job, a server admin only their
    server's (the job's server must be the one the click comes from)."""

    def __init__(self, item: discord.ui.Button, job_id: int) -> None:
        super().__init__(item)
        self.job_id = job_id

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> AdminCancelButton:
        assert isinstance(item, discord.ui.Button)
        return cls(item, int(match["job"]))

    async def callback(self, interaction: discord.Interaction) -> None:
        bot: I2VBot = interaction.client  # type: ignore[assignment]

        async def body() -> None:
            await interaction.response.defer(ephemeral=True, thinking=True)
            bot_wide = is_operator(interaction, bot.operators)
            message = await cancel_as_admin(bot, interaction, self.job_id, bot_wide=bot_wide)
            await interaction.followup.send(message, ephemeral=True)

        await _run_guarded(interaction, require_server_admin, body)


class ClearConfirmButton(discord.ui.DynamicItem[discord.ui.Button], template=CLEAR_CONFIRM_TEMPLATE):
    """The confirmation of ``/admin clear`` (the clicking server's queued jobs); valid until the unix time in its
    ``custom_id``."""

    def __init__(self, item: discord.ui.Button, expires_at: int) -> None:
        super().__init__(item)
        self.expires_at = expires_at

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> ClearConfirmButton:
        assert isinstance(item, discord.ui.Button)
        return cls(item, int(match["expires"]))

    async def callback(self, interaction: discord.Interaction) -> None:
        bot: I2VBot = interaction.client  # type: ignore[assignment]

        async def body() -> None:
            if interaction.guild_id is None:
                return
            if time.time() > self.expires_at:
                await interaction.response.edit_message(
                    content="This confirmation has expired; nothing was cleared. Run /admin clear again.", view=None
                )
                return
            await interaction.response.defer()
            async with bot.sessions.begin() as session:
                ids = await clear_queue(session, by=interaction.user.id, guild_id=interaction.guild_id)
            wake_monitor(bot)
            log.info("admin %s cleared the queue of guild %s: %s", interaction.user.id, interaction.guild_id, ids)
            await interaction.edit_original_response(
                content=f"Cleared the queue: {len(ids)} queued job(s) cancelled and refunded. Running jobs go on.",
                view=None,
            )

        await _run_guarded(interaction, require_server_admin, body)


class ReportActionButton(discord.ui.DynamicItem[discord.ui.Button], template=REPORT_TEMPLATE):
    """Delete, Ban maker or Dismiss next to a reported video; the listing is then refreshed in place."""

    def __init__(self, item: discord.ui.Button, scope: str, action: str, job_id: int) -> None:
        super().__init__(item)
        self.bot_wide = scope == "o"
        self.action = action
        self.job_id = job_id

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> ReportActionButton:
        assert isinstance(item, discord.ui.Button)
        return cls(item, match["scope"], match["action"], int(match["job"]))

    async def callback(self, interaction: discord.Interaction) -> None:
        bot: I2VBot = interaction.client  # type: ignore[assignment]

        async def body() -> None:
            await interaction.response.defer()  # the listing itself is edited after the action
            message = await act_on_report(bot, interaction, self.job_id, self.action, bot_wide=self.bot_wide)
            await interaction.followup.send(message, ephemeral=True)
            embed, view = await reports_reply(bot, None if self.bot_wide else interaction.guild_id)
            try:
                await interaction.edit_original_response(embed=embed, view=view)
            except discord.HTTPException as error:  # the listing is a convenience; the action is done
                log.info("could not refresh the reports listing: %s", error)

        await _run_guarded(interaction, require_operator if self.bot_wide else require_server_admin, body)


ADMIN_ITEMS: tuple[type[discord.ui.DynamicItem[Any]], ...] = (
    QueuePageButton,
    OperatorQueuePageButton,
    AdminCancelButton,
    ClearConfirmButton,
    LogPageButton,
    OperatorLogPageButton,
    ReportActionButton,
)
