"""The worker's progress writes: fenced heartbeats over one connection the worker keeps.

A worker reports progress at every denoising step it shows (the fenced UPDATE ... RETURNING of
``jobs.queue.report_progress``), far more often than it does anything else with the store. A
``ProgressWriter`` keeps one connection for them, and each write is a transaction of its own: on
PostgreSQL an autocommit statement (a single UPDATE is atomic by itself: one round trip instead of
three); on SQLite a ``BEGIN IMMEDIATE`` transaction of the engine's own recipe (``jobs.db``), since
SQLAlchemy's driver-level AUTOCOMMIT does not mix with that recipe.

A write that fails discards the connection (whatever went wrong, a dropped connection or a task cancelled
mid-write); the next write opens a fresh one.
"""

from __future__ import annotations

import asyncio
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from jobs.queue import ProgressAck, progress_parameters, progress_statement


class ProgressWriter:
    """Fenced progress + lease renewal for one worker, each write committed on its own.

    Use as an async context manager (or call ``close``). Writes from several tasks take turns.
    """

    def __init__(self, engine: AsyncEngine) -> None:
        if not isinstance(engine, AsyncEngine):
            raise TypeError(f"ProgressWriter needs an AsyncEngine, got {type(engine).__name__}")
        self._autocommit = engine.dialect.name == "postgresql"
        self._engine = engine.execution_options(isolation_level="AUTOCOMMIT") if self._autocommit else engine
        self._statement = progress_statement(engine.dialect.name)
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
                if self._autocommit:
                    row = (await conn.execute(self._statement, values)).first()
                else:
                    async with conn.begin():
                        row = (await conn.execute(self._statement, values)).first()
            except BaseException:
                # Whatever went wrong (a dropped connection, a cancelled task mid-write), start clean next time.
                self._conn = None
                await _discard(conn)
                raise
        return ProgressAck.from_row(row)

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
