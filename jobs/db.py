"""Engines, sessions and migrations for the job store.

SQLite (the default) runs through aiosqlite with, on every new connection: WAL journal, a busy timeout,
``foreign_keys=ON`` and ``synchronous=NORMAL``; the driver's own transaction handling is switched off and
every transaction starts with ``BEGIN IMMEDIATE`` (a deferred BEGIN that reads and then writes gets
"database is locked" at once, ignoring the busy timeout), sent together with the transaction's first
statement. Engines made with ``read_only=True`` start deferred transactions on ``query_only`` connections
instead. PostgreSQL runs through asyncpg.

SQLite statements run on the event loop's thread (``_InlineCursor``): a job-store statement takes tens of
microseconds there, less than one hop to aiosqlite's thread. Only waiting must not happen there, and the
only wait is for the write lock, which is taken when a transaction begins (WAL: readers never wait, and a
transaction holding the write lock never waits again, commit included). So a statement that may need a
lock is first tried with the busy timeout set to 0; if the lock is held elsewhere ("database is locked"
before anything ran) it is run again on aiosqlite's thread with the full busy timeout, and the loop goes
on meanwhile. Checkpoints (every ~1000 WAL pages, at a commit) also run inline: with
``synchronous=NORMAL`` that is the only fsync, a few milliseconds on an SSD.
"""

from __future__ import annotations

import asyncio
import collections
import sqlite3
import time
from pathlib import Path
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.dialects.sqlite.aiosqlite import (
    AsyncAdapt_aiosqlite_connection,
    AsyncAdapt_aiosqlite_cursor,
    AsyncAdapt_aiosqlite_dbapi,
)
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

try:  # SQLAlchemy 2.1 name
    from sqlalchemy.util.concurrency import await_
except ImportError:  # pragma: no cover - SQLAlchemy 2.0
    from sqlalchemy.util.concurrency import await_only as await_

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


def is_sqlite(url_or_engine: str | AsyncEngine) -> bool:
    """True if the URL or engine is SQLite."""
    if isinstance(url_or_engine, AsyncEngine):
        return url_or_engine.dialect.name == "sqlite"
    return make_url(normalize_url(url_or_engine)).get_backend_name() == "sqlite"


def _switch_to_wal(cursor: Any, busy_timeout_ms: int) -> str:
    """``PRAGMA journal_mode = WAL``, retried while it reports "database is locked": SQLite does not run the
    busy handler for this switch, so connections opening a fresh file at once (bot and workers migrating
    together) can hit each other's lock. Gives up after the busy timeout, as any other statement would."""
    deadline = time.monotonic() + busy_timeout_ms / 1000.0
    while True:
        try:
            cursor.execute("PRAGMA journal_mode = WAL")
            (mode,) = cursor.fetchone()
            return str(mode)
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() >= deadline:
                raise
        await_(asyncio.sleep(WAL_SWITCH_RETRY_S))


def _sqlite_on_connect(read_only: bool, busy_timeout_ms: int):  # type: ignore[no-untyped-def]
    def on_connect(dbapi_connection: Any, connection_record: Any) -> None:
        # Take transaction control away from the sqlite3 driver: we emit BEGIN ourselves (see _sqlite_on_begin).
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


_BEGIN_DEFERRED_KEY = "i2v_begin_deferred"
BEGIN_IMMEDIATE = "BEGIN IMMEDIATE"


def _sqlite_on_begin(read_only: bool):  # type: ignore[no-untyped-def]
    def on_begin(conn: Connection) -> None:
        # Decide the BEGIN flavour here, where execution options are visible; _sqlite_do_begin emits it.
        deferred = read_only or bool(conn.get_execution_options().get(READ_ONLY_OPTION))
        conn.connection.info[_BEGIN_DEFERRED_KEY] = deferred

    return on_begin


def _sqlite_set_isolation_level(dbapi_connection: Any, level: str) -> None:
    """``dialect.set_isolation_level`` for SQLite. SERIALIZABLE (the default, SQLite's only level): our own
    BEGIN starts each transaction. AUTOCOMMIT: no BEGIN; each statement is a transaction of its own. The
    driver's ``isolation_level`` stays None either way (the stock dialect sets it to "" on reset, which would
    hand BEGIN back to the driver)."""
    if level not in ("SERIALIZABLE", "AUTOCOMMIT"):
        raise ValueError(f"SQLite engines support isolation levels SERIALIZABLE and AUTOCOMMIT, not {level!r}")
    dbapi_connection.autocommit = level == "AUTOCOMMIT"


def _sqlite_do_begin(connection: Any) -> None:
    """``dialect.do_begin`` for SQLite: no driver call of its own. The BEGIN is remembered on the connection
    and sent with the transaction's first statement (``_InlineCursor``), inside
    SQLAlchemy's error handling, so "database is locked" arrives as OperationalError from that statement."""
    deferred = connection.info.pop(_BEGIN_DEFERRED_KEY, False)
    if connection.dbapi_connection.autocommit:
        return
    connection.dbapi_connection.pending_begin = "BEGIN" if deferred else BEGIN_IMMEDIATE


def _run_statement(
    connection: sqlite3.Connection, begin: str | None, operation: str, parameters: Any, many: bool
) -> tuple[Any, list[Any], int, int | None]:
    """Run ``begin`` (if any) and one statement on a fresh cursor of ``connection`` and return everything
    SQLAlchemy reads from it (description, rows, rowcount, lastrowid)."""
    cursor = connection.cursor()
    try:
        if begin is not None:
            cursor.execute(begin)
        if many:
            cursor.executemany(operation, parameters)
        elif parameters is None:
            cursor.execute(operation)
        else:
            cursor.execute(operation, parameters)
        description = cursor.description
        rows = cursor.fetchall() if description else []
        return description, rows, cursor.rowcount, cursor.lastrowid
    finally:
        cursor.close()


def _is_busy(error: sqlite3.OperationalError) -> bool:
    """True for SQLITE_BUSY ("database is locked"): another connection holds a lock we need."""
    return (getattr(error, "sqlite_errorcode", 0) & 0xFF) == sqlite3.SQLITE_BUSY


class _LockWaitNeeded(Exception):
    """The statement needs a lock held by another connection; nothing of it ran. ``begin`` is what is still
    to be sent before it (None when the transaction's BEGIN already went through)."""

    def __init__(self, begin: str | None) -> None:
        super().__init__(begin)
        self.begin = begin


def _run_without_waiting(
    connection: sqlite3.Connection, begin: str | None, operation: str, parameters: Any, many: bool, busy_timeout_ms: int
) -> tuple[Any, list[Any], int, int | None]:
    """``_run_statement`` with a busy timeout of 0, restored to ``busy_timeout_ms`` afterwards: raises
    ``_LockWaitNeeded`` instead of waiting for a lock."""
    connection.execute("PRAGMA busy_timeout = 0")
    try:
        if begin is not None:
            try:
                connection.execute(begin)
            except sqlite3.OperationalError as error:
                if _is_busy(error):
                    raise _LockWaitNeeded(begin) from error
                raise
        try:
            return _run_statement(connection, None, operation, parameters, many)
        except sqlite3.OperationalError as error:
            # A statement that fails on a lock has done nothing (SQLite statements are atomic): run it again.
            if _is_busy(error):
                raise _LockWaitNeeded(None) from error
            raise
    finally:
        connection.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")


class _InlineCursor(AsyncAdapt_aiosqlite_cursor):
    """SQLAlchemy's aiosqlite cursor makes four thread hops per statement (cursor, execute, fetchall,
    close; ~0.1 ms each when the event loop is busy). This one runs the statement on the calling thread
    and keeps the results, already fetched (as the stock cursor keeps them); a statement that would wait
    for a lock goes to aiosqlite's thread instead (one hop) and waits there."""

    __slots__ = ("_description", "_rowcount", "_lastrowid")
    _awaitable_cursor_close = False

    def __init__(self, adapt_connection: _InlineConnection) -> None:  # noqa: D107
        self._adapt_connection = adapt_connection
        self._connection = adapt_connection._connection
        self._cursor = None  # type: ignore[assignment]
        self._soft_closed_memoized = {}
        self._rows = collections.deque()
        self._description: Any = None
        self._rowcount = -1
        self._lastrowid: int | None = None

    @property
    def description(self) -> Any:  # noqa: D102
        return self._description

    @property
    def rowcount(self) -> int:  # noqa: D102
        return self._rowcount

    @property
    def lastrowid(self) -> int:  # noqa: D102
        return self._lastrowid  # type: ignore[return-value]

    @property
    def arraysize(self) -> int:  # noqa: D102
        return 1

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        pass

    async def _run(self, operation: Any, parameters: Any, many: bool) -> None:
        adapted = self._adapt_connection
        sqlite_conn: sqlite3.Connection = self._connection._conn  # noqa: SLF001 - aiosqlite's sqlite3 connection
        async with adapted._execute_mutex:
            begin, adapted.pending_begin = adapted.pending_begin, None
            if adapted.holds_write_lock:  # nothing left to wait for in this transaction
                result = _run_statement(sqlite_conn, None, operation, parameters, many)
            else:
                try:
                    result = _run_without_waiting(
                        sqlite_conn, begin, operation, parameters, many, adapted.busy_timeout_ms
                    )
                except _LockWaitNeeded as wait:
                    waiting = asyncio.ensure_future(
                        self._connection._execute(_run_statement, sqlite_conn, wait.begin, operation, parameters, many)
                    )
                    try:
                        result = await asyncio.shield(waiting)
                    except asyncio.CancelledError:
                        # The thread runs the statement to its end regardless: keep the connection (the
                        # mutex) until it has, so that the rollback that follows cannot overlap it.
                        await asyncio.wait([waiting])
                        raise
                adapted.holds_write_lock = begin == BEGIN_IMMEDIATE
        self._description, self._rowcount, self._lastrowid = result[0], result[2], result[3]
        self._rows = collections.deque(result[1])

    def execute(self, operation: Any, parameters: Any = None) -> Any:  # noqa: D102
        try:
            return await_(self._run(operation, parameters, False))
        except Exception as error:  # noqa: BLE001 - translated to the DBAPI's exception as the stock cursor does
            self._adapt_connection._handle_exception(error)

    def executemany(self, operation: Any, seq_of_parameters: Any) -> Any:  # noqa: D102
        try:
            return await_(self._run(operation, seq_of_parameters, True))
        except Exception as error:  # noqa: BLE001
            self._adapt_connection._handle_exception(error)

    def close(self) -> None:  # noqa: D102
        self._rows.clear()


class _InlineConnection(AsyncAdapt_aiosqlite_connection):
    """aiosqlite connection with inline cursors. ``pending_begin`` is the BEGIN the next statement sends
    first (a transaction that ends before any statement ran never touched the database);
    ``holds_write_lock`` is whether the open transaction began IMMEDIATE (then nothing in it waits);
    ``autocommit``: no BEGIN at all (``isolation_level="AUTOCOMMIT"``), each statement commits itself.
    Commit and rollback run inline too: in WAL mode they never wait for a lock."""

    __slots__ = ("pending_begin", "holds_write_lock", "busy_timeout_ms", "autocommit")
    _cursor_cls = _InlineCursor

    def __init__(self, dbapi: Any, connection: Any, busy_timeout_ms: int) -> None:  # noqa: D107
        super().__init__(dbapi, connection)
        self.pending_begin: str | None = None
        self.holds_write_lock = False
        self.busy_timeout_ms = busy_timeout_ms
        self.autocommit = False

    def _end(self, action: str) -> None:
        self.pending_begin, self.holds_write_lock = None, False
        sqlite_conn = self._connection._connection  # noqa: SLF001 - aiosqlite's sqlite3 connection, None once closed
        if sqlite_conn is None:
            return
        try:
            getattr(sqlite_conn, action)()
        except Exception as error:  # noqa: BLE001 - translated like every other driver error
            self._handle_exception(error)

    def commit(self) -> None:  # noqa: D102
        if self.pending_begin is not None:  # nothing ran: nothing to commit
            self.pending_begin = None
            return
        self._end("commit")

    def rollback(self) -> None:  # noqa: D102
        self._end("rollback")


class _InlineDbapi(AsyncAdapt_aiosqlite_dbapi):
    """The aiosqlite DBAPI shim, handing out connections whose statements run inline (``_InlineCursor``)."""

    def __init__(self, aiosqlite: Any, sqlite: Any, busy_timeout_ms: int) -> None:  # noqa: D107
        super().__init__(aiosqlite, sqlite)
        self.busy_timeout_ms = busy_timeout_ms

    def connect(self, *arg: Any, **kw: Any) -> AsyncAdapt_aiosqlite_connection:  # noqa: D102
        adapted = super().connect(*arg, **kw)
        return _InlineConnection(self, adapted._connection, self.busy_timeout_ms)


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
        # Every transaction is begun and ended explicitly (Session, Connection.close() rolls back), and the
        # driver never begins on its own (isolation_level=None): the pool's extra ROLLBACK on check-in would
        # only add a driver round trip per transaction.
        kwargs.setdefault("pool_reset_on_return", None)
        import aiosqlite

        kwargs.setdefault("module", _InlineDbapi(aiosqlite, sqlite3, busy_timeout_ms))
        # Statements run on the event loop's thread as well as on aiosqlite's (one at a time: see _InlineCursor).
        kwargs.setdefault("connect_args", {}).setdefault("check_same_thread", False)
        engine = create_async_engine(url, echo=echo, **kwargs)
        event.listen(engine.sync_engine, "connect", _sqlite_on_connect(read_only, busy_timeout_ms))
        event.listen(engine.sync_engine, "begin", _sqlite_on_begin(read_only))
        engine.sync_engine.dialect.do_begin = _sqlite_do_begin  # type: ignore[method-assign]
        engine.sync_engine.dialect.set_isolation_level = _sqlite_set_isolation_level  # type: ignore[method-assign]
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
                # Bot and workers all migrate at start: serialise them (SQLite's BEGIN IMMEDIATE already does).
                await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
            else:
                # SQLite sends BEGIN IMMEDIATE with a transaction's first statement: send one now, so that
                # concurrent migrations queue for the write lock here, before entering Alembic's
                # process-global context (two runs interleaved inside it would corrupt each other).
                await conn.execute(text("SELECT 1"))

            def run(sync_conn: Connection) -> None:
                config.attributes["connection"] = sync_conn
                func(config, *args)

            await conn.run_sync(run)
    finally:
        await engine.dispose()


async def migrate(url: str) -> None:
    """Upgrade the database at ``url`` to the newest schema (``alembic upgrade head``)."""
    await run_alembic(url, "upgrade", "head")
