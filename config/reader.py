"""Read settings from ``.env`` and the environment, the same way in every process.

``environment()`` merges the working directory's ``.env`` (read once) under ``os.environ`` (set variables win);
``read()`` parses the named settings by their declaration in :mod:`config.catalog` (a ``FLOAT`` one is always a
float) and raises :class:`SettingsError` at the first bad one; ``read_all()`` collects every error instead (the
``check`` command). An unset or empty variable is its default. Every error is one line: ``NAME='value' <what is
wrong>``; commands print it and exit with :data:`EXIT_BAD_SETTINGS`. A process's settings dataclass takes most
fields as read (:func:`as_read`, from its table of field -> setting) and computes the rest with :func:`derived`,
whose error names the setting too. A ``check`` command's findings are a :class:`CheckReport`.
"""

from __future__ import annotations

import ipaddress
import math
import os
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from config.catalog import (
    BOOL,
    BY_NAME,
    CHOICE,
    CHOICES,
    DATABASE_URL,
    FLOAT,
    IDS,
    INT,
    NETWORKS,
    ORIGIN,
    PATH,
    PORT,
    SETTINGS,
    Setting,
)

EXIT_BAD_SETTINGS = 2
TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
FALSE_WORDS = frozenset({"0", "false", "no", "off"})
MAX_PORT = 65535
T = TypeVar("T")

_dotenv_cache: dict[str, str] | None = None


class SettingsError(ValueError):
    """A malformed or missing setting; ``str()`` is one line naming the variable and the bad value."""

    def __init__(self, message: str, name: str | None = None) -> None:
        super().__init__(message)
        self.name = name


def dotenv_values_once() -> dict[str, str]:
    """The variables of the working directory's ``.env`` (read once per process; no file: none).

    Variables the declaration does not know (``HF_TOKEN``, ``HF_HOME``, ...) are also put into ``os.environ`` when
    unset there, for the libraries that read them; declared ones are not, so a supervised worker, whose
    environment the bot filters (no ``DISCORD_TOKEN``), reads its own settings from the file instead.
    """
    global _dotenv_cache
    if _dotenv_cache is None:
        from dotenv import dotenv_values, find_dotenv

        path = find_dotenv(usecwd=True)
        values = {k: v for k, v in dotenv_values(path).items() if v is not None} if path else {}
        for key, value in values.items():
            if key not in BY_NAME:
                os.environ.setdefault(key, value)
        _dotenv_cache = values
    return _dotenv_cache


def environment(env: Mapping[str, str] | None = None, *, dotenv: bool = True) -> Mapping[str, str]:
    """``env`` as given; else ``os.environ`` over the ``.env`` file (the environment wins), or ``os.environ``
    alone when ``dotenv`` is False."""
    if env is not None:
        return env
    if not dotenv:
        return os.environ
    return {**dotenv_values_once(), **os.environ}


def _bad(setting: Setting, raw: str, what: str) -> SettingsError:
    shown = "<hidden>" if setting.secret else repr(raw)
    return SettingsError(f"{setting.name}={shown} {what}", setting.name)


def _number(setting: Setting, raw: str) -> int | float:
    integer = setting.kind in (INT, PORT)
    try:
        value: int | float = int(raw) if integer else float(raw)
    except ValueError:
        raise _bad(setting, raw, "is not a whole number" if integer else "is not a number") from None
    if not math.isfinite(value):
        raise _bad(setting, raw, "is not a finite number")
    unit = f" {setting.unit}" if setting.unit else ""
    if setting.minimum is not None and value < setting.minimum:
        raise _bad(setting, raw, f"must be at least {setting.minimum:g}{unit}")
    if setting.above is not None and value <= setting.above:
        raise _bad(setting, raw, f"must be more than {setting.above:g}{unit}")
    if setting.kind == PORT and not 0 <= value <= MAX_PORT:
        raise _bad(setting, raw, f"is not a TCP port (0-{MAX_PORT})")
    if setting.maximum is not None and value > setting.maximum:
        raise _bad(setting, raw, f"must be at most {setting.maximum:g}{unit}")
    return value


def _ids(setting: Setting, raw: str) -> frozenset[int]:
    ids: set[int] = set()
    for part in raw.replace(";", ",").split(","):
        part = part.strip()
        if not part:
            continue
        if not part.isdigit():
            raise _bad(setting, raw, f"has {part!r}, which is not a Discord id (use comma-separated numbers)")
        ids.add(int(part))
    return frozenset(ids)


def _networks(setting: Setting, raw: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    networks = []
    for part in raw.replace(";", ",").split(","):
        part = part.strip()
        if not part:
            continue
        try:
            networks.append(ipaddress.ip_network(part, strict=False))
        except ValueError:
            raise _bad(setting, raw, f"has {part!r}, which is not an IP address or network") from None
    return tuple(networks)


def _parse_choices(setting: Setting, raw: str) -> tuple[str, ...]:
    words: list[str] = []
    for part in raw.replace(";", ",").split(","):
        word = part.strip().lower()
        if not word:
            continue
        if word not in setting.choices:
            raise _bad(setting, raw, f"has {part.strip()!r}, which is not one of {', '.join(setting.choices)}")
        if word in words:
            raise _bad(setting, raw, f"names {word} twice")
        words.append(word)
    return tuple(words)


def _origin(setting: Setting, raw: str) -> str:
    try:
        url = urlsplit(raw.rstrip("/"))
        url.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        raise _bad(setting, raw, "is not a URL") from None
    if url.scheme not in ("http", "https") or not url.hostname:
        raise _bad(setting, raw, "is not an http:// or https:// address")
    if url.path or url.query or url.fragment or url.username or url.password:
        raise _bad(setting, raw, "must be an origin only (scheme://host[:port]): no path, query or user")
    return f"{url.scheme}://{url.netloc.lower()}"


def parse(setting: Setting, raw: str | None) -> object:
    """The value of ``setting`` for the raw text ``raw`` (None or blank: the default)."""
    text = (raw or "").strip()
    kind = setting.kind
    if kind == FLOAT:
        value = _number(setting, text) if text else setting.default
        return float(value)  # type: ignore[arg-type]  # a FLOAT setting's default is a number
    if not text:
        return setting.default
    if kind in (INT, PORT):
        return _number(setting, text)
    if kind == BOOL:
        word = text.lower()
        if word in TRUE_WORDS:
            return True
        if word in FALSE_WORDS:
            return False
        raise _bad(setting, text, "is not a boolean (use true or false)")
    if kind == CHOICE:
        word = text.upper() if setting.upper else text.lower()
        if word not in setting.choices:
            raise _bad(setting, text, f"is not one of {', '.join(setting.choices)}")
        return word
    if kind == IDS:
        return _ids(setting, text)
    if kind == CHOICES:
        return _parse_choices(setting, text)
    if kind == NETWORKS:
        return _networks(setting, text)
    if kind == ORIGIN:
        return _origin(setting, text)
    if kind == PATH:
        return Path(text).expanduser()
    if kind == DATABASE_URL:
        from jobs.db import normalize_url

        try:
            return normalize_url(text)
        except Exception as error:  # noqa: BLE001 - SQLAlchemy's URL parser raises several kinds
            shown = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise SettingsError(f"{setting.name} is not usable: {shown}", setting.name) from None
    if setting.max_length is not None and len(text) > setting.max_length:
        raise _bad(setting, text[:40] + "...", f"is longer than {setting.max_length} characters")
    return text


def read(env: Mapping[str, str], names: Iterable[str]) -> dict[str, object]:
    """The values of ``names`` from ``env``; raises :class:`SettingsError` for the first bad one."""
    return {name: parse(BY_NAME[name], env.get(name)) for name in names}


def as_read(values: Mapping[str, object], fields: Mapping[str, str]) -> dict[str, Any]:
    """Keyword arguments of a settings dataclass: each of ``fields`` (field -> setting name) with its setting's
    value from ``values`` (what :func:`read` returned), unchanged."""
    return {field: values[name] for field, name in fields.items()}


def derived(name: str, compute: Callable[[], T], *, prefix: str = "") -> T:
    """``compute()``, a value computed from settings already read; its ``ValueError`` becomes a
    :class:`SettingsError` naming the setting ``name`` (message: ``prefix`` and the error)."""
    try:
        return compute()
    except SettingsError:
        raise
    except ValueError as error:
        raise SettingsError(f"{prefix}{error}", name) from None


def read_all(env: Mapping[str, str], names: Iterable[str] | None = None) -> tuple[dict[str, object], dict[str, str]]:
    """Every setting in ``names`` (default: all declared), and for each bad one its name and its one-line error, in
    declaration order (a bad one gets its default in the values)."""
    values: dict[str, object] = {}
    errors: dict[str, str] = {}
    for name in names if names is not None else [s.name for s in SETTINGS]:
        setting = BY_NAME[name]
        try:
            values[name] = parse(setting, env.get(name))
        except SettingsError as error:
            errors[name] = str(error)
            values[name] = setting.default
    return values, errors


def report_bad_setting(prog: str, error: Exception) -> int:
    """Print the one-line settings error every command prints (``PROG: NAME='value' ...``); returns the exit
    status :data:`EXIT_BAD_SETTINGS`."""
    print(f"{prog}: {error}", file=sys.stderr)
    return EXIT_BAD_SETTINGS


@dataclass
class CheckReport:
    """What a ``check`` command found (``python -m bot check``, ``python -m generator.worker check``): one line per
    thing that is fine, per warning (works, but likely not as meant; the exit status stays 0) and per problem."""

    fine: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def exit_status(self) -> int:
        """:data:`EXIT_BAD_SETTINGS` with a problem, else 0."""
        return EXIT_BAD_SETTINGS if self.problems else 0

    def print(self, prog: str, all_fine: str) -> int:
        """What is fine on stdout (``ok: ...``), problems and then warnings on stderr (``PROG: ...``), and last the
        count of problems or ``all_fine``; returns :attr:`exit_status`."""
        for line in self.fine:
            print(f"ok: {line}")
        for line in self.problems:
            print(f"{prog}: {line}", file=sys.stderr)
        for line in self.warnings:
            print(f"{prog}: warning: {line}", file=sys.stderr)
        print(f"{len(self.problems)} problem(s)" if self.problems else all_fine)
        return self.exit_status
