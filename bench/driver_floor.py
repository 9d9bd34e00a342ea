"""The driver floor: the store benchmark's job shape run with the bare database driver and nothing else.

A job here is the same 53 transactions as in ``bench.store`` (insert; claim the oldest queued row; 50 fenced
progress UPDATEs; finish), each committed on its own, on a scratch table of six columns, through ``sqlite3``
or ``asyncpg`` with no SQLAlchemy, no quota, no ORM. As in the store, the progress UPDATEs (and only they)
commit asynchronously on PostgreSQL; SQLite runs with the store's pragmas (WAL, ``synchronous=NORMAL``).

No store built on these databases can do a job's 53 commits faster than this on the same machine, so it
is the ceiling that ``bench.store --floor`` prints beside the store's own rate, measured in the same run.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.engine import make_url

FLOOR_TABLE = "bench_floor_jobs"
SQLITE_BUSY_TIMEOUT_MS = 30_000
LEASE = timedelta(seconds=120)

_SQLITE_SCHEMA = (
    f"CREATE TABLE IF NOT EXISTS {FLOOR_TABLE} (id INTEGER PRIMARY KEY, status TEXT NOT NULL, attempt INTEGER "
    "NOT NULL DEFAULT 0, worker TEXT, step INTEGER, lease_expires_at TEXT)",
    f"CREATE INDEX IF NOT EXISTS {FLOOR_TABLE}_queued ON {FLOOR_TABLE} (id) WHERE status = 'queued'",
)
_PG_SCHEMA = (
    f"CREATE TABLE IF NOT EXISTS {FLOOR_TABLE} (id bigserial PRIMARY KEY, status text NOT NULL, attempt integer "
    "NOT NULL DEFAULT 0, worker text, step integer, lease_expires_at timestamptz)",
    f"CREATE INDEX IF NOT EXISTS {FLOOR_TABLE}_queued ON {FLOOR_TABLE} (id) WHERE status = 'queued'",
)

_INSERT = f"INSERT INTO {FLOOR_TABLE} (status) VALUES ('queued')"
_SQLITE_CLAIM = (
    f"UPDATE {FLOOR_TABLE} SET status = 'running', attempt = attempt + 1, worker = ?, lease_expires_at = ? "
    f"WHERE id = (SELECT id FROM {FLOOR_TABLE} WHERE status = 'queued' ORDER BY id LIMIT 1) RETURNING id, attempt"
)
_SQLITE_PROGRESS = (
    f"UPDATE {FLOOR_TABLE} SET step = ?, lease_expires_at = ? WHERE id = ? AND attempt = ? AND status = 'running' "
    "RETURNING id"
)
_SQLITE_FINISH = (
    f"UPDATE {FLOOR_TABLE} SET status = 'succeeded' WHERE id = ? AND attempt = ? AND status = 'running' RETURNING id"
)
_PG_CLAIM = (
    f"UPDATE {FLOOR_TABLE} SET status = 'running', attempt = attempt + 1, worker = $1, lease_expires_at = $2 "
    f"WHERE id = (SELECT id FROM {FLOOR_TABLE} WHERE status = 'queued' ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED) "
    "RETURNING id, attempt"
)
_PG_PROGRESS = (
    f"UPDATE {FLOOR_TABLE} SET step = $1, lease_expires_at = $2 WHERE id = $3 AND attempt = $4 "
    "AND status = 'running' RETURNING id, set_config('synchronous_commit', 'off', true)"
)
_PG_FINISH = (
    f"UPDATE {FLOOR_TABLE} SET status = 'succeeded' WHERE id = $1 AND attempt = $2 AND status = 'running' RETURNING id"
)


def _lease() -> datetime:
    return datetime.now(UTC) + LEASE


def _sqlite_path(url: str) -> str:
    database = make_url(url).database
    if not database or database == ":memory:":
        raise ValueError(f"the driver floor needs a SQLite file, got {url!r}")
    return database


def _asyncpg_dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def _sqlite_connect(url: str) -> sqlite3.Connection:
    conn = sqlite3.connect(_sqlite_path(url), isolation_level=None, timeout=SQLITE_BUSY_TIMEOUT_MS / 1000)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    return conn


def _sqlite_jobs(url: str, worker: str, jobs: int, writes: int) -> None:
    conn = _sqlite_connect(url)
    try:
        for _ in range(jobs):
            conn.execute(_INSERT)
            row = conn.execute(_SQLITE_CLAIM, (worker, _lease().isoformat())).fetchone()
            if row is None:
                raise RuntimeError("floor claim found nothing right after an insert")
            job_id, attempt = row
            for step in range(1, writes + 1):
                if conn.execute(_SQLITE_PROGRESS, (step, _lease().isoformat(), job_id, attempt)).fetchone() is None:
                    raise RuntimeError(f"floor progress of job {job_id} was fenced out")
            if conn.execute(_SQLITE_FINISH, (job_id, attempt)).fetchone() is None:
                raise RuntimeError(f"floor finish of job {job_id} was fenced out")
    finally:
        conn.close()


async def _postgres_jobs(url: str, worker: str, jobs: int, writes: int) -> None:
    import asyncpg

    conn = await asyncpg.connect(_asyncpg_dsn(url))
    try:
        insert, claim = await conn.prepare(_INSERT), await conn.prepare(_PG_CLAIM)
        progress, finish = await conn.prepare(_PG_PROGRESS), await conn.prepare(_PG_FINISH)
        for _ in range(jobs):
            await insert.fetch()
            row = await claim.fetchrow(worker, _lease())
            if row is None:
                raise RuntimeError("floor claim found nothing right after an insert")
            job_id, attempt = row[0], row[1]
            for step in range(1, writes + 1):
                if await progress.fetchrow(step, _lease(), job_id, attempt) is None:
                    raise RuntimeError(f"floor progress of job {job_id} was fenced out")
            if await finish.fetchrow(job_id, attempt) is None:
                raise RuntimeError(f"floor finish of job {job_id} was fenced out")
    finally:
        await conn.close()


async def _run_sql(url: str, statements: tuple[str, ...]) -> list[Any]:
    """Run ``statements`` in order on a fresh connection to ``url``; the rows of the last one."""
    rows: list[Any] = []
    if make_url(url).get_backend_name() == "sqlite":
        conn = _sqlite_connect(url)
        try:
            for statement in statements:
                rows = conn.execute(statement).fetchall()
        finally:
            conn.close()
        return rows
    import asyncpg

    pg = await asyncpg.connect(_asyncpg_dsn(url))
    try:
        for statement in statements:
            rows = await pg.fetch(statement)
    finally:
        await pg.close()
    return rows


async def prepare(url: str) -> None:
    """Create the scratch table in the (SQLAlchemy-style) database ``url`` if it is not there."""
    await _run_sql(url, _SQLITE_SCHEMA if make_url(url).get_backend_name() == "sqlite" else _PG_SCHEMA)


async def worker_loop(url: str, worker: int, jobs: int, writes: int) -> None:
    """One worker's share of the floor: ``jobs`` jobs of ``writes`` progress commits each, on its own
    connection (SQLite's driver does not yield, so SQLite loops in one process run one after another)."""
    name = f"floor-{worker}"
    if make_url(url).get_backend_name() == "sqlite":
        _sqlite_jobs(url, name, jobs, writes)
    else:
        await _postgres_jobs(url, name, jobs, writes)


async def counts(url: str) -> dict[tuple[str, int | None], int]:
    """How many floor rows there are per (status, progress step): for checking that a run did every job."""
    rows = await _run_sql(url, (f"SELECT status, step, count(*) FROM {FLOOR_TABLE} GROUP BY status, step",))
    return {(row[0], row[1]): int(row[2]) for row in rows}
