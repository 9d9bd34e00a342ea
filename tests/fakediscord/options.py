"""Build ``data.options`` / ``data.resolved`` of an application-command interaction from Python values.

Option types follow the synced command schema when the bot has synced one, else the value's Python type:
``str`` 3, ``int`` 4, ``bool`` 5, :class:`FakeMember` 6 (user), ``float`` 10 (number), :class:`FakeAttachment` 11.
Use :class:`Option` to force a type (7 channel, 8 role, 9 mentionable take an id).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from .state import FakeAttachment, FakeGuild, FakeMember

SUB_COMMAND = 1
SUB_COMMAND_GROUP = 2
STRING, INTEGER, BOOLEAN, USER, CHANNEL, ROLE, MENTIONABLE, NUMBER, ATTACHMENT = 3, 4, 5, 6, 7, 8, 9, 10, 11


@dataclasses.dataclass(frozen=True)
class Option:
    """An option value with an explicit Discord option type."""

    value: Any
    type: int


def _python_type(name: str, value: Any) -> int:
    if isinstance(value, Option):
        return value.type
    if isinstance(value, FakeAttachment):
        return ATTACHMENT
    if isinstance(value, FakeMember):
        return USER
    if isinstance(value, bool):
        return BOOLEAN
    if isinstance(value, int):
        return INTEGER
    if isinstance(value, float):
        return NUMBER
    if isinstance(value, str):
        return STRING
    raise TypeError(f"option {name!r}: cannot infer a Discord option type for {type(value).__name__} {value!r}")


def _schema_types(command: dict[str, Any] | None, path: list[str]) -> dict[str, int]:
    """Option name -> type for the leaf (sub)command at ``path`` in a synced command; {} when unknown."""
    if command is None:
        return {}
    options: list[dict[str, Any]] = command.get("options") or []
    for part in path:
        nested = next((o for o in options if o.get("name") == part and o.get("type") in (1, 2)), None)
        if nested is None:
            raise ValueError(f"synced command {command['name']!r} has no subcommand or group {part!r}")
        options = nested.get("options") or []
    return {o["name"]: int(o["type"]) for o in options if o.get("type") not in (1, 2)}


def build_options(
    command: dict[str, Any] | None,
    path: list[str],
    values: Mapping[str, Any],
    *,
    guild: FakeGuild | None,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Return (options, resolved) for ``/<name> <path...> values...``; nests the leaf under subcommands/groups."""
    schema = _schema_types(command, path)
    unknown = [name for name in values if schema and name not in schema]
    if unknown:
        raise ValueError(f"options {unknown} are not in the synced command's schema {sorted(schema)}")
    resolved: dict[str, dict[str, Any]] = {}
    leaf: list[dict[str, Any]] = []
    for name, raw in values.items():
        option_type = schema.get(name) or _python_type(name, raw)
        value = raw.value if isinstance(raw, Option) else raw
        if isinstance(value, FakeAttachment):
            resolved.setdefault("attachments", {})[str(value.id)] = value.payload()
            value = str(value.id)
        elif isinstance(value, FakeMember):
            resolved.setdefault("users", {})[str(value.user_id)] = value.user
            if guild is not None:
                member = value.payload(permissions=guild.permissions_of(value))
                member.pop("user")
                resolved.setdefault("members", {})[str(value.user_id)] = member
            value = str(value.user_id)
        elif option_type == NUMBER and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        elif option_type in (USER, CHANNEL, ROLE, MENTIONABLE):
            value = str(value)
        leaf.append({"name": name, "type": option_type, "value": value})
    options = leaf
    for depth in range(len(path) - 1, -1, -1):
        kind = SUB_COMMAND if depth == len(path) - 1 else SUB_COMMAND_GROUP
        options = [{"name": path[depth], "type": kind, "options": options}]
    return options, resolved
