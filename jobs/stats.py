"""Read-only statistics behind ``/admin stats``: job counts, GPU time, wait and generation times, workers.

Each function takes an :class:`~sqlalchemy.ext.asyncio.AsyncSession`; the caller owns the transaction. Nothing
here writes. Durations are computed in Python (numpy) from the stored timestamps, so SQLite and PostgreSQL give the
same numbers (SQLite has no percentile function).

Definitions used throughout:

- **wait**: ``started_at - created_at`` of a job that has started (for a job that was retried, ``started_at`` is
  the start of its last attempt, so the wait includes the earlier attempts).
- **generation time**: ``finished_at - started_at`` of a job that succeeded.
- **GPU seconds used**: the sum of ``gpu_seconds`` measured by the workers for jobs that finished in the period,
  whatever their outcome (failed and cancelled jobs used the GPU too, even when nobody was charged).
- **today**: since 00:00 UTC; **7 days**: the last 7 x 24 hours.
- **p95**: the nearest-rank 95th percentile (the smallest value with at least 95 % of the values at or below it).

The figures behind ``/metrics`` (:func:`read_metrics_snapshot`) are aggregated in SQL instead, so no scrape reads
the jobs row by row and every process that shares the store shows the same figures, unchanged across a restart: a
histogram's bucket counts are ``SUM(CASE WHEN seconds <= bound THEN 1 ELSE 0 END)`` per bound, grouped by preset.
SQLite's date functions keep milliseconds, so its durations there are rounded to the millisecond.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Any, Final, TypeVarTuple

import numpy as np
from sqlalchemy import ColumnElement, Float, Select, case, cast, extract, func, literal, select
from sqlalchemy.ext.asyncio import AsyncSession

from config.units import BYTES_PER_GB, SECONDS_PER_DAY
from jobs.control import is_paused
from jobs.listings import (
    NO_PRESET,
)
from jobs.models import TERMINAL_STATUSES, Job, JobStatus, Worker, WorkerState

WORKER_STALE_AFTER_SECONDS = 120.0  # a worker without a heartbeat for this long is shown as stale
WEEK = timedelta(days=7)
P95 = 0.95
_Ts = TypeVarTuple("_Ts")
NEAREST_RANK: Final = "inverted_cdf"  # numpy's name for the nearest-rank percentile
UNKNOWN_FAILURE = "unknown"  # label for failed jobs without an error message


@dataclass(frozen=True, kw_only=True)
class Durations:
    """Count, mean and p95 of a set of durations in seconds (mean and p95 are None when count is 0)."""

    count: int
    mean_seconds: float | None
    p95_seconds: float | None


@dataclass(frozen=True, kw_only=True)
class PresetTimings:
    """Wait and generation times of one preset (``NO_PRESET`` for fully explicit parameters)."""

    preset: str
    wait: Durations
    generation: Durations


@dataclass(frozen=True, kw_only=True)
class PeriodStats:
    """What happened in ``[since, until)``."""

    since: datetime
    until: datetime
    by_state: dict[JobStatus, int]  # jobs created in the period, by their current state (every state present)
    gpu_seconds: float  # measured GPU time of jobs that finished in the period
    timings: list[PresetTimings]  # sorted by preset name
    failures: list[tuple[str, int]]  # (error, count) of jobs that failed in the period, most frequent first

    @property
    def created(self) -> int:
        """Jobs created in the period."""
        return sum(self.by_state.values())


@dataclass(frozen=True)
class ModelDownload:
    """A live worker's download of a model's files (its first load of that model)."""

    model: str  # the model key
    done_bytes: int
    total_bytes: int

    @property
    def fraction(self) -> float:
        return min(1.0, self.done_bytes / self.total_bytes) if self.total_bytes > 0 else 0.0

    def text(self) -> str:
        """``1.2 of 5.1 GB (24 %)``."""
        return (
            f"{self.done_bytes / BYTES_PER_GB:.1f} of {self.total_bytes / BYTES_PER_GB:.1f} GB "
            f"({self.fraction * 100:.0f} %)"
        )


@dataclass(frozen=True, kw_only=True)
class WorkerInfo:
    """One row of the worker registry, with whether its heartbeat is stale."""

    worker_id: str
    host: str
    pid: int
    state: WorkerState
    gpu_name: str | None
    gpu_memory_bytes: int | None
    restarts: int
    current_job_id: int | None
    jobs_done: int
    started_at: datetime
    last_heartbeat_at: datetime
    stale: bool
    failure_reason: str | None = None  # why its last start failed (one line); None once it is idle
    unavailable_since: datetime | None = None  # its supervisor gave up retrying fast at this time
    download: ModelDownload | None = None  # the model download it has under way
    loadable_models: tuple[str, ...] = ()  # the model keys it may load
    loaded_model: str | None = None  # the one it holds now
    switches: int = 0  # model switches so far


@dataclass(frozen=True, kw_only=True)
class AdminStats:
    """Everything ``/admin stats`` shows that lives in the database."""

    now: datetime
    today: PeriodStats
    week: PeriodStats
    workers: list[WorkerInfo]
    paused: bool


def nearest_rank(values: Sequence[float], fraction: float) -> float:
    """The nearest-rank percentile of ``values`` (``fraction`` in (0, 1]): numpy's ``inverted_cdf`` quantile.

    Raises
    ------
    ValueError
        ``values`` is empty or ``fraction`` is outside (0, 1].
    """
    if len(values) == 0:
        raise ValueError("nearest_rank: values is empty")
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"nearest_rank: fraction must be in (0, 1], got {fraction}")
    return float(np.quantile(np.asarray(values, dtype=np.float64), fraction, method=NEAREST_RANK))


def durations(values: Iterable[float]) -> Durations:
    """Count, mean and nearest-rank p95 of ``values`` (seconds)."""
    array = np.fromiter(values, dtype=np.float64)
    if array.size == 0:
        return Durations(count=0, mean_seconds=None, p95_seconds=None)
    return Durations(
        count=int(array.size),
        mean_seconds=float(array.mean()),
        p95_seconds=float(np.quantile(array, P95, method=NEAREST_RANK)),
    )


def _aware(value: datetime, name: str) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime, got {value!r}")
    return value.astimezone(UTC)


def _in_guild(query: Select[*_Ts], guild_id: int | None) -> Select[*_Ts]:
    return query if guild_id is None else query.where(Job.guild_id == guild_id)


async def period_stats(
    session: AsyncSession, *, since: datetime, until: datetime, guild_id: int | None = None
) -> PeriodStats:
    """Job counts, GPU time, per-preset wait and generation times and failures in ``[since, until)``.

    ``guild_id`` limits every figure to one server's jobs; ``None`` means all of them.

    Raises
    ------
    ValueError
        A naive datetime, or ``since`` after ``until``.
    """
    since, until = _aware(since, "since"), _aware(until, "until")
    if since > until:
        raise ValueError(f"period_stats: since {since.isoformat()} is after until {until.isoformat()}")

    created = (Job.created_at >= since) & (Job.created_at < until)
    finished = (Job.finished_at >= since) & (Job.finished_at < until)
    started = (Job.started_at >= since) & (Job.started_at < until)

    by_state = {status: 0 for status in JobStatus}
    for status, count in await session.execute(
        _in_guild(select(Job.status, func.count()).where(created), guild_id).group_by(Job.status)
    ):
        by_state[status] = int(count)

    gpu_seconds = await session.scalar(
        _in_guild(select(func.coalesce(func.sum(Job.gpu_seconds), 0.0)).where(finished), guild_id)
    )

    waits: dict[str, list[float]] = {}
    for preset, created_at, started_at in await session.execute(
        _in_guild(select(Job.preset, Job.created_at, Job.started_at).where(started), guild_id)
    ):
        assert started_at is not None  # the query keeps jobs that started
        waits.setdefault(preset or NO_PRESET, []).append(max(0.0, (started_at - created_at).total_seconds()))

    generations: dict[str, list[float]] = {}
    for preset, started_at, finished_at in await session.execute(
        _in_guild(
            select(Job.preset, Job.started_at, Job.finished_at).where(
                finished, Job.status == JobStatus.SUCCEEDED, Job.started_at.is_not(None)
            ),
            guild_id,
        )
    ):
        assert started_at is not None and finished_at is not None  # the query keeps jobs that finished
        generations.setdefault(preset or NO_PRESET, []).append(max(0.0, (finished_at - started_at).total_seconds()))

    timings = [
        PresetTimings(preset=name, wait=durations(waits.get(name, ())), generation=durations(generations.get(name, ())))
        for name in sorted(set(waits) | set(generations))
    ]

    failure_counts: Counter[str] = Counter()
    for error, count in await session.execute(
        _in_guild(select(Job.error, func.count()).where(finished, Job.status == JobStatus.FAILED), guild_id).group_by(
            Job.error
        )
    ):
        failure_counts[(error or "").strip() or UNKNOWN_FAILURE] += int(count)
    failures = sorted(failure_counts.items(), key=lambda item: (-item[1], item[0]))

    return PeriodStats(
        since=since,
        until=until,
        by_state=by_state,
        gpu_seconds=float(gpu_seconds or 0.0),
        timings=timings,
        failures=failures,
    )


async def worker_infos(
    session: AsyncSession, *, now: datetime, stale_after_seconds: float = WORKER_STALE_AFTER_SECONDS
) -> list[WorkerInfo]:
    """The worker registry, most recent heartbeat first; stopped workers are left out."""
    now = _aware(now, "now")
    if stale_after_seconds <= 0:
        raise ValueError(f"worker_infos: stale_after_seconds must be positive, got {stale_after_seconds}")
    rows = await session.scalars(
        select(Worker).where(Worker.state != WorkerState.STOPPED).order_by(Worker.last_heartbeat_at.desc())
    )
    return [
        WorkerInfo(
            worker_id=worker.id,
            host=worker.host,
            pid=worker.pid,
            state=worker.state,
            gpu_name=worker.gpu_name,
            gpu_memory_bytes=worker.gpu_memory_bytes,
            restarts=worker.restarts,
            current_job_id=worker.current_job_id,
            jobs_done=worker.jobs_done,
            started_at=worker.started_at,
            last_heartbeat_at=worker.last_heartbeat_at,
            stale=(now - worker.last_heartbeat_at).total_seconds() > stale_after_seconds,
            failure_reason=worker.failure_reason,
            unavailable_since=worker.unavailable_since,
            download=(
                ModelDownload(worker.download_model, worker.download_done_bytes or 0, worker.download_total_bytes or 0)
                if worker.download_model
                else None
            ),
            loadable_models=tuple(worker.loadable_models or ()),
            loaded_model=worker.loaded_model,
            switches=worker.switches or 0,
        )
        for worker in rows
    ]


def start_of_day(now: datetime) -> datetime:
    """00:00 UTC of ``now``'s day."""
    now = _aware(now, "now")
    return now.replace(hour=0, minute=0, second=0, microsecond=0)


async def admin_stats(session: AsyncSession, *, now: datetime | None = None, guild_id: int | None = None) -> AdminStats:
    """Today's and the last 7 days' :class:`PeriodStats`, the workers and the pause switch.

    The period ends just after ``now`` so that a job finished at ``now`` counts.
    """
    now = _aware(now, "now") if now is not None else datetime.now(UTC)
    until = now + timedelta(microseconds=1)
    return AdminStats(
        now=now,
        today=await period_stats(session, since=start_of_day(now), until=until, guild_id=guild_id),
        week=await period_stats(session, since=now - WEEK, until=until, guild_id=guild_id),
        workers=await worker_infos(session, now=now),
        paused=await is_paused(session),
    )


# -------------------------------------------------------------------------------------------------- audit log


DURATION_BUCKETS_SECONDS = (1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)
"""Upper bounds (seconds) of the wait and generation-time histogram buckets; ``+Inf`` is the count."""


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
    model_switches: int = 0  # model switches (unload one, load another), summed over the worker registry
    model_switch_seconds: float = 0.0  # the seconds they took, summed


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
        count, total, *cumulative = row[offset : offset + width]
        if int(count or 0) == 0:
            continue
        result[str(row[0])] = Histogram(
            bounds=bounds,
            cumulative=tuple(int(c or 0) for c in cumulative),
            count=int(count),
            sum_seconds=float(total or 0.0),
        )
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
    if not bounds or any(b <= a for a, b in pairwise(bounds)):
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
    rows = (
        await session.execute(
            select(timed.c.preset, *_bucket_columns(timed.c.wait, bounds), *_bucket_columns(timed.c.generation, bounds))
            .group_by(timed.c.preset)
            .order_by(timed.c.preset)
        )
    ).all()

    worker_counts = dict(
        (await session.execute(select(Worker.state, func.count(Worker.id)).group_by(Worker.state))).all()
    )
    totals = (
        await session.execute(
            select(
                func.coalesce(func.sum(Worker.restarts), 0),
                func.coalesce(func.sum(Worker.switches), 0),
                func.coalesce(func.sum(Worker.switch_seconds), 0.0),
            )
        )
    ).one()
    restarts = int(totals[0])
    return MetricsSnapshot(
        by_state=by_state,
        gpu_seconds=gpu_seconds,
        waits=_histograms(rows, 1, bounds),
        generations=_histograms(rows, 1 + 2 + len(bounds), bounds),
        workers={state: int(worker_counts.get(state, 0)) for state in WorkerState},
        restarts=restarts,
        model_switches=int(totals[1]),
        model_switch_seconds=float(totals[2]),
    )
