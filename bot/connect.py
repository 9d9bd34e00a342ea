"""Logging in to Discord and staying connected, with one log line per failure instead of a traceback.

:func:`run_until_stopped` runs the bot until SIGTERM or SIGINT (at any moment: during login, during start-up,
while connected) and returns the exit status. Login (``/users/@me`` and the application) is timed by
DISCORD_CONNECT_TIMEOUT_SECONDS and retried with a doubling back-off up to DISCORD_RETRY_MAX_SECONDS when Discord is
unreachable (DNS failure, connection refused), silent, or answers with a server error. A rejected token, or a
privileged intent the bot is not allowed, ends the process with :data:`EXIT_LOGIN_REFUSED` (3): restarting cannot
help, so the systemd unit does not restart on it. A start-up that failed (the database cannot be reached) ends it
with :data:`EXIT_START_FAILED` (1), which a supervisor may restart. Start-up (``setup_hook``: migrations,
the worker) runs after login and is not timed. A gateway that cannot be reached is retried the same way
(:func:`hold_gateway`); once connected, discord.py reconnects by itself, and its reconnect notes are cut to one line
(:class:`OneLineReconnects`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
from urllib.parse import urlsplit

import aiohttp
import discord
from sqlalchemy.exc import SQLAlchemyError

from bot.app import I2VBot
from bot.channel_access import invite_url

log = logging.getLogger("bot.connect")

EXIT_OK = 0
EXIT_START_FAILED = 1  # start-up after login failed (e.g. the database cannot be reached): a restart may help
EXIT_LOGIN_REFUSED = 3  # Discord refused the login (a rejected token, a privileged intent not allowed): fix, then start
RETRY_INITIAL_S = 1.0  # first wait before another login attempt; doubles each time
CLOSE_CODE_REASONS = {
    4004: "the token was rejected",
    4013: "invalid intents",
    4014: "a privileged intent is not enabled",
}


class FatalLogin(Exception):
    """Discord will not let this bot in, or the start-up after login failed; retrying at once cannot help.
    ``str()`` is the one line to log; ``exit_status`` the process's exit status."""

    def __init__(self, message: str, *, exit_status: int = EXIT_START_FAILED) -> None:
        super().__init__(message)
        self.exit_status = exit_status


class OneLineReconnects(logging.Filter):
    """discord.py logs each reconnect with a full traceback; keep its message and the exception's first line.

    While the first gateway connection is still being made (``bot.ws`` is None) the record is dropped and its
    exception kept in ``first_error``: :func:`hold_gateway` reports that attempt itself.
    """

    def __init__(self, bot: I2VBot) -> None:
        super().__init__()
        self.bot = bot
        self.first_error: BaseException | None = None

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.getMessage().startswith("Attempting a reconnect"):
            error = record.exc_info[1]
            if self.bot.ws is None:
                self.first_error = error
                return False
            record.msg = f"{record.getMessage()}: {describe_error(error) if error else 'connection lost'}"
            record.args = None
            record.exc_info = None
            record.exc_text = None
        return True


def describe_error(error: BaseException) -> str:
    """One line for a connection error."""
    if isinstance(error, aiohttp.ClientConnectorError):
        os_error = error.os_error
        if isinstance(os_error, socket.gaierror) or not os_error.errno:  # DNS: "Name or service not known"
            return os_error.strerror or str(os_error) or type(os_error).__name__
        return os.strerror(os_error.errno)  # "Connection refused" (asyncio's own text names the address again)
    if isinstance(error, (TimeoutError, asyncio.TimeoutError)):
        return "no answer in time"
    if isinstance(error, discord.ConnectionClosed):
        return f"the gateway closed the connection (code {error.code})"
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


def _api_host() -> str:
    parts = urlsplit(discord.http.Route.BASE)
    return f"{parts.scheme}://{parts.netloc}"


def next_delay(previous: float | None, maximum: float) -> float:
    """The wait before the next attempt: RETRY_INITIAL_S, then doubling, never over ``maximum``."""
    return min(maximum, RETRY_INITIAL_S if previous is None else previous * 2)


async def _no_setup() -> None:
    """Stands in for ``setup_hook`` while ``login()`` is timed (the real one runs after it)."""


async def login(bot: I2VBot) -> None:
    """Log in, retrying what can be retried; raises :class:`FatalLogin` for what cannot. Then run ``setup_hook``."""
    settings = bot.settings
    delay: float | None = None
    while True:
        bot.setup_hook = _no_setup  # type: ignore[method-assign]  # discord.py calls it at the end of login()
        try:
            await asyncio.wait_for(bot.login(settings.token), settings.connect_timeout)
            break
        except discord.LoginFailure:
            raise FatalLogin(
                "Discord rejected DISCORD_TOKEN (login failed): check the token in .env", exit_status=EXIT_LOGIN_REFUSED
            ) from None
        except TimeoutError:
            problem = f"Discord at {_api_host()} did not answer within {settings.connect_timeout:g} s"
        except discord.DiscordServerError as error:
            problem = f"Discord at {_api_host()} answered {error.status} ({describe_error(error)})"
        except (OSError, aiohttp.ClientError) as error:
            problem = f"cannot reach Discord at {_api_host()}: {describe_error(error)}"
        except discord.HTTPException as error:
            raise FatalLogin(
                f"Discord refused the login: {describe_error(error)}", exit_status=EXIT_LOGIN_REFUSED
            ) from None
        finally:
            del bot.setup_hook
        delay = next_delay(delay, settings.retry_max)
        log.warning("%s; retrying in %g s", problem, delay)
        await bot.http.close()  # closes the attempt's session and its connector...
        bot.http.connector = discord.utils.MISSING  # ...so the next attempt builds both anew
        await asyncio.sleep(delay)
    try:
        await bot.setup_hook()
    except (OSError, SQLAlchemyError) as error:  # e.g. the database cannot be reached; a bug still shows its traceback
        raise FatalLogin(f"start-up failed: {type(error).__name__}: {describe_error(error)}") from None


async def hold_gateway(bot: I2VBot, reconnects: OneLineReconnects) -> None:
    """``bot.connect(reconnect=True)`` until the bot closes. discord.py cannot retry a first gateway connection
    that failed (its reconnect path reads ``self.ws.sequence`` while ``self.ws`` is still None and raises
    AttributeError, after its own back-off sleep): that attempt is reported here in one line and started again."""
    delay: float | None = None
    while True:
        reconnects.first_error = None
        try:
            await bot.connect(reconnect=True)
            return
        except AttributeError:
            if bot.ws is not None or bot.is_closed() or reconnects.first_error is None:
                raise
        delay = next_delay(delay, bot.settings.retry_max)
        gateway = discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY
        log.warning(
            "cannot reach the Discord gateway at %s: %s; retrying in %g s",
            gateway,
            describe_error(reconnects.first_error),
            delay,
        )
        await asyncio.sleep(delay)


async def connect(bot: I2VBot, reconnects: OneLineReconnects) -> None:
    """Log in, start up, then hold the gateway connection until the bot closes."""
    await login(bot)
    try:
        await hold_gateway(bot, reconnects)
    except discord.PrivilegedIntentsRequired:
        raise FatalLogin(
            "Discord refused the Message Content intent: enable it for the bot in the Developer "
            "Portal, or set MESSAGE_CONTENT_INTENT=false",
            exit_status=EXIT_LOGIN_REFUSED,
        ) from None
    except discord.ConnectionClosed as error:
        reason = CLOSE_CODE_REASONS.get(error.code or 0, f"close code {error.code}")
        refused = (error.code or 0) in CLOSE_CODE_REASONS  # the token or the intents: a restart cannot help
        raise FatalLogin(
            f"the Discord gateway closed the connection: {reason}",
            exit_status=EXIT_LOGIN_REFUSED if refused else EXIT_START_FAILED,
        ) from None


def describe_worker(bot: I2VBot) -> str:
    """The worker's state for the online line."""
    if bot.settings.worker != "embedded":
        return "external workers (python -m generator.worker)"
    supervisor = bot.supervisor
    if supervisor is None:
        return "not started"
    state = getattr(supervisor, "state", None)
    phase = getattr(state, "phase", "unknown")
    reason = getattr(supervisor, "failure_reason", None)
    return f"{phase} ({reason})" if reason else str(phase)


def announce_online(bot: I2VBot) -> None:
    """Log one INFO line each time the gateway session is ready: who the bot is, its worker, who its operators are
    and the URL that invites it with exactly the permissions it needs."""

    async def on_ready() -> None:
        user = bot.user
        servers = len(bot.guilds)
        log.info(
            "online as %s (id %s) in %d server%s; worker: %s; operators: %s; invite: %s",
            user,
            user.id,
            servers,
            "" if servers == 1 else "s",
            describe_worker(bot),
            bot.operators.describe(),
            invite_url(bot.application_id or user.id),
        )

    bot.add_listener(on_ready, "on_ready")


async def run_until_stopped(bot: I2VBot) -> int:
    """Run ``bot`` until SIGTERM/SIGINT or a fatal login error; close it; return the exit status."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    reconnects = OneLineReconnects(bot)
    logging.getLogger("discord.client").addFilter(reconnects)
    announce_online(bot)
    status = EXIT_OK
    async with bot:
        runner = asyncio.create_task(connect(bot, reconnects), name="discord-client")
        stopper = asyncio.create_task(stop.wait(), name="stop-signal")
        done, _ = await asyncio.wait({runner, stopper}, return_when=asyncio.FIRST_COMPLETED)
        if stopper in done:
            log.info("signal received; shutting down")
            runner.cancel()
        else:
            stopper.cancel()
        try:
            await runner
        except asyncio.CancelledError:
            pass
        except FatalLogin as error:
            log.error("%s", error)
            status = error.exit_status
        await bot.close()
    return status
