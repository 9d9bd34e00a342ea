"""The worker's progress writes: fenced heartbeats over one connection the worker keeps.

A worker reports progress at every denoising step it shows (``report_progress``: the same fenced
UPDATE ... RETURNING), far more often than it does anything else with the store. Checking a connection
out of the pool and opening a session for each of those costs more than the write itself, so a
``ProgressWriter`` keeps one autocommit connection and sends each write as a statement that is its own
transaction: on PostgreSQL one round trip instead of three (BEGIN, UPDATE, COMMIT), on SQLite one call
instead of three. A single UPDATE is atomic by itself, so nothing is lost by the missing BEGIN. A write
that fails drops the connection; the next one opens a fresh one.
"""

from __future__ import annotations

import asyncio
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from jobs.queue import ProgressAck, report_progress


class ProgressWriter:
    """Fenced progress + lease renewal for one worker, each write committed on its own.

    Use as an async context manager (or call ``close``). Writes from several tasks take turns.
    """

    def __init__(self, engine: AsyncEngine) -> None:
        if not isinstance(engine, AsyncEngine):
            raise TypeError(f"ProgressWriter needs an AsyncEngine, got {type(engine).__name__}")
        self._engine = engine.execution_options(isolation_level="AUTOCOMMIT")
        self._conn: AsyncConnection | None = None
        self._turn = asyncio.Lock()

    async def write(
        self,
        job_id: int,
        attempt: int,
        *,
        step: int,
        total: int,
        phase: str,
        lease_seconds: float,
        now: datetime | None = None,
    ) -> ProgressAck:
        """``report_progress`` as a transaction of its own (committed when this returns)."""
        async with self._turn:
            return await self._write(job_id, attempt, step, total, phase, lease_seconds, now)

    async def _write(
        self, job_id: int, attempt: int, step: int, total: int, phase: str, lease_seconds: float, now: datetime | None
    ) -> ProgressAck:
        if self._conn is None:
            self._conn = await self._engine.connect()
        conn = self._conn
        try:
            return await report_progress(
                conn, job_id, attempt, step=step, total=total, phase=phase, lease_seconds=lease_seconds, now=now
            )
        except BaseException:
            # Whatever went wrong (a dropped connection, a cancelled task mid-write), start clean next time.
            await self.close()
            raise

    async def close(self) -> None:
        """Give the connection back to the pool (idempotent)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.close()

    async def __aenter__(self) -> ProgressWriter:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()
