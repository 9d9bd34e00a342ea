"""Job-store throughput: enqueue + claim + 50 progress writes + finish, as jobs per second.

Each job is 53 separate transactions, exactly as the bot and a worker issue them (enqueue with quota
reservation; claim; 50 fenced progress/heartbeat writes through a ``ProgressWriter``; finish with settlement).
``--workers`` runs that many worker loops at once, each on its own engine, in this one process (one event loop, one
core); ``--processes`` runs that many worker loops in separate processes, as the product scales out (one worker
process per GPU), and reports the wall time from the common start to the last finish. SQLite: still one
writer at a time.

    .venv/bin/python -m bench.store                       # both back ends, 1 and 4 workers
    .venv/bin/python -m bench.store --backend sqlite --jobs 500 --workers 1
    .venv/bin/python -m bench.store --workers 1 --processes 2 4
    .venv/bin/python -m bench.store --floor               # each beside the bare driver's rate (bench/driver_floor.py)

PostgreSQL: a scratch database is created on the server of PG_TEST_URL (default
postgresql+asyncpg://postgres@127.0.0.1:5432/test) and dropped afterwards. SQLite: a temporary file.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import tempfile
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import driver_floor
from bench.scratch import DEFAULT_PG_URL, IMAGE, bench_request, scratch_database
from jobs.admission import enqueue_job
from jobs.db import make_engine, make_sessionmaker, migrate
from jobs.progress import ProgressWriter
from jobs.quota import QuotaPolicy
from jobs.transitions import claim_next_job, finish_job

PROGRESS_WRITES = 50
LEASE_S = 120.0
DEFAULT_JOBS = 400
POLICY = QuotaPolicy(daily_gpu_seconds=1e12, max_pending=1_000_000)
VIDEO = b"\0" * 1024  # bytes stored as each job's MP4


PROCESS_START_TIMEOUT_S = 120.0
"""How long worker processes may take to start (import SQLAlchemy, ...) before the run is abandoned."""


@dataclass(frozen=True)
class Result:
    backend: str
    workers: int
    jobs: int
    seconds: float
    cpu_seconds: float
    """CPU time of the client processes (event loop + driver threads) over the run: the client-side cost."""
    progress_writes: int = PROGRESS_WRITES
    processes: int = 1
    floor: bool = False
    """Measured with the bare driver (``bench.driver_floor``) instead of the store."""

    @property
    def jobs_per_second(self) -> float:
        return self.jobs / self.seconds

    @property
    def cpu_ms_per_job(self) -> float:
        return 1000.0 * self.cpu_seconds / self.jobs

    @property
    def transactions_per_second(self) -> float:
        return self.jobs * (self.progress_writes + 3) / self.seconds


async def _worker_loop(url: str, worker: int, jobs: int, writes: int = PROGRESS_WRITES) -> None:
    engine = make_engine(url)
    sessions = make_sessionmaker(engine)
    progress = ProgressWriter(engine)  # as the worker writes progress
    try:
        for n in range(jobs):
            async with sessions() as s, s.begin():
                await enqueue_job(s, bench_request(1000 + worker, n, steps=max(writes, 1)), POLICY, image=IMAGE)
            async with sessions() as s, s.begin():
                job = await claim_next_job(s, f"bench-{worker}", lease_seconds=LEASE_S)
            if job is None:
                raise RuntimeError("claim returned None right after an enqueue")
            for step in range(1, writes + 1):
                ack = await progress.write(
                    job.id,
                    job.attempt,
                    worker_id=f"bench-{worker}",
                    step=step,
                    total=writes,
                    phase="denoising",
                    lease_seconds=LEASE_S,
                )
                if not ack.ok:
                    raise RuntimeError(f"progress of job {job.id} was fenced out")
            async with sessions() as s, s.begin():
                if not await finish_job(
                    s, job.id, job.attempt, worker_id=f"bench-{worker}", video=VIDEO, gpu_seconds=1.0
                ):
                    raise RuntimeError(f"finish of job {job.id} was fenced out")
    finally:
        await progress.close()
        await engine.dispose()


def _loop(floor: bool) -> Callable[[str, int, int, int], Coroutine[Any, Any, None]]:
    """One worker's loop: the store's, or the bare driver's (``floor``)."""
    return driver_floor.worker_loop if floor else _worker_loop


def _split(jobs: int, parts: int) -> list[int]:
    return [jobs // parts + (1 if i < jobs % parts else 0) for i in range(parts)]


async def run(
    url: str, backend: str, jobs: int, workers: int, writes: int = PROGRESS_WRITES, floor: bool = False
) -> Result:
    """Time ``jobs`` full job lifecycles (``writes`` progress writes each) over ``workers`` concurrent loops
    in this process on a migrated ``url`` (``floor``: with the bare driver, on ``driver_floor.prepare``d
    ``url``)."""
    loop = _loop(floor)
    start, cpu_start = time.perf_counter(), time.process_time()
    await asyncio.gather(*(loop(url, i, n, writes) for i, n in enumerate(_split(jobs, workers))))
    return Result(
        backend, workers, jobs, time.perf_counter() - start, time.process_time() - cpu_start, writes, floor=floor
    )


def _process_main(url: str, worker: int, jobs: int, writes: int, floor: bool, barrier: Any, results: Any) -> None:
    """One worker process: wait for the others to be ready, run its loop, report (start, end, CPU s)."""
    barrier.wait(PROCESS_START_TIMEOUT_S)
    start, cpu_start = time.time(), time.process_time()
    asyncio.run(_loop(floor)(url, worker, jobs, writes))
    results.put((start, time.time(), time.process_time() - cpu_start))


def run_processes(
    url: str, backend: str, jobs: int, processes: int, writes: int = PROGRESS_WRITES, floor: bool = False
) -> Result:
    """Like ``run`` with one worker loop in each of ``processes`` separate processes (started before the
    clock starts; they begin together). A process that fails makes this raise."""
    if processes < 1:
        raise ValueError(f"processes must be >= 1, got {processes!r}")
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(processes), ctx.Queue()
    procs = [
        ctx.Process(target=_process_main, args=(url, 10 + i, n, writes, floor, barrier, results), daemon=True)
        for i, n in enumerate(_split(jobs, processes))
    ]
    for p in procs:
        p.start()
    try:
        for p in procs:
            p.join()
        failed = [p.exitcode for p in procs if p.exitcode != 0]
        if failed:
            raise RuntimeError(f"{len(failed)} bench worker process(es) failed (exit codes {failed})")
        reports = [results.get(timeout=10) for _ in procs]
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
    seconds = max(end for _, end, _ in reports) - min(start for start, _, _ in reports)
    return Result(backend, 1, jobs, seconds, sum(cpu for _, _, cpu in reports), writes, processes, floor)


async def _measure(url: str, backend: str, jobs: int, workers: int, writes: int, processes: int, floor: bool) -> Result:
    if floor:
        await driver_floor.prepare(url)
    if processes == 1:
        return await run(url, backend, jobs, workers, writes, floor)
    return await asyncio.to_thread(run_processes, url, backend, jobs, processes, writes, floor)


async def _with_sqlite(jobs: int, workers: int, writes: int, processes: int = 1, floor: bool = False) -> Result:
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite+aiosqlite:///{Path(tmp) / 'bench.sqlite3'}"
        await migrate(url)
        return await _measure(url, "sqlite", jobs, workers, writes, processes, floor)


async def _with_postgres(jobs: int, workers: int, writes: int, processes: int = 1, floor: bool = False) -> Result:
    async with scratch_database(os.environ.get("PG_TEST_URL", DEFAULT_PG_URL)) as url:
        return await _measure(url, "postgresql", jobs, workers, writes, processes, floor)


async def main(argv: list[str] | None = None) -> list[Result]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--jobs", type=int, default=DEFAULT_JOBS, help="jobs per measurement")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 4], help="concurrent worker loops in one process")
    parser.add_argument(
        "--processes", type=int, nargs="*", default=[], help="also: this many worker processes, one loop each"
    )
    parser.add_argument(
        "--progress-writes", type=int, default=PROGRESS_WRITES, help="progress transactions per job (default 50)"
    )
    parser.add_argument(
        "--floor",
        action="store_true",
        help="also run each measurement with the bare driver (bench/driver_floor.py) and print store/floor",
    )
    args = parser.parse_args(argv)
    if args.jobs < 1 or any(w < 1 for w in args.workers + args.processes) or args.progress_writes < 0:
        parser.error("--jobs, --workers and --processes must be >= 1, --progress-writes >= 0")
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    results = []
    runs = [(w, 1) for w in args.workers] + [(1, p) for p in args.processes]
    for backend in backends:
        runner = _with_sqlite if backend == "sqlite" else _with_postgres
        for workers, processes in runs:
            store = await runner(args.jobs, workers, args.progress_writes, processes)
            results.append(store)
            _print(store)
            if args.floor:
                floor = await runner(args.jobs, workers, args.progress_writes, processes, True)
                results.append(floor)
                _print(floor, f"; store/floor {store.jobs_per_second / floor.jobs_per_second:.2f}")
    return results


def _print(result: Result, suffix: str = "") -> None:
    print(
        f"{result.backend:10s} {'floor' if result.floor else 'store'} workers={result.workers} "
        f"processes={result.processes} jobs={result.jobs} progress_writes={result.progress_writes} "
        f"time={result.seconds:.2f}s -> {result.jobs_per_second:.0f} jobs/s "
        f"({result.transactions_per_second:.0f} transactions/s); client CPU {result.cpu_ms_per_job:.1f} ms/job; "
        f"load average {os.getloadavg()[0]:.1f}{suffix}",
        flush=True,
    )


if __name__ == "__main__":
    asyncio.run(main())
