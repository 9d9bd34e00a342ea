"""How fast the job store takes and gives back MP4s: ``python -m bench.blobs [--size-mib 2] [--count 40]``.

Each insert is what a worker's finish does (``finish_job``: the fenced UPDATE, the ``job_videos`` row, the ledger
rows, one transaction); each read is what delivery does (``DATABASE_BLOBS.read_video`` in a read transaction). Runs
on a fresh migrated SQLite file and, when ``--pg`` names a server, on a fresh PostgreSQL database there, side by
side, and prints one line per back end: transactions per second and MiB/s for each direction. docs/storage.md
turns these into how many GPUs one database carries.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench.scratch import IMAGE, bench_request, scratch_database
from jobs.admission import enqueue_job
from jobs.blobs import DATABASE_BLOBS
from jobs.db import begin_read_only, make_engine, make_sessionmaker, migrate
from jobs.quota import QuotaPolicy
from jobs.transitions import claim_next_job, finish_job

MIB = 1024 * 1024
DEFAULT_SIZE_MIB = 2.0  # a standard 512p/16-frame job's MP4 is about 1-2 MiB; Discord's default cap is 10 MiB
DEFAULT_COUNT = 40
POLICY = QuotaPolicy(daily_gpu_seconds=1e12, max_pending=1_000_000)
WORKER = "bench-blobs"


@dataclass(frozen=True)
class BlobRates:
    backend: str
    size_bytes: int
    count: int
    insert_s: float
    read_s: float

    def line(self) -> str:
        mib = self.size_bytes * self.count / MIB
        return (
            f"{self.backend:10s} {self.size_bytes / MIB:5.1f} MiB x {self.count}: "
            f"finish+store {self.count / self.insert_s:7.1f}/s ({mib / self.insert_s:7.1f} MiB/s), "
            f"read {self.count / self.read_s:7.1f}/s ({mib / self.read_s:7.1f} MiB/s)"
        )


async def measure(url: str, backend: str, size: int, count: int) -> BlobRates:
    await migrate(url)
    engine = make_engine(url)
    sessions = make_sessionmaker(engine)
    try:
        ids = []
        for n in range(count):  # queued and claimed beforehand: only the finish is timed
            async with sessions() as s, s.begin():
                await enqueue_job(s, bench_request(1, n, upload_limit_bytes=100 * MIB), POLICY, image=IMAGE)
            async with sessions() as s, s.begin():
                job = await claim_next_job(s, WORKER, lease_seconds=600)
                assert job is not None
                ids.append((job.id, job.attempt))
        videos = [os.urandom(size) for _ in range(min(count, 4))]  # incompressible, like H.264
        started = time.perf_counter()
        for n, (job_id, attempt) in enumerate(ids):
            async with sessions() as s, s.begin():
                assert await finish_job(
                    s, job_id, attempt, worker_id=WORKER, video=videos[n % len(videos)], gpu_seconds=1.0
                )
        insert_s = time.perf_counter() - started
        started = time.perf_counter()
        for job_id, _ in ids:
            async with sessions() as s:
                await begin_read_only(s)
                data = await DATABASE_BLOBS.read_video(s, job_id)
                assert data is not None and len(data) == size
        read_s = time.perf_counter() - started
    finally:
        await engine.dispose()
    return BlobRates(backend, size, count, insert_s, read_s)


async def run(size: int, count: int, pg: str | None) -> list[BlobRates]:
    results = []
    with tempfile.TemporaryDirectory() as folder:
        results.append(await measure(f"sqlite+aiosqlite:///{Path(folder) / 'blobs.sqlite3'}", "sqlite", size, count))
    if pg:
        async with scratch_database(pg, "i2v_bench_blobs") as url:
            results.append(await measure(url, "postgresql", size, count))
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.blobs", description=__doc__.split("\n")[0])
    parser.add_argument("--size-mib", type=float, default=DEFAULT_SIZE_MIB, help="MP4 size (default %(default)s)")
    parser.add_argument("--count", type=int, default=DEFAULT_COUNT, help="videos per back end (default %(default)s)")
    parser.add_argument(
        "--pg",
        default=os.environ.get("PG_TEST_URL"),
        help="PostgreSQL server URL (default: $PG_TEST_URL); a fresh database is made and dropped",
    )
    args = parser.parse_args(argv)
    if args.size_mib <= 0 or args.count <= 0:
        parser.error("--size-mib and --count must be positive")
    for rates in asyncio.run(run(int(args.size_mib * MIB), args.count, args.pg)):
        print(rates.line())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
