"""The bot: :class:`I2VBot`, a ``commands.Bot`` whose ``setup_hook`` does all the start-up work.

Start-up order (``setup_hook``): migrate the database, open the engine, load the cogs (``bot.cogs.EXTENSIONS`` and
the admin cog if it exists), register the restart-safe buttons, sync application commands if they changed, start
the embedded worker supervisor (``WORKER=embedded``) after requeueing the jobs of this host's dead worker processes,
and start the job monitor that edits status messages and
delivers results. ``close()`` undoes it in reverse.
"""

from __future__ import annotations

import importlib.util
import logging
from typing import TYPE_CHECKING, Any

import aiohttp
import discord
from discord.ext import commands

from bot.admin_actions import delete_posted_video
from bot.cogs import EXTENSIONS, OPTIONAL_EXTENSIONS
from bot.command_sync import sync_if_changed
from bot.lag import LoopLagMonitor
from bot.monitor import JobMonitor
from bot.operators import Operators, read_operators
from bot.permissions import is_operator, member_role_ids
from bot.settings import BotSettings
from bot.tree import I2VTree
from bot.views import DYNAMIC_ITEMS
from bot.web_roles import RoleRecheck
from jobs.db import make_engine, make_sessionmaker, migrate
from jobs.quota import QuotaPolicy, QuotaStatus, quota_status
from web.server import WebServer, start_web_page
from web.standalone import embedded_supervisor, supervisor_problem

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

log = logging.getLogger(__name__)

SHUTDOWN_DELIVERY_SECONDS = 10.0  # on close, how long to deliver what the worker finished in its grace period
DOWNLOAD_TIMEOUT_SECONDS = 15.0  # total time allowed to fetch one input image


class I2VBot(commands.Bot):
    """The i2v Discord bot. Shared resources hang off the instance for the cogs: ``settings``, ``sessions``."""

    user: discord.ClientUser

    def __init__(self, settings: BotSettings) -> None:
        intents = discord.Intents.default()
        intents.message_content = settings.message_content_intent
        super().__init__(
            command_prefix=commands.when_mentioned,
            help_command=None,
            intents=intents,
            tree_cls=I2VTree,
            chunk_guilds_at_startup=False,
            guild_ready_timeout=settings.guild_ready_timeout,
            # No message pings anyone unless it says so: user text (prompts, flags, reasons, errors) never pings;
            # delivery mentions its requester explicitly (bot.delivery).
            allowed_mentions=discord.AllowedMentions.none(),
        )
        self.settings = settings
        self.operators = Operators.from_settings(settings)  # the application's owner joins in setup_hook
        self.engine: AsyncEngine | None = None
        self.read_engine: AsyncEngine | None = None
        self._sessions: async_sessionmaker[AsyncSession] | None = None
        self._readers: async_sessionmaker[AsyncSession] | None = None
        self.supervisor: Any | None = None
        self.monitor: JobMonitor | None = None
        self.web_server: WebServer | None = None  # started last in setup_hook
        self.role_recheck: RoleRecheck | None = None  # re-reads signed-in members' roles (bot.web_roles)
        self.web: aiohttp.ClientSession | None = None
        self.loaded_extensions: list[str] = []
        self.lag = LoopLagMonitor(settings.loop_lag_report)
        self._closing = False

    @property
    def sessions(self) -> async_sessionmaker[AsyncSession]:
        """The session factory for the job store (set up in ``setup_hook``); on SQLite each transaction takes the
        write lock at once, so use it for transactions that write."""
        if self._sessions is None:
            raise RuntimeError("I2VBot.sessions used before setup_hook ran")
        return self._sessions

    @property
    def readers(self) -> async_sessionmaker[AsyncSession]:
        """Sessions for reading only: on SQLite they never wait for the write lock (WAL readers do not block), so
        a button or /queue answers in time while the worker writes progress."""
        if self._readers is None:
            raise RuntimeError("I2VBot.readers used before setup_hook ran")
        return self._readers

    async def setup_hook(self) -> None:
        """Migrate, load cogs, register buttons, sync commands, start the worker and the job monitor."""
        settings = self.settings
        self.lag.start()
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        settings.output_dir.mkdir(parents=True, exist_ok=True)
        await migrate(settings.database_url)
        self.engine = make_engine(settings.database_url)
        self._sessions = make_sessionmaker(self.engine)
        self.read_engine = make_engine(settings.database_url, read_only=True)
        self._readers = make_sessionmaker(self.read_engine)
        self.web = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=DOWNLOAD_TIMEOUT_SECONDS))

        await self.load_extensions()
        self.add_dynamic_items(*DYNAMIC_ITEMS)

        assert self.application_id is not None  # set by login() before setup_hook
        self.operators = await read_operators(self, self.sessions, settings)
        await sync_if_changed(self.tree, self.application_id, settings.data_dir)

        if settings.worker == "embedded":
            await self._start_supervisor()
        self.monitor = JobMonitor(self)
        self.monitor.start()
        self.role_recheck = RoleRecheck(self)
        self.role_recheck.start()
        await self._start_web_page()
        log.info("setup done: extensions %s, worker %s", ", ".join(self.loaded_extensions), settings.worker)

    async def load_extensions(self) -> None:
        """Load the cogs, which declare the application commands (nothing is sent to Discord here)."""
        for name in EXTENSIONS:
            await self.load_extension(name)
            self.loaded_extensions.append(name)
        for name in OPTIONAL_EXTENSIONS:
            if importlib.util.find_spec(name) is None:
                log.info("optional extension %s is not installed; skipping", name)
                continue
            await self.load_extension(name)
            self.loaded_extensions.append(name)

    async def _start_supervisor(self) -> None:
        self.supervisor = embedded_supervisor(self.settings)
        await self.supervisor.start()

    async def _start_web_page(self) -> None:
        """The web page, /healthz and /metrics on WEB_HOST:WEB_PORT, over this bot's store and worker. A port that
        cannot be bound is logged and the bot runs without the page."""
        try:
            self.web_server = await start_web_page(
                self.settings, sessions=self.sessions, readers=self.readers, facts=self
            )
        except OSError as error:
            log.error("the web page cannot listen on %s:%s: %s", self.settings.web_host, self.settings.web_port, error)
            self.web_server = None

    def worker_problem(self) -> str | None:
        """Why the embedded worker cannot run (the supervisor's reason), or None (``web.context.AppFacts``)."""
        return supervisor_problem(self.supervisor)

    def gateway_latency(self) -> float | None:
        """Discord's gateway latency while connected (``web.context.AppFacts``)."""
        return self.latency if self.is_ready() else None

    async def delete_message(self, channel_id: int, guild_id: int | None, message_id: int) -> None:
        """Remove a message the bot posted (the console's Delete on a reported video; ``web.context.AppFacts``)."""
        await delete_posted_video(self, channel_id, guild_id, message_id)

    async def close(self) -> None:
        """Stop the worker (its running job gets I2V_GRACE_SECONDS to finish), deliver what it finished, stop the
        monitor, close the store, then disconnect (once; later calls return)."""
        if self._closing:
            return
        self._closing = True
        if self.web_server is not None:
            await self.web_server.stop()
        if self.role_recheck is not None:
            await self.role_recheck.stop()
        if self.supervisor is not None:
            try:
                await self.supervisor.stop(self.settings.grace_seconds)
            except Exception:
                log.exception("stopping the worker supervisor failed")
        if self.monitor is not None:
            if self.supervisor is not None and self.is_ready():
                await self.monitor.deliver_finished(SHUTDOWN_DELIVERY_SECONDS)
            await self.monitor.stop()
        if self.web is not None:
            await self.web.close()
        await super().close()
        for engine in (self.engine, self.read_engine):
            if engine is not None:
                await engine.dispose()
        await self.lag.stop()

    async def on_message(self, message: discord.Message, /) -> None:
        """No prefix commands: mentions are handled by the mentions cog's listener, if enabled."""

    # -- helpers the cogs share -------------------------------------------------------------------------------

    def is_operator(self, actor: discord.Interaction | discord.Member | discord.User) -> bool:
        """Whether ``actor`` is the bot's operator (the application's owner, OPERATOR_USER_IDS /
        OPERATOR_ROLE_IDS; see bot.operators and bot.permissions)."""
        return is_operator(actor, self.operators)

    def quota_policy(self, actor: discord.Interaction | discord.Member | discord.User) -> QuotaPolicy:
        """The quota rules for ``actor`` (an interaction's user or a message author): roles select tiers."""
        return QuotaPolicy.of_requester(
            self.settings, role_ids=member_role_ids(actor), is_admin=self.is_operator(actor)
        )

    async def quota_of(self, interaction: discord.Interaction) -> QuotaStatus:
        """The quota of the interaction's user (``/quota``, ``/help``): what is left, when it refills, pending jobs."""
        async with self.readers() as session:
            return await quota_status(session, interaction.user.id, self.quota_policy(interaction))
