"""An online backup of the SQLite job store through sqlite3's backup API (``python -m bot backup DEST``).

Copying the database file while the bot runs is unsafe in WAL mode (the newest pages live in ``-wal`` until a
checkpoint); the backup API copies a consistent snapshot page by page, and lets writers go on between steps.
PostgreSQL is backed up with ``pg_dump``, not here.
"""

from __future__ import annotations

import sqlite3
from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy.engine import make_url

BACKUP_PAGES_PER_STEP = 1024  # pages copied per step; writers get the lock between steps
BACKUP_STEP_SLEEP_S = 0.005  # pause between two steps
BUSY_TIMEOUT_S = 30.0  # how long the backup waits for a writer's lock
BACKUP_NAME_FORMAT = "i2v-%Y%m%d-%H%M%S.sqlite3"  # a file name when DEST is a folder


class BackupError(RuntimeError):
    """The backup could not be made; the message is one line."""


def sqlite_path(url: str) -> Path:
    """The database file of an SQLite URL; BackupError for PostgreSQL or an in-memory database."""
    parsed = make_url(url)
    if not parsed.drivername.startswith("sqlite"):
        raise BackupError(f"DATABASE_URL is {parsed.get_backend_name()}: back it up with pg_dump "
                          "(pg_dump --format=custom --file=i2v.dump DBNAME; see docs/deploy.md)")
    if not parsed.database or parsed.database == ":memory:":
        raise BackupError("DATABASE_URL is an in-memory SQLite database: there is nothing to back up")
    return Path(parsed.database)


def backup_destination(dest: Path, now: datetime | None = None) -> Path:
    """``dest`` itself, or a dated file name inside it when it is a folder. Never an existing file."""
    if dest.is_dir():
        dest = dest / (now or datetime.now(timezone.utc)).strftime(BACKUP_NAME_FORMAT)
    if dest.exists():
        raise BackupError(f"{dest} already exists; choose another name (a backup never overwrites)")
    if not dest.parent.is_dir():
        raise BackupError(f"{dest.parent} is not a folder")
    return dest


def backup_sqlite(url: str, dest: Path) -> tuple[Path, int]:
    """Copy the database of ``url`` into ``dest`` (a file, or a folder for a dated name) while others may write;
    returns the file written and its size in bytes. The copy is checked with ``PRAGMA quick_check``."""
    source_path = sqlite_path(url)
    if not source_path.is_file():
        raise BackupError(f"there is no database at {source_path}")
    target = backup_destination(dest)
    partial = target.with_name(target.name + ".partial")
    try:
        source = sqlite3.connect(source_path, timeout=BUSY_TIMEOUT_S)
        try:
            copy = sqlite3.connect(partial)
            try:
                source.backup(copy, pages=BACKUP_PAGES_PER_STEP, sleep=BACKUP_STEP_SLEEP_S)
                copy.execute("PRAGMA journal_mode=DELETE")  # one self-contained file, no -wal beside it
                verdict = copy.execute("PRAGMA quick_check").fetchone()[0]
            finally:
                copy.close()
        finally:
            source.close()
    except sqlite3.Error as error:
        partial.unlink(missing_ok=True)
        raise BackupError(f"backing up {source_path} failed: {error}") from None
    if verdict != "ok":
        partial.unlink(missing_ok=True)
        raise BackupError(f"the copy of {source_path} failed its check: {verdict}")
    partial.rename(target)
    return target, target.stat().st_size
