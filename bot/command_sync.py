"""Sync application commands with Discord only when their payload changed since the last sync.

Discord limits command creates (200 a day per guild), and discord.py's own example warns against syncing on every
start. The SHA-256 of the JSON payload (canonical form) is stored per application in ``<data_dir>/command_sync.json``.

A sync Discord refuses (400 / 50035 names the field, or any other HTTP error) is logged with the fields Discord named
and does not stop the bot: Discord keeps the commands of the last accepted sync, the bot runs on with them, and the
next start tries again. ``python -m bot check`` finds such a tree before anything is sent
(:func:`command_tree_problems`, with the rules of :mod:`bot.discord_limits`).
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import discord
from discord import app_commands

from bot.discord_limits import Problem, command_list_problems, problems_from_errors

log = logging.getLogger(__name__)

STATE_FILE_NAME = "command_sync.json"


def command_payload(tree: app_commands.CommandTree[Any]) -> list[dict[str, Any]]:
    """The global commands exactly as ``tree.sync()`` would send them."""
    return [command.to_dict(tree) for command in tree.get_commands()]


def payload_hash(payload: list[dict[str, Any]]) -> str:
    """Order-independent SHA-256 of a command payload."""
    canonical = sorted(json.dumps(item, sort_keys=True, separators=(",", ":")) for item in payload)
    return hashlib.sha256("\n".join(canonical).encode()).hexdigest()


async def sync_if_changed(tree: app_commands.CommandTree[Any], application_id: int, data_dir: Path) -> bool:
    """Sync the tree's global commands unless the stored hash matches; return whether a sync happened."""
    state_path = data_dir / STATE_FILE_NAME
    payload = command_payload(tree)
    digest = payload_hash(payload)
    state: dict[str, str] = {}
    if state_path.exists():
        try:
            state = json.loads(state_path.read_text())
        except (OSError, ValueError):
            log.warning("ignoring unreadable %s", state_path)
    if state.get(str(application_id)) == digest:
        log.info("application commands unchanged (%s); not syncing", digest[:12])
        return False
    try:
        synced = await tree.sync()
    except discord.HTTPException as error:
        named = problems_from_errors(getattr(error, "_errors", None) or {})
        detail = [describe_problem(problem, payload) for problem in named] or [str(error)]
        log.error(
            "Discord refused the application commands (HTTP %s, code %s); the bot runs on with the commands "
            "it synced before and tries again at its next start:\n  %s",
            error.status,
            error.code,
            "\n  ".join(detail),
        )
        return False
    state[str(application_id)] = digest
    data_dir.mkdir(parents=True, exist_ok=True)
    tmp = state_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2))
    tmp.replace(state_path)
    log.info("synced %d application commands (%s)", len(synced), digest[:12])
    return True


def describe_problem(problem: Problem, payload: list[dict[str, Any]]) -> str:
    """One line for a problem of a command list: the command's name, the field below it, the message."""
    head, *rest = problem.path or ("",)
    if head.isdigit() and int(head) < len(payload):
        return f"command {payload[int(head)].get('name')!r}: {'.'.join(rest) or '(command)'}: {problem.message}"
    return f"commands: {problem}"


def command_tree_problems(tree: app_commands.CommandTree[Any]) -> list[str]:
    """What Discord would refuse in a sync of ``tree``, one line each, naming the command and the field."""
    payload = command_payload(tree)
    return [describe_problem(problem, payload) for problem in command_list_problems(payload)]
