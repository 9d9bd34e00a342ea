"""The worker's progress writes: fenced heartbeats over one connection the worker keeps.

A worker reports progress at every denoising step it shows (the fenced UPDATE ... RETURNING of
``jobs.queue.report_progress``), far more often than it does anything else with the store. A session per
write costs BEGIN, UPDATE and COMMIT and SQLAlchemy's per-statement work, several times what the database
spends on the write. So a ``ProgressWriter``:

- keeps one autocommit connection, and each write is a transaction of its own (a single UPDATE is atomic
  by itself): on PostgreSQL one round trip instead of three;
- compiles the statement once for the engine's dialect (``DriverStatement``) and hands it to the driver's
  cursor with its parameters already converted by the columns' own types, skipping SQLAlchemy's
  per-execution bookkeeping. The cursor is still the engine's: on SQLite a wait for the write lock still
  happens off the event loop (``jobs.db``), and asyncpg still prepares the statement once per connection.

A write that fails discards the connection (the driver's error is not SQLAlchemy's, so the pool would not
know it is broken); the next write opens a fresh one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.sql import ClauseElement

from jobs.queue import ProgressAck, progress_parameters, progress_statement


class DriverStatement:
    """A Core statement compiled once for one dialect, run on a DBAPI cursor with positional parameters.

    Only for statements whose parameters are all bound by name when called (no expanding IN lists, no
    literal rendering): the compiled SQL text never changes between calls.
    """

    def __init__(self, statement: ClauseElement, dialect: Dialect) -> None:
        compiled = statement.compile(dialect=dialect)
        if compiled.positiontup is None:
            raise ValueError(f"{dialect.name} uses the {dialect.paramstyle!r} paramstyle; DriverStatement needs a "
                             "positional one")
        self.sql = compiled.string
        self._compiled = compiled
        self._names = tuple(compiled.positiontup)
        self._processors: tuple[Callable[[Any], Any] | None, ...] = tuple(
            compiled.binds[name].type.dialect_impl(dialect).bind_processor(dialect) for name in self._names
        )

    def arguments(self, values: Mapping[str, Any]) -> tuple[Any, ...]:
        """The driver's parameters: ``values`` (plus the statement's own fixed ones) in placeholder order,
        each converted as its column type converts it."""
        full = self._compiled.construct_params(dict(values))
        return tuple(
            full[name] if process is None else process(full[name])
            for name, process in zip(self._names, self._processors, strict=True)
        )

    def rows(self, connection: Connection, values: Mapping[str, Any]) -> list[Any]:
        """Run on ``connection`` (sync side, inside ``AsyncConnection.run_sync``) and fetch every row."""
        cursor = connection.connection.cursor()
        try:
            cursor.execute(self.sql, self.arguments(values))
            return list(cursor.fetchall())
        finally:
            cursor.close()


class ProgressWriter:
    """Fenced progress + lease renewal for one worker, each write committed on its own.

    Use as an async context manager (or call ``close``). Writes from several tasks take turns.
    """

    def __init__(self, engine: AsyncEngine) -> None:
        if not isinstance(engine, AsyncEngine):
            raise TypeError(f"ProgressWriter needs an AsyncEngine, got {type(engine).__name__}")
        self._engine = engine.execution_options(isolation_level="AUTOCOMMIT")
        self._statement = DriverStatement(progress_statement(engine.dialect.name), engine.dialect)
        self._conn: AsyncConnection | None = None
        self._turn = asyncio.Lock()

    async def write(
        self,
        job_id: int,
        attempt: int,
        *,
        worker_id: str,
        step: int,
        total: int,
        phase: str,
        lease_seconds: float,
        now: datetime | None = None,
    ) -> ProgressAck:
        """``report_progress`` as a transaction of its own (committed when this returns)."""
        values = progress_parameters(job_id, attempt, worker_id=worker_id, step=step, total=total, phase=phase,
                                     lease_seconds=lease_seconds, now=now)
        async with self._turn:
            if self._conn is None:
                self._conn = await self._engine.connect()
            conn = self._conn
            try:
                rows = await conn.run_sync(self._statement.rows, values)
            except BaseException:
                # Whatever went wrong (a dropped connection, a cancelled task mid-write), start clean next time.
                self._conn = None
                await _discard(conn)
                raise
        return ProgressAck.from_row(rows[0] if rows else None)

    async def close(self) -> None:
        """Give the connection back to the pool (idempotent)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.close()

    async def __aenter__(self) -> ProgressWriter:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


async def _discard(conn: AsyncConnection) -> None:
    """Close ``conn`` without returning its driver connection to the pool."""
    try:
        await conn.invalidate()
    finally:
        await conn.close()
