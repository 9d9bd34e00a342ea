"""The store's figures behind ``/metrics``, aggregated in SQL: no scrape reads the jobs row by row.

One call reads, in a few aggregate queries on the caller's session: jobs by state, GPU-seconds used, workers by
state and their restarts, and the wait and generation-time histograms by preset. A histogram's bucket counts are
``SUM(CASE WHEN seconds <= bound THEN 1 ELSE 0 END)`` per bound, grouped by preset, so the database returns one
row per preset however many jobs there are (SQLite and PostgreSQL alike). Counting in the database rather than
observing in the process keeps what ``/metrics`` shows the same for every process that shares the store, and
unchanged across a restart.

Definitions (as in ``jobs.stats``): **wait** is ``started_at - created_at`` of a finished job that started (the
start of its last attempt); **generation time** is ``finished_at - started_at`` of a succeeded job; negative
differences (clock steps) count as 0. SQLite's date functions keep milliseconds, so its durations are rounded to
the millisecond; PostgreSQL's are exact to the microsecond.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Float, case, cast, extract, func, literal, select
from sqlalchemy.ext.asyncio import AsyncSession

from jobs.listings import NO_PRESET
from jobs.models import TERMINAL_STATUSES, Job, JobStatus, Worker, WorkerState

DURATION_BUCKETS_SECONDS = (1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)
"""Upper bounds (seconds) of the wait and generation-time histogram buckets; ``+Inf`` is the count."""
SECONDS_PER_DAY = 86400.0
SQLITE_DURATION_DECIMALS = 3  # julianday differences rounded to the millisecond SQLite keeps


@dataclass(frozen=True, kw_only=True)
class Histogram:
    """Observations of one preset: ``cumulative[i]`` counts those at most ``bounds[i]`` seconds."""

    bounds: tuple[float, ...]
    cumulative: tuple[int, ...]
    count: int
    sum_seconds: float


@dataclass(frozen=True, kw_only=True)
class MetricsSnapshot:
    """What one ``/metrics`` scrape shows from the store."""

    by_state: dict[JobStatus, int]  # every state present
    gpu_seconds: float  # measured for every job that has a measurement, whatever its outcome
    waits: dict[str, Histogram]  # by preset (NO_PRESET for explicit parameters); presets without jobs absent
    generations: dict[str, Histogram]  # by preset, succeeded jobs only
    workers: dict[WorkerState, int]  # every state present
    restarts: int  # summed over the worker registry


def seconds_between(dialect: str, later: Any, earlier: Any) -> ColumnElement[float]:
    """``later - earlier`` in seconds as an SQL expression of this back end, floored at 0."""
    if dialect == "sqlite":
        raw: ColumnElement[float] = func.round(
            (func.julianday(later) - func.julianday(earlier)) * SECONDS_PER_DAY, SQLITE_DURATION_DECIMALS
        )
    else:
        raw = cast(extract("epoch", later - earlier), Float)
    return case((raw < 0, literal(0.0)), else_=raw)


def _bucket_columns(seconds: ColumnElement[float], bounds: tuple[float, ...]) -> list[ColumnElement[int]]:
    """The count of observations, their sum, and one cumulative count per bound (NULL observations are left out)."""
    counts = [func.sum(case((seconds <= bound, 1), else_=0)) for bound in bounds]
    return [func.count(seconds), func.coalesce(func.sum(seconds), 0.0), *counts]


def _histograms(rows: Any, offset: int, bounds: tuple[float, ...]) -> dict[str, Histogram]:
    width = 2 + len(bounds)
    result: dict[str, Histogram] = {}
    for row in rows:
        count, total, *cumulative = row[offset:offset + width]
        if int(count or 0) == 0:
            continue
        result[str(row[0])] = Histogram(bounds=bounds, cumulative=tuple(int(c or 0) for c in cumulative),
                                        count=int(count), sum_seconds=float(total or 0.0))
    return result


async def read_metrics_snapshot(
    session: AsyncSession, *, bounds: tuple[float, ...] = DURATION_BUCKETS_SECONDS
) -> MetricsSnapshot:
    """The store's figures for one scrape, in five aggregate queries (read-only; the caller owns the transaction).

    Raises
    ------
    ValueError
        ``bounds`` is empty or not strictly increasing.
    """
    if not bounds or any(b <= a for a, b in zip(bounds, bounds[1:])):
        raise ValueError(f"read_metrics_snapshot: bounds must be non-empty and strictly increasing, got {bounds!r}")
    dialect = session.get_bind().dialect.name

    counts = dict((await session.execute(select(Job.status, func.count(Job.id)).group_by(Job.status))).all())
    by_state = {status: int(counts.get(status, 0)) for status in JobStatus}
    gpu_seconds = float(await session.scalar(select(func.coalesce(func.sum(Job.gpu_seconds), 0.0))) or 0.0)

    preset = func.coalesce(Job.preset, NO_PRESET).label("preset")
    wait = seconds_between(dialect, Job.started_at, Job.created_at)
    generation = case(
        (
            (Job.status == JobStatus.SUCCEEDED) & Job.finished_at.is_not(None),
            seconds_between(dialect, Job.finished_at, Job.started_at),
        ),
        else_=None,
    )
    timed = (
        select(preset, wait.label("wait"), generation.label("generation"))
        .where(Job.status.in_(TERMINAL_STATUSES), Job.started_at.is_not(None))
        .subquery("timed")
    )
    rows = (await session.execute(
        select(timed.c.preset, *_bucket_columns(timed.c.wait, bounds), *_bucket_columns(timed.c.generation, bounds))
        .group_by(timed.c.preset)
        .order_by(timed.c.preset)
    )).all()

    worker_counts = dict((await session.execute(
        select(Worker.state, func.count(Worker.id)).group_by(Worker.state))).all())
    restarts = int(await session.scalar(select(func.coalesce(func.sum(Worker.restarts), 0))) or 0)
    return MetricsSnapshot(
        by_state=by_state,
        gpu_seconds=gpu_seconds,
        waits=_histograms(rows, 1, bounds),
        generations=_histograms(rows, 1 + 2 + len(bounds), bounds),
        workers={state: int(worker_counts.get(state, 0)) for state in WorkerState},
        restarts=restarts,
    )
