"""Engines, sessions and migrations for the job store.

SQLite (the default) runs through SQLAlchemy's stock aiosqlite dialect with, on every new connection: WAL
journal, a busy timeout, ``foreign_keys=ON`` and ``synchronous=NORMAL``. Transactions follow SQLAlchemy's
documented recipe for SQLite ("Transactions with SQLite and the sqlite3 driver"): the driver's own
transaction handling is switched off on connect (``isolation_level = None``) and a ``begin`` event emits the
BEGIN: ``BEGIN IMMEDIATE`` for every transaction (a deferred BEGIN that reads and then writes gets "database
is locked" at once, ignoring the busy timeout), a deferred ``BEGIN`` for sessions started with
``begin_read_only`` and for engines made with ``read_only=True`` (whose connections are also ``query_only``).
Every statement runs on aiosqlite's thread, so a wait for the write lock never blocks the event loop.
PostgreSQL runs through asyncpg.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import event, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///data/i2v.sqlite3"
SQLITE_BUSY_TIMEOUT_MS = 30_000
"""How long a SQLite writer waits for the write lock before "database is locked" (milliseconds)."""
WAL_SWITCH_RETRY_S = 0.01
"""Pause between tries of the WAL switch on a fresh file that another connection holds locked (seconds)."""
POSTGRES_POOL_SIZE = 10
POSTGRES_MAX_OVERFLOW = 10
POSTGRES_POOL_RECYCLE_S = 1800

READ_ONLY_OPTION = "i2v_read_only"
"""Execution option: on SQLite, begin this transaction deferred (for read-only work; see ``begin_read_only``)."""

MIGRATION_LOCK_KEY = 0x69327662  # "i2vb": PostgreSQL advisory lock held while migrating

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"

_SUPPORTED_DRIVERS = ("sqlite+aiosqlite", "postgresql+asyncpg")


def redacted_url(url: str) -> str:
    """The database URL without its password, for logs and reports."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - only for a line shown to a person; any parse error means it is unreadable
        return "<unparseable DATABASE_URL>"


def normalize_url(url: str) -> str:
    """Map plain ``sqlite://`` / ``postgresql://`` URLs to their async drivers; refuse anything else."""
    if not isinstance(url, str) or not url.strip():
        raise ValueError(f"database url must be a non-empty string, got {url!r}")
    parsed = make_url(url)
    driver = parsed.drivername
    if driver in ("sqlite", "sqlite+pysqlite"):
        parsed = parsed.set(drivername="sqlite+aiosqlite")
    elif driver in ("postgresql", "postgres", "postgresql+psycopg", "postgresql+psycopg2"):
        parsed = parsed.set(drivername="postgresql+asyncpg")
    if parsed.drivername not in _SUPPORTED_DRIVERS:
        raise ValueError(
            f"unsupported database url driver {driver!r} in {parsed.render_as_string(hide_password=True)!r}: "
            f"use one of {', '.join(_SUPPORTED_DRIVERS)}"
        )
    return parsed.render_as_string(hide_password=False)


def _switch_to_wal(cursor: Any, busy_timeout_ms: int) -> str:
    """``PRAGMA journal_mode = WAL``, retried while it reports "database is locked": SQLite does not run the
    busy handler for this switch, so connections opening a fresh file at once (bot and workers migrating
    together) can hit each other's lock. Gives up after the busy timeout, as any other statement would. The
    pause blocks the event loop: it only happens while a fresh file is switched, once, at start-up."""
    deadline = time.monotonic() + busy_timeout_ms / 1000.0
    while True:
        try:
            cursor.execute("PRAGMA journal_mode = WAL")
            (mode,) = cursor.fetchone()
            return str(mode)
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() >= deadline:
                raise
        time.sleep(WAL_SWITCH_RETRY_S)


def _sqlite_on_connect(read_only: bool, busy_timeout_ms: int) -> Callable[[Any, Any], None]:
    def on_connect(dbapi_connection: Any, connection_record: Any) -> None:
        # Take transaction control away from the sqlite3 driver: _sqlite_on_begin emits BEGIN.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
            cursor.execute("PRAGMA foreign_keys = ON")
            mode = _switch_to_wal(cursor, busy_timeout_ms)
            if str(mode).lower() not in ("wal", "memory"):
                raise RuntimeError(f"SQLite refused journal_mode=WAL (got {mode!r}); is the file on a network share?")
            cursor.execute("PRAGMA synchronous = NORMAL")
            if read_only:
                cursor.execute("PRAGMA query_only = ON")
        finally:
            cursor.close()

    return on_connect


BEGIN_IMMEDIATE = "BEGIN IMMEDIATE"


def _sqlite_on_begin(read_only: bool) -> Callable[[Connection], None]:
    def on_begin(conn: Connection) -> None:
        # SQLAlchemy's recipe for SQLite transactions: the driver is out of the way (isolation_level=None, set
        # in on_connect), so we emit BEGIN ourselves, IMMEDIATE for writers, deferred for readers.
        deferred = read_only or bool(conn.get_execution_options().get(READ_ONLY_OPTION))
        conn.exec_driver_sql("BEGIN" if deferred else BEGIN_IMMEDIATE)

    return on_begin


def make_engine(
    url: str,
    *,
    read_only: bool = False,
    echo: bool = False,
    busy_timeout_ms: int = SQLITE_BUSY_TIMEOUT_MS,
    **kwargs: Any,
) -> AsyncEngine:
    """Create an async engine for ``url`` (SQLite via aiosqlite, PostgreSQL via asyncpg).

    SQLite engines apply the pragmas on every new pooled connection and begin every transaction with
    ``BEGIN IMMEDIATE`` (``read_only=True``: plain ``BEGIN`` on ``query_only`` connections). Extra keyword
    arguments go to ``create_async_engine``. ``busy_timeout_ms`` applies to SQLite only.
    """
    url = normalize_url(url)
    if isinstance(busy_timeout_ms, bool) or not isinstance(busy_timeout_ms, int) or busy_timeout_ms < 0:
        raise ValueError(f"busy_timeout_ms must be an integer >= 0, got {busy_timeout_ms!r}")
    if make_url(url).get_backend_name() == "sqlite":
        database = make_url(url).database
        if database and database != ":memory:" and not database.startswith("file:"):
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url, echo=echo, **kwargs)
        event.listen(engine.sync_engine, "connect", _sqlite_on_connect(read_only, busy_timeout_ms))
        event.listen(engine.sync_engine, "begin", _sqlite_on_begin(read_only))
        return engine
    options: dict[str, Any] = {
        "pool_size": POSTGRES_POOL_SIZE,
        "max_overflow": POSTGRES_MAX_OVERFLOW,
        # No pre-ping: it costs a round trip (~0.5 ms) per checkout, i.e. per transaction. A connection the
        # server dropped fails its next use once, is invalidated, and the caller's retry gets a fresh one.
        "pool_pre_ping": False,
        "pool_recycle": POSTGRES_POOL_RECYCLE_S,
    }
    options.update(kwargs)
    if read_only:
        options.setdefault("execution_options", {})["postgresql_readonly"] = True
    return create_async_engine(url, echo=echo, **options)


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions that keep loaded attributes after commit (``expire_on_commit=False``)."""
    if not isinstance(engine, AsyncEngine):
        raise TypeError(f"make_sessionmaker needs an AsyncEngine, got {type(engine).__name__}")
    return async_sessionmaker(engine, expire_on_commit=False)


async def begin_read_only(session: AsyncSession) -> None:
    """Start ``session``'s transaction as a reader: on SQLite a deferred ``BEGIN`` that does not take the
    write lock (writing in it later may fail with "database is locked"). Call it before anything else in
    the transaction; it refuses a session whose transaction has already begun."""
    if session.in_transaction():
        raise RuntimeError("begin_read_only must be the first thing done in a session's transaction")
    await session.connection(execution_options={READ_ONLY_OPTION: True})


Row = TypeVar("Row")


async def locked_row(session: AsyncSession, model: type[Row], key: Any, **new: Any) -> Row:
    """The ``model`` row of primary key ``key``, locked for the rest of the caller's transaction and read afresh;
    when there is none, a new one made of ``new`` (its key among them), added to the session."""
    row = await session.get(model, key, with_for_update=True, populate_existing=True)
    if row is None:
        row = model(**new)
        session.add(row)
    return row


def alembic_config(url: str | None = None) -> Any:
    """An Alembic ``Config`` for this project's migrations, built in code (no ini file needed)."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url is not None:
        # '%' must be doubled for configparser interpolation.
        config.set_main_option("sqlalchemy.url", normalize_url(url).replace("%", "%%"))
    return config


async def run_alembic(url: str, action: str, *args: Any) -> None:
    """Run an Alembic command (``"upgrade"``, ``"downgrade"``, ``"check"``, ...) on ``url`` from async code.

    The command runs on a connection of our own engine (so the SQLite pragmas apply), inside
    ``run_sync``, which makes it safe to call from a running event loop.
    """
    from alembic import command

    func = getattr(command, action, None)
    if func is None or not callable(func):
        raise ValueError(f"unknown alembic command {action!r}")
    config = alembic_config(url)
    engine = make_engine(url)
    try:
        async with engine.begin() as conn:
            if engine.dialect.name == "postgresql":
                # Bot and workers all migrate at start: serialise them.
                await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
            # On SQLite, engine.begin() has sent BEGIN IMMEDIATE: concurrent migrations queue for the write
            # lock there, before entering Alembic's process-global context (two runs interleaved inside it
            # would corrupt each other).

            def run(sync_conn: Connection) -> None:
                config.attributes["connection"] = sync_conn
                func(config, *args)

            await conn.run_sync(run)
    finally:
        await engine.dispose()


async def migrate(url: str) -> None:
    """Upgrade the database at ``url`` to the newest schema (``alembic upgrade head``)."""
    await run_alembic(url, "upgrade", "head")


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
        raise BackupError(
            f"DATABASE_URL is {parsed.get_backend_name()}: back it up with pg_dump "
            "(pg_dump --format=custom --file=i2v.dump DBNAME; see docs/deploy.md)"
        )
    if not parsed.database or parsed.database == ":memory:":
        raise BackupError("DATABASE_URL is an in-memory SQLite database: there is nothing to back up")
    return Path(parsed.database)


def backup_destination(dest: Path, now: datetime | None = None) -> Path:
    """``dest`` itself, or a dated file name inside it when it is a folder. Never an existing file."""
    if dest.is_dir():
        dest = dest / (now or datetime.now(UTC)).strftime(BACKUP_NAME_FORMAT)
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
