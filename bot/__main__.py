"""``python -m bot``: read the settings, point discord.py at the configured Discord, run the bot until signalled.

The web page (``web/``, on WEB_HOST:WEB_PORT) runs in the same process. Without DISCORD_TOKEN only the page and
the embedded worker run.

Exit codes: 0 after a clean stop (SIGTERM/SIGINT), 2 for a missing or bad setting (one line on stderr), 1 when
Discord refuses the token.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

EXIT_BAD_SETTINGS = 2
EXIT_LOGIN_FAILED = 1
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


async def run_bot(bot: object) -> None:
    """Run ``bot`` (an :class:`I2VBot`) until SIGTERM or SIGINT, then close it cleanly."""
    from bot.app import I2VBot

    assert isinstance(bot, I2VBot)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with bot:
        runner = asyncio.create_task(bot.start(bot.settings.token), name="discord-client")
        stopper = asyncio.create_task(stop.wait(), name="stop-signal")
        done, _ = await asyncio.wait({runner, stopper}, return_when=asyncio.FIRST_COMPLETED)
        if stopper in done:
            logging.getLogger("bot").info("signal received; shutting down")
            await bot.close()
        stopper.cancel()
        await runner  # re-raises a login failure or a crash


# -- without DISCORD_TOKEN: the web page and the embedded worker only ------------------------------------------


async def run_web_only(settings: object) -> None:
    """Serve the web page and run the embedded worker until SIGTERM or SIGINT (no Discord client)."""
    from web.standalone import run_web_only as serve

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await serve(settings, stop)


def main_web_only(settings: object) -> int:
    try:
        asyncio.run(run_web_only(settings))
    except OSError as error:
        print(f"i2v-bot: the web page cannot listen on WEB_HOST:WEB_PORT: {error}", file=sys.stderr)
        return EXIT_LOGIN_FAILED
    return 0


# -- end of the web-only path ------------------------------------------------------------------------------------


def main() -> int:
    """Entry point; returns the process exit code."""
    from bot.settings import BotSettings, SettingsError

    try:
        settings = BotSettings.from_env(require_token=False)
    except SettingsError as error:
        print(f"i2v-bot: {error}", file=sys.stderr)
        return EXIT_BAD_SETTINGS
    logging.basicConfig(level=settings.log_level, format=LOG_FORMAT)
    if not settings.token:
        return main_web_only(settings)

    import discord

    from bot.app import I2VBot
    from bot.endpoints import apply_discord_endpoints

    try:
        apply_discord_endpoints(settings.api_base, settings.gateway_url)
    except ValueError as error:
        print(f"i2v-bot: {error}", file=sys.stderr)
        return EXIT_BAD_SETTINGS
    try:
        asyncio.run(run_bot(I2VBot(settings)))
    except discord.LoginFailure:
        print("i2v-bot: Discord rejected DISCORD_TOKEN (login failed)", file=sys.stderr)
        return EXIT_LOGIN_FAILED
    return 0


if __name__ == "__main__":
    sys.exit(main())
