"""The admin listings' buttons and the pages they show: queue and audit-log paging, Cancel #N, Clear confirmation.

Every button is a ``DynamicItem`` whose ``custom_id`` carries everything it needs (``i2va:<what>:...``), so it keeps
working after a restart and a forged ``custom_id`` gains nothing: the scope check runs on every click.

- ``i2va:queue:`` / ``i2va:log:`` page one server's listing (``/admin``): the server is the guild the click comes
  from, and the clicker must be its admin (or the operator).
- ``i2va:oqueue:`` / ``i2va:olog:`` page the bot-wide listings (``/operator``): operator only.
- ``i2va:cancel:<job>``: the operator cancels any job; a server admin only a job of the server the click comes from.
- ``i2va:clear:<expires>``: the ``/admin clear`` confirmation, for that server's admins.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import discord

from bot.admin_actions import cancel_as_admin, wake_monitor
from bot.admin_render import render_log, render_queue
from bot.permissions import is_operator, require_operator, require_server_admin
from bot.tree import explain_error

if TYPE_CHECKING:
    from bot.app import I2VBot

log = logging.getLogger(__name__)

QUEUE_PAGE_SIZE = 10  # jobs per queue page (two rows of five Cancel buttons)
CANCEL_BUTTONS_PER_ROW = 5  # Discord allows five buttons in one action row
LOG_PAGE_SIZE = 15  # audit rows per log page
CUSTOM_ID_PREFIX = "i2va"

Check = Callable[[discord.Interaction], Awaitable[bool]]


async def _run_guarded(interaction: discord.Interaction, check: Check, body: Callable[[], Awaitable[None]]) -> None:
    """Run a button's body after its scope check; refusals and failures become one ephemeral message."""
    if not await check(interaction):
        return
    try:
        await body()
    except Exception as error:  # the funnel tells the user, and logs anything unexpected
        await explain_error(interaction, error)


async def queue_reply(bot: I2VBot, guild_id: int | None, page: int) -> tuple[discord.Embed, discord.ui.View]:
    """A queue page (clamped to the last one) with its buttons: ``guild_id``'s jobs, or every job for ``None``."""
    from jobs.holds import pause_state
    from jobs.stats import queue_page

    async with bot.readers() as session:
        listing = await queue_page(session, offset=page * QUEUE_PAGE_SIZE, limit=QUEUE_PAGE_SIZE, guild_id=guild_id)
        if listing.page >= listing.pages:  # the queue shrank under this page
            last = listing.pages - 1
            listing = await queue_page(session, offset=last * QUEUE_PAGE_SIZE, limit=QUEUE_PAGE_SIZE, guild_id=guild_id)
        server_paused = guild_id is not None and (await pause_state(session, guild_id)).guild_paused
    now = discord.utils.utcnow()
    view = discord.ui.View(timeout=None)
    for index, entry in enumerate(listing.entries):
        view.add_item(AdminCancelButton(entry.job_id, row=index // CANCEL_BUTTONS_PER_ROW))
    nav_row = (len(listing.entries) + CANCEL_BUTTONS_PER_ROW - 1) // CANCEL_BUTTONS_PER_ROW
    button = QueuePageButton if guild_id is not None else OperatorQueuePageButton
    view.add_item(button(listing.page, "prev", row=nav_row, disabled=listing.page == 0))
    view.add_item(button(listing.page, "refresh", row=nav_row))
    view.add_item(button(listing.page, "next", row=nav_row, disabled=listing.page + 1 >= listing.pages))
    embed = render_queue(listing, now, bot_wide=guild_id is None, server_paused=server_paused)
    return embed, view


async def log_reply(bot: I2VBot, guild_id: int | None, page: int) -> tuple[discord.Embed, discord.ui.View]:
    """An audit-log page (clamped to the last one): ``guild_id``'s own actions, or everything for ``None``."""
    from jobs.stats import audit_page

    def fetch(session: Any, offset: int) -> Any:
        return audit_page(session, offset=offset, limit=LOG_PAGE_SIZE, guild_id=guild_id, with_bot_wide=False)

    async with bot.readers() as session:
        listing = await fetch(session, page * LOG_PAGE_SIZE)
        if listing.page >= listing.pages:
            listing = await fetch(session, (listing.pages - 1) * LOG_PAGE_SIZE)
    button = LogPageButton if guild_id is not None else OperatorLogPageButton
    view = discord.ui.View(timeout=None)
    view.add_item(button(listing.page, "prev", disabled=listing.page == 0))
    view.add_item(button(listing.page, "next", disabled=listing.page + 1 >= listing.pages))
    return render_log(listing, bot_wide=guild_id is None), view


_PAGE_STEP = {"prev": -1, "refresh": 0, "next": 1}


class _PageButton(
    discord.ui.DynamicItem[discord.ui.Button], template=CUSTOM_ID_PREFIX + r":(?P<listing>[a-z]+):(?P<page>[0-9]{1,6})"
):
    """Base for the paging buttons of a listing; the page it was on is in the ``custom_id``. Subclasses set
    LISTING (the ``custom_id`` segment), LABELS (kind -> label, kinds from ``_PAGE_STEP``), BOT_WIDE and ``reply``."""

    LISTING = ""
    LABELS: dict[str, str] = {}
    BOT_WIDE = False  # True: an /operator listing (every server), operator only

    def __init_subclass__(cls, **kwargs: Any) -> None:
        kinds = "|".join(cls.LABELS)
        super().__init_subclass__(template=rf"{CUSTOM_ID_PREFIX}:{cls.LISTING}:(?P<page>[0-9]{{1,6}}):(?P<kind>{kinds})")

    def __init__(self, page: int, kind: str, *, row: int | None = None, disabled: bool = False) -> None:
        super().__init__(
            discord.ui.Button(
                label=self.LABELS[kind],
                style=discord.ButtonStyle.secondary,
                custom_id=f"{CUSTOM_ID_PREFIX}:{self.LISTING}:{page}:{kind}",
                row=row,
                disabled=disabled,
            )
        )
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
        return cls(int(match["page"]), match["kind"])

    async def callback(self, interaction: discord.Interaction) -> None:  # type: ignore[override]
        bot: I2VBot = interaction.client  # type: ignore[assignment]
        guild_id = None if self.BOT_WIDE else interaction.guild_id

        async def body() -> None:
            await interaction.response.defer()
            embed, view = await self.reply(bot, guild_id, max(0, self.page + _PAGE_STEP[self.kind]))
            await interaction.edit_original_response(embed=embed, view=view)

        await _run_guarded(interaction, require_operator if self.BOT_WIDE else require_server_admin, body)


class QueuePageButton(_PageButton):
    """Previous / Refresh / Next on an ``/admin queue`` listing (this server's jobs)."""

    LISTING = "queue"
    LABELS = {"prev": "◀ Previous", "refresh": "Refresh", "next": "Next ▶"}
    reply = staticmethod(queue_reply)


class OperatorQueuePageButton(QueuePageButton):
    """Previous / Refresh / Next on an ``/operator queue`` listing (every server's jobs)."""

    LISTING = "oqueue"
    BOT_WIDE = True


class LogPageButton(_PageButton):
    """Previous / Next on an ``/admin log`` listing."""

    LISTING = "log"
    LABELS = {"prev": "◀ Newer", "next": "Older ▶"}
    reply = staticmethod(log_reply)


class OperatorLogPageButton(LogPageButton):
    """Previous / Next on an ``/operator log`` listing."""

    LISTING = "olog"
    BOT_WIDE = True


class AdminCancelButton(
    discord.ui.DynamicItem[discord.ui.Button], template=CUSTOM_ID_PREFIX + r":cancel:(?P<job>[0-9]{1,20})"
):
    """"Cancel #N" next to a job in a queue listing: the operator cancels any job, a server admin only their
    server's (the job's server must be the one the click comes from)."""

    def __init__(self, job_id: int, *, row: int | None = None) -> None:
        super().__init__(
            discord.ui.Button(
                label=f"Cancel #{job_id}",
                style=discord.ButtonStyle.danger,
                custom_id=f"{CUSTOM_ID_PREFIX}:cancel:{job_id}",
                row=row,
            )
        )
        self.job_id = job_id

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> AdminCancelButton:
        return cls(int(match["job"]))

    async def callback(self, interaction: discord.Interaction) -> None:  # type: ignore[override]
        bot: I2VBot = interaction.client  # type: ignore[assignment]

        async def body() -> None:
            await interaction.response.defer(ephemeral=True, thinking=True)
            bot_wide = is_operator(interaction, bot.settings)
            message = await cancel_as_admin(bot, interaction, self.job_id, bot_wide=bot_wide)
            await interaction.followup.send(message, ephemeral=True)

        await _run_guarded(interaction, require_server_admin, body)


class ClearConfirmButton(
    discord.ui.DynamicItem[discord.ui.Button], template=CUSTOM_ID_PREFIX + r":clear:(?P<expires>[0-9]{1,12})"
):
    """The confirmation of ``/admin clear`` (the clicking server's queued jobs); valid until the unix time in its
    ``custom_id``."""

    def __init__(self, expires_at: int) -> None:
        super().__init__(
            discord.ui.Button(
                label="Yes, cancel them all",
                style=discord.ButtonStyle.danger,
                custom_id=f"{CUSTOM_ID_PREFIX}:clear:{expires_at}",
            )
        )
        self.expires_at = expires_at

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> ClearConfirmButton:
        return cls(int(match["expires"]))

    async def callback(self, interaction: discord.Interaction) -> None:  # type: ignore[override]
        bot: I2VBot = interaction.client  # type: ignore[assignment]

        async def body() -> None:
            from jobs.queue import clear_queue

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


ADMIN_ITEMS: tuple[type[discord.ui.DynamicItem[Any]], ...] = (
    QueuePageButton,
    OperatorQueuePageButton,
    AdminCancelButton,
    ClearConfirmButton,
    LogPageButton,
    OperatorLogPageButton,
)
