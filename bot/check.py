"""``python -m bot check``: validate the whole configuration without starting anything long-lived.

Checked: every setting (:func:`config.reader.read_all`), the Discord URLs, the database (reachable, and its
Alembic migration state: at head, behind, ahead or not created), every enabled model's config files from its own
setting (:mod:`generator.model_files`, never the weights) and the GPU memory it needs, with the embedded worker the
torch build, CUDA and each GPU (:mod:`generator.device`, asked in a process of its own), that OUTPUT_DIR, DATA_DIR and
LOG_FILE's folder exist or can be created and can be written, and that the application commands keep Discord's limits
(:mod:`bot.discord_limits`: the command tree is built as at start; nothing is sent to Discord); it warns when the
page listens beyond this machine without WEB_PUBLIC_URL. Each problem and each warning is one line on stderr; what
is fine is one line each on stdout. Exit status 0 when nothing is wrong, 2 otherwise. Nothing
is created or migrated.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bot.app import I2VBot
from bot.command_sync import command_tree_problems
from bot.endpoints import apply_discord_endpoints
from bot.settings import BotSettings
from config.reader import CheckReport, read_all
from generator.model_files import check_model_source
from generator.model_spaces import SPACES, TINY_SOURCE, enabled_models
from jobs.db import alembic_config, make_engine, redacted_url
from web.config import is_loopback

DATABASE_TIMEOUT_S = 10.0  # connecting to the database and reading its revision
DEVICE_PROBE_TIMEOUT_S = 120.0  # a generator process importing torch and asking CUDA (seconds on a cold disk)
STATE_AT_HEAD = "at head"
STATE_BEHIND = "behind"
STATE_AHEAD = "ahead"
STATE_NOT_CREATED = "not created"


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


async def check_models(values: Mapping[str, Any], bad: set[str], report: CheckReport) -> None:
    """Every enabled model's (``I2V_MODELS``) config files, from its own setting, and the GPU memory it needs."""
    enabled = enabled_models(values["I2V_MODELS"], str(values["I2V_MODEL"]))
    tiny = str(values["I2V_MODEL"]).strip().lower() == TINY_SOURCE
    report.fine.append(
        "I2V_MODELS: "
        + ", ".join(f"{key} ({SPACES[key].display_name})" for key in enabled)
        + f"; the default is {SPACES[enabled[0]].display_name}"
    )
    for key in enabled:
        each = SPACES[key]
        setting = each.source_setting
        if setting in bad:
            continue
        source = TINY_SOURCE if tiny else str(values[setting])
        problems = await asyncio.to_thread(check_model_source, source, setting=setting)
        report.problems += problems
        if not problems:
            report.fine.append(f"{each.display_name}: {setting}={source}: its config files are usable")
        if not tiny:
            report.fine.append(f"{each.display_name} needs GPU memory: {each.gpu_memory}")


def sqlite_file(url: str) -> Path | None:
    """The file of an SQLite URL (None for PostgreSQL or an in-memory database)."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if not parsed.drivername.startswith("sqlite") or not parsed.database or parsed.database == ":memory:":
        return None
    return Path(parsed.database)


def _revisions(sync_conn: Any) -> tuple[set[str], bool]:
    from alembic.runtime.migration import MigrationContext
    from sqlalchemy import inspect

    heads = set(MigrationContext.configure(sync_conn).get_current_heads())
    return heads, bool(inspect(sync_conn).get_table_names())


async def database_state(url: str) -> tuple[str, str]:
    """(state, detail) of the database at ``url``; raises OSError/TimeoutError/SQLAlchemy errors if unreachable.

    Opens nothing that does not exist: a missing SQLite file is "not created".
    """
    from alembic.script import ScriptDirectory

    path = sqlite_file(url)
    if path is not None and not path.exists():
        return STATE_NOT_CREATED, f"{path} does not exist yet; it is created at the first start"
    engine = make_engine(url, read_only=True)
    try:
        async with engine.connect() as conn:
            current, has_tables = await asyncio.wait_for(conn.run_sync(_revisions), DATABASE_TIMEOUT_S)
    finally:
        await engine.dispose()
    script = ScriptDirectory.from_config(alembic_config())
    heads = set(script.get_heads())
    known = {rev.revision for rev in script.walk_revisions()}
    if not current:
        if has_tables:
            return STATE_AHEAD, "it has tables but no migration revision: not this bot's database?"
        return STATE_NOT_CREATED, "it is empty; the tables are created at the first start"
    if current == heads:
        return STATE_AT_HEAD, f"revision {', '.join(sorted(current))}"
    unknown = current - known
    if unknown:
        return STATE_AHEAD, (
            f"revision {', '.join(sorted(unknown))} is newer than this code (upgrade the code, or "
            "downgrade the database with the newer code's alembic first)"
        )
    return STATE_BEHIND, f"revision {', '.join(sorted(current))}; migrated to {', '.join(sorted(heads))} at start"


async def check_database(url: str, report: CheckReport) -> None:
    shown = redacted_url(url)
    try:
        state, detail = await asyncio.wait_for(database_state(url), DATABASE_TIMEOUT_S)
    except TimeoutError:
        report.problems.append(f"DATABASE_URL={shown}: no answer within {DATABASE_TIMEOUT_S:g} s")
        return
    except Exception as error:  # noqa: BLE001 - every driver error comes down to one line
        report.problems.append(f"DATABASE_URL={shown}: cannot be opened: {_first_line(error)}")
        return
    line = f"DATABASE_URL={shown}: {state} ({detail})"
    (report.problems if state == STATE_AHEAD else report.fine).append(line)


def check_folder(name: str, folder: Path, report: CheckReport) -> None:
    """``folder`` exists and is writable, or its nearest existing ancestor is a folder we can write in (probed by
    writing a temporary file, so a read-only mount or a file in the way is found even for root)."""
    target = folder.absolute()
    existing = target
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        report.problems.append(f"{name}={folder}: {existing} is a file, not a folder")
        return
    try:
        with tempfile.NamedTemporaryFile(dir=existing, prefix=".i2v-check-"):
            pass
    except OSError as error:
        report.problems.append(f"{name}={folder}: cannot write in {existing}: {error.strerror or error}")
        return
    report.fine.append(f"{name}={folder}: " + ("writable" if existing == target else "can be created"))


def check_endpoints(values: Mapping[str, Any], report: CheckReport) -> None:

    try:
        apply_discord_endpoints(values["DISCORD_API_BASE"] or None, values["DISCORD_GATEWAY_URL"] or None)
    except ValueError as error:
        report.problems.append(str(error))


async def check_commands(env: Mapping[str, str], report: CheckReport) -> None:
    """Build the command tree as the bot does at start and hold it against Discord's limits; nothing is sent."""
    bot = I2VBot(BotSettings.from_env(env, dotenv=False, require_token=False))
    await bot.load_extensions()
    problems = command_tree_problems(bot.tree)
    if problems:
        report.problems += [f"application commands: Discord would refuse {line}" for line in problems]
    else:
        report.fine.append(f"application commands: {len(bot.tree.get_commands())} keep Discord's limits")


def check_web_address(values: Mapping[str, Any], report: CheckReport) -> None:
    """A page listening beyond this machine without WEB_PUBLIC_URL prints links to an address people may not
    reach, and behind a reverse proxy every sign-in and POST from the public origin is refused."""
    host = str(values["WEB_HOST"])
    if values["WEB_PUBLIC_URL"]:
        report.fine.append(f"WEB_PUBLIC_URL={values['WEB_PUBLIC_URL']}: links and the Origin check use it")
    elif not is_loopback(host):
        report.warnings.append(
            f"WEB_HOST={host} accepts connections from other machines but WEB_PUBLIC_URL is not set: sign-in links "
            "name http://WEB_HOST:WEB_PORT, and behind a reverse proxy sign-in is refused; set WEB_PUBLIC_URL to "
            "the address people open (e.g. https://i2v.example.org)"
        )


def check_device(env: Mapping[str, str], report: CheckReport) -> None:
    """The torch build, CUDA, the GPUs and their memory, as the embedded worker would find them: ``bot/`` never
    imports torch, so a ``python -m generator.device`` process with the same settings answers."""
    try:
        answer = subprocess.run(
            [sys.executable, "-m", "generator.device"],
            env=dict(env),
            capture_output=True,
            text=True,
            timeout=DEVICE_PROBE_TIMEOUT_S,
            check=False,
        )
        found = json.loads(answer.stdout) if answer.returncode == 0 else None
    except (OSError, subprocess.TimeoutExpired, ValueError) as exc:
        report.problems.append(f"could not ask a generator process about the GPU: {_first_line(exc)}")
        return
    if not isinstance(found, dict):
        why = (answer.stderr.strip().splitlines() or [f"exit status {answer.returncode}"])[-1]
        report.problems.append(f"could not ask a generator process about the GPU: {why}")
        return
    report.fine += found.get("fine", [])
    report.warnings += found.get("warnings", [])
    report.problems += found.get("problems", [])


async def run_check(env: Mapping[str, str]) -> CheckReport:
    """Check everything; nothing is started, created or migrated."""
    report = CheckReport()
    values, errors = read_all(env)
    report.problems += errors.values()
    bad = set(errors)
    if not bad:
        report.fine.append("settings: every value parses")
    if not values["DISCORD_TOKEN"]:
        report.fine.append("DISCORD_TOKEN is not set: only the web page and the embedded worker run")
    check_endpoints(values, report)
    if not bad & {"WEB_HOST", "WEB_PUBLIC_URL"}:
        check_web_address(values, report)
    if "DATABASE_URL" not in bad:
        await check_database(str(values["DATABASE_URL"]), report)
    if not bad & {"I2V_MODEL", "I2V_MODELS"}:
        await check_models(values, bad, report)
    if values["WORKER"] == "embedded" and not bad & {"I2V_MODEL", "I2V_DEVICE"}:
        await asyncio.to_thread(check_device, env, report)
    for name in ("OUTPUT_DIR", "DATA_DIR"):
        if name not in bad:
            check_folder(name, Path(str(values[name])), report)
    if values["LOG_FILE"] is not None and "LOG_FILE" not in bad:
        check_folder("LOG_FILE", Path(str(values["LOG_FILE"])).parent, report)
    if not bad:
        await check_commands(env, report)
    return report
