"""The settings section of a command's ``--help``, from the declaration."""

from __future__ import annotations

import textwrap

from config.catalog import read_by

NAME_WIDTH = 32  # characters for the variable's name column
LINE_WIDTH = 118


def settings_help(process: str, *, title: str = "settings (environment or .env)") -> str:
    """One line per setting ``process`` reads: name, default with unit, help."""
    lines = [f"{title}:"]
    for setting in read_by(process):
        if setting.internal:
            continue
        text = f"{setting.help} (default: {setting.describe_default()})"
        wrapped = textwrap.wrap(text, LINE_WIDTH - NAME_WIDTH - 2) or [""]
        lines.append(f"  {setting.name:<{NAME_WIDTH}}{wrapped[0]}")
        lines += [f"  {'':<{NAME_WIDTH}}{more}" for more in wrapped[1:]]
    return "\n".join(lines)
