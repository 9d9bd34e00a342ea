"""The command line of ``python -m bot [run | check | backup DEST | prune | web-link [--user ID]]``: the bot and its
maintenance commands.

``run`` (the default): read the settings, point discord.py at the configured Discord, run the bot until signalled
(:mod:`bot.connect`). The web page (``web/``, on WEB_HOST:WEB_PORT) runs in the same process; without
DISCORD_TOKEN only the page and the embedded worker run. ``check``: validate the configuration (:mod:`bot.check`).
``backup DEST``: an online SQLite backup; ``prune``: one retention pass; ``web-link``: a fresh sign-in link to the
page (:mod:`bot.maintenance`).

Exit codes: 0 after a clean stop (SIGTERM/SIGINT at any moment), 2 for a missing or bad setting (one line on
stderr) or a failed check, 1 when Discord refuses the token or a maintenance command fails.

Each command imports what it runs inside its own function, deliberately: the web-only path, ``check``, ``backup``
and ``prune`` never load discord.py, the bot and its cogs (seconds on a small machine), and ``run`` loads them only
after the settings were read and the endpoints applied.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path
from typing import Any

from config.catalog import BOT
from config.helptext import settings_help
from config.reader import SettingsError, environment, report_bad_setting

PROG = "i2v-bot"  # how its one-line errors begin
EXIT_FAILED = 1  # a command failed (and a crash exits 1 too)
# Exit statuses of `python -m bot run` a supervisor must not restart on: 2 a bad setting
# (config.reader.report_bad_setting), 3 Discord refused the login (bot.connect.EXIT_LOGIN_REFUSED).


def build_parser() -> argparse.ArgumentParser:
    """The command line; ``--help`` lists every setting the bot reads."""
    parser = argparse.ArgumentParser(
        prog="python -m bot",
        description="The i2v Discord bot, its web page and (WORKER=embedded) one GPU worker.",
        epilog=settings_help(BOT) + "\n\nThe embedded worker reads what python -m generator.worker --help lists.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.add_parser("run", help="run the bot until SIGTERM or Ctrl-C (the default)")
    commands.add_parser(
        "check",
        help="check the settings, the database, the model's config files and the folders; "
        "starts nothing; exit status 0 or 2",
    )
    backup = commands.add_parser("backup", help="copy the SQLite job store while the bot runs (PostgreSQL: pg_dump)")
    backup.add_argument("dest", type=Path, help="the backup file to write, or a folder for i2v-DATE-TIME.sqlite3")
    commands.add_parser("prune", help="one retention pass: drop the images and videos older than RETENTION_DAYS")
    link = commands.add_parser(
        "web-link",
        help="print a fresh single-use sign-in link to the web page from the "
        "store alone: the operator's, or --user ID's",
    )
    link.add_argument("--user", type=int, metavar="ID", help="a link acting as this Discord user, with their rights")
    return parser


# -- without DISCORD_TOKEN: the web page and the embedded worker only ------------------------------------------


async def run_web_only(settings: object) -> None:
    """Serve the web page and run the embedded worker until SIGTERM or SIGINT (no Discord client)."""
    from web.standalone import serve_page_only

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await serve_page_only(settings, stop)


def main_web_only(settings: object) -> int:
    try:
        asyncio.run(run_web_only(settings))
    except OSError as error:
        print(f"{PROG}: the web page cannot listen on WEB_HOST:WEB_PORT: {error}", file=sys.stderr)
        return EXIT_FAILED
    return 0


# -- end of the web-only path ------------------------------------------------------------------------------------


def run(settings: Any) -> int:
    """``python -m bot run``."""
    if not settings.token:
        return main_web_only(settings)
    import discord.voice_client

    from bot.endpoints import apply_discord_endpoints

    try:
        apply_discord_endpoints(settings.api_base, settings.gateway_url)
    except ValueError as error:
        return report_bad_setting(PROG, error)
    # No voice here: no "PyNaCl / davey is not installed, voice will NOT be supported" warnings.
    discord.voice_client.VoiceClient.warn_nacl = False
    discord.voice_client.VoiceClient.warn_dave = False

    from bot.app import I2VBot
    from bot.connect import run_until_stopped

    return asyncio.run(run_until_stopped(I2VBot(settings)))


def check(env: Any) -> int:
    """``python -m bot check``: problems on stderr, what is fine on stdout."""
    from bot.check import run_check

    return asyncio.run(run_check(env)).print(PROG, "the configuration is usable")


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit code (``bot.__main__`` turns an early signal into 0)."""
    args = build_parser().parse_args(argv)
    env = environment()
    if args.command == "check":
        return check(env)
    from bot.settings import BotSettings
    from config.logs import setup_logging

    try:
        settings = BotSettings.from_env(env, require_token=False)
        setup_logging(env, process="bot")
    except SettingsError as error:
        return report_bad_setting(PROG, error)
    if args.command == "backup":
        from bot.maintenance import backup

        return backup(settings, args.dest)
    if args.command == "prune":
        from bot.maintenance import prune

        try:
            return asyncio.run(prune(settings))
        except Exception as error:  # noqa: BLE001 - a database that cannot be read: one line
            print(
                f"{PROG}: prune failed: {str(error).strip().splitlines()[0] if str(error) else error!r}",
                file=sys.stderr,
            )
            return EXIT_FAILED
    if args.command == "web-link":
        from bot.maintenance import web_link

        return asyncio.run(web_link(settings, args.user))
    return run(settings)
