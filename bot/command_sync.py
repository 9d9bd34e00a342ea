"""Sync application commands with Discord only when their payload changed since the last sync.

Discord limits command creates (200 a day per guild), and discord.py's own example warns against syncing on every
start. The SHA-256 of the JSON payload (canonical form) is stored per application in ``<data_dir>/command_sync.json``.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

from discord import app_commands

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
    digest = payload_hash(command_payload(tree))
    state: dict[str, str] = {}
    if state_path.exists():
        try:
            state = json.loads(state_path.read_text())
        except (OSError, ValueError):
            log.warning("ignoring unreadable %s", state_path)
    if state.get(str(application_id)) == digest:
        log.info("application commands unchanged (%s); not syncing", digest[:12])
        return False
    synced = await tree.sync()
    state[str(application_id)] = digest
    data_dir.mkdir(parents=True, exist_ok=True)
    tmp = state_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2))
    tmp.replace(state_path)
    log.info("synced %d application commands (%s)", len(synced), digest[:12])
    return True
