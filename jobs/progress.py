"""A running attempt's own writes: the fenced progress write (progress + lease renewal), notes, and the ownership
read. (A worker's heartbeat, its liveness stamp, is its registry row's: :mod:`jobs.workers`.)

The progress write runs about every denoising step of every worker, so its UPDATE is built once per back end
(``progress_statement``) and its parameters are checked apart (``progress_parameters``); a worker sends it through
:class:`ProgressWriter`, each write a transaction of its own, while ``report_progress`` runs it in the
caller's transaction.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NotRequired, TypedDict, Unpack

from sqlalchemy import Integer, String, Update, bindparam, literal_column, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from jobs.models import JobPhase, JobStatus, UtcDateTime
from jobs.transitions import JOBS, check_lease, checked_now, fenced


@dataclass(frozen=True)
class ProgressAck:
    """Answer to a worker's progress report."""

    ok: bool
    """False: the job is no longer this attempt's (rescued, finished elsewhere): stop working on it."""
    cancel_requested: bool

    @classmethod
    def from_row(cls, row: Sequence[Any] | None) -> ProgressAck:
        """From the progress UPDATE's RETURNING row (None: fenced out)."""
        if row is None:
            return cls(ok=False, cancel_requested=False)
        return cls(ok=True, cancel_requested=bool(row[0]))


PROGRESS_ASYNC_COMMIT_PG = "set_config('synchronous_commit', 'off', true)"
"""Evaluated by the PostgreSQL progress UPDATE: that one transaction commits without waiting for its WAL
flush (~0.2 ms here). A server crash can lose the last fraction of a second of progress writes, never a later
durable commit (finish, enqueue) and never consistency; a lost progress write only makes the lease look older."""


@functools.cache
def progress_statement(dialect_name: str) -> Update:
    """The fenced progress UPDATE, built once per back end (it runs ~every denoising step of every worker).
    Its RETURNING row starts with ``cancel_requested`` and is absent when the attempt no longer owns the job."""
    returning: list[Any] = [JOBS.c.cancel_requested]
    if dialect_name == "postgresql":
        returning.append(literal_column(PROGRESS_ASYNC_COMMIT_PG).label("async_commit"))
    return (
        update(JOBS)
        .where(
            JOBS.c.id == bindparam("p_id"),
            JOBS.c.attempt == bindparam("p_attempt"),
            JOBS.c.worker_id == bindparam("p_worker", type_=String()),
            JOBS.c.status == JobStatus.RUNNING,
        )
        .values(
            progress_step=bindparam("p_step", type_=Integer()),
            progress_total=bindparam("p_total", type_=Integer()),
            phase=bindparam("p_phase", type_=String()),
            lease_expires_at=bindparam("p_lease", type_=UtcDateTime()),
        )
        .returning(*returning)
    )


class ProgressReport(TypedDict):
    """What a worker reports with each progress write (besides the job id and attempt that fence it)."""

    worker_id: str
    step: int
    total: int
    phase: JobPhase | str
    lease_seconds: float
    now: NotRequired[datetime | None]


def progress_parameters(job_id: int, attempt: int, **report: Unpack[ProgressReport]) -> dict[str, Any]:
    """The checked parameters of ``progress_statement`` (a bad step, total, phase or lease raises ValueError)."""
    lease = check_lease(report["lease_seconds"])
    step, total = report["step"], report["total"]
    if step < 0 or total < 0 or (total > 0 and step > total):
        raise ValueError(f"progress step {step} of {total} is out of range (0 <= step <= total)")
    return {
        "p_id": job_id,
        "p_attempt": attempt,
        "p_worker": report["worker_id"],
        "p_step": step,
        "p_total": total,
        "p_phase": JobPhase(report["phase"]).value,
        "p_lease": checked_now(report.get("now")) + lease,
    }


async def report_progress(
    session: AsyncSession, job_id: int, attempt: int, **report: Unpack[ProgressReport]
) -> ProgressAck:
    """Progress (fenced by job, attempt and worker): renews the lease and returns whether to cancel.

    One UPDATE ... RETURNING in the caller's transaction. A worker sends the same statement through
    :class:`ProgressWriter`, each write a transaction of its own."""
    params = progress_parameters(job_id, attempt, **report)
    stmt = progress_statement(session.get_bind().dialect.name)
    row = (await session.execute(stmt, params)).first()
    return ProgressAck.from_row(row)


async def record_note(session: AsyncSession, job_id: int, attempt: int, *, worker_id: str, note: str) -> bool:
    """A worker's note on its running attempt (e.g. a low-memory retry) in ``error_detail``; fenced."""
    row = (
        await session.execute(
            update(JOBS).where(*fenced(job_id, attempt, worker_id)).values(error_detail=note).returning(JOBS.c.id)
        )
    ).first()
    return row is not None


async def attempt_state(session: AsyncSession, job_id: int, attempt: int, *, worker_id: str) -> ProgressAck:
    """A read of whether this worker's attempt still owns the job and whether its cancel was requested."""
    row = (await session.execute(select(JOBS.c.cancel_requested).where(*fenced(job_id, attempt, worker_id)))).first()
    return ProgressAck.from_row(row)


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

    async def write(self, job_id: int, attempt: int, **report: Unpack[ProgressReport]) -> ProgressAck:
        """``report_progress`` as a transaction of its own (committed when this returns)."""
        values = progress_parameters(job_id, attempt, **report)
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
