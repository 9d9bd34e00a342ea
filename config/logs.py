"""One logging set-up for every process: ``LOG_LEVEL``, ``LOG_FORMAT`` (text or JSON lines), ``LOG_FILE`` with
rotation (``LOG_FILE_MAX_BYTES``, ``LOG_FILE_BACKUPS``), secrets masked in every record, quiet libraries.

At INFO and above the libraries' start-up chatter is held back: Alembic's migration context lines, discord.py's
connection notes, and Python's deprecation warnings. ``LOG_LEVEL=DEBUG`` shows all. The model libraries' lines
that tell an admin nothing (:data:`LIBRARY_NOISE`) are logged once per process, at DEBUG (:class:`LibraryNoise`).
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import sys
import warnings
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import cast

from config.reader import SettingsError, read

LOG_SETTINGS = ("LOG_LEVEL", "LOG_FORMAT", "LOG_FILE", "LOG_FILE_MAX_BYTES", "LOG_FILE_BACKUPS")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
MASK = "<redacted>"
MIN_SECRET_CHARS = 8  # shorter values (test stand-ins like "t") would mask ordinary words
# Loggers that say nothing an operator needs at INFO: held at WARNING unless LOG_LEVEL=DEBUG.
CHATTY_LOGGERS = ("alembic", "discord", "aiosqlite", "asyncio")
# Lines of the model libraries that name a library detail, not a problem of this set-up: once per process, at DEBUG.
LIBRARY_NOISE = (
    "requires torchvision (not installed); falling back to",  # transformers: the CLIP image processor's PIL backend
    "Couldn't connect to the Hub",  # diffusers, at every load while the hub is unreachable (the cache is used)
    "has been deprecated and will not receive bug fixes",  # diffusers: the I2VGenXL pipeline's notice
    "that should be kept in float32",  # diffusers: the worker casts the pipeline's dtype on purpose
    "were passed without `sigmas`",  # diffusers: LTXConditionPipeline passes its own schedule as timesteps
)


class SecretMask(logging.Filter):
    """Replaces each secret with :data:`MASK` in a record's message, arguments and exception text."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self.secrets = tuple(s for s in secrets if s and len(s) >= MIN_SECRET_CHARS)

    def mask(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, MASK)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        if self.secrets:
            record.msg = self.mask(record.getMessage())
            record.args = None
            if record.exc_info and not record.exc_text:
                record.exc_text = logging.Formatter().formatException(record.exc_info)
            if record.exc_text:
                record.exc_text = self.mask(record.exc_text)
        return True


class JsonLines(logging.Formatter):
    """One JSON object per record: time (UTC, ISO 8601), level, logger, message, and exc when there is one."""

    def __init__(self, process: str) -> None:
        super().__init__()
        self.process = process

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "process": self.process,
            "pid": record.process,
        }
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exc"] = record.exc_text
        return json.dumps(entry, ensure_ascii=False)


class LibraryNoise(logging.Filter):
    """A handler filter: a record matching :data:`LIBRARY_NOISE` becomes DEBUG, its first time only (every handler
    sees the same verdict, kept on the record)."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        verdict = getattr(record, "i2v_noise", None)
        if verdict is None:
            message = record.getMessage()
            pattern = next((p for p in LIBRARY_NOISE if p in message), None)
            if pattern is None:
                verdict = True
            else:
                verdict = pattern not in self.seen and logging.getLogger().isEnabledFor(logging.DEBUG)
                self.seen.add(pattern)
                record.levelno, record.levelname = logging.DEBUG, logging.getLevelName(logging.DEBUG)
            record.i2v_noise = verdict
        return bool(verdict)


def _url_password(url: str) -> str:
    from sqlalchemy.engine import make_url

    if not url.strip():
        return ""
    try:
        return make_url(url.strip()).password or ""
    except Exception:  # noqa: BLE001 - a URL the reader refuses is reported there, not here
        return ""


def log_file_for(path: Path, role: str | None) -> Path:
    """The file a process writes: ``path`` itself, or ``NAME.ROLE.EXT`` beside it for a supervised child (two
    processes must not rotate one file)."""
    if not role:
        return path
    return path.with_name(f"{path.stem}.{role}{path.suffix or '.log'}")


def setup_logging(
    env: Mapping[str, str], *, process: str, file_role: str | None = None, secrets: Iterable[str] = ()
) -> None:
    """Configure the root logger for ``process`` from the LOG_* settings in ``env`` (raises SettingsError).

    ``secrets``, ``DISCORD_TOKEN`` and the password in ``DATABASE_URL`` are masked in every record of every handler.
    """
    values = read(env, LOG_SETTINGS)
    level = str(values["LOG_LEVEL"])
    mask = SecretMask([*secrets, env.get("DISCORD_TOKEN", "").strip(), _url_password(env.get("DATABASE_URL", ""))])
    if values["LOG_FORMAT"] == "json":
        formatter: logging.Formatter = JsonLines(process)
    else:
        formatter = logging.Formatter(TEXT_FORMAT.replace("%(name)s", f"{process}[%(process)d] %(name)s"))
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if values["LOG_FILE"] is not None:
        path = log_file_for(Path(str(values["LOG_FILE"])), file_role)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            handlers.append(
                logging.handlers.RotatingFileHandler(
                    path,
                    maxBytes=cast(int, values["LOG_FILE_MAX_BYTES"]),
                    backupCount=cast(int, values["LOG_FILE_BACKUPS"]),
                    encoding="utf-8",
                )
            )
        except OSError as error:
            raise SettingsError(
                f"LOG_FILE={values['LOG_FILE']} cannot be written: {error.strerror or error}", "LOG_FILE"
            ) from None
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
        old.close()
    noise = LibraryNoise()
    for handler in handlers:
        handler.setFormatter(formatter)
        handler.addFilter(mask)
        handler.addFilter(noise)
        root.addHandler(handler)
    root.setLevel(level)
    logging.captureWarnings(True)
    quiet = level != "DEBUG"
    for name in CHATTY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING if quiet else logging.NOTSET)
    if quiet:
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
