"""Helpers for the worker tests: enqueue real jobs, start real worker processes, read the database back.

Everything here is real: the jobs go through ``jobs.admission.enqueue_job`` (quota reserved), the workers are
``python -m generator.worker`` processes on the tiny model, and the checks read the same database file.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from PIL import Image
from sqlalchemy import select

from generator.model_spaces import SPACES
from generator.params import DEFAULT_NEGATIVE_PROMPT, GenerationParams, target_size
from jobs.admission import NewJob, enqueue_job
from jobs.blobs import DATABASE_BLOBS
from jobs.db import begin_read_only, make_engine, make_sessionmaker
from jobs.models import Job, JobSource, LedgerKind, QuotaLedger, Worker
from jobs.quota import QuotaPolicy

T = TypeVar("T")

REPO_ROOT = Path(__file__).resolve().parents[2]
INPUT_SIZE_PX = (320, 256)  # width, height of the test input image: 256p keeps it 320x256
RESOLUTION = "256p"
FRAMES = 8
FPS = 8
STEPS = 10
GUIDANCE = 9.0
UPLOAD_LIMIT_BYTES = 10 * 1024 * 1024
USER_ID = 4242
PROMPT = "a cat turning its head slowly"
PROCESS_EXIT_TIMEOUT_S = 60.0  # how long a test waits for a worker process to exit
PROGRESS_LINE = re.compile(r"progress job=(\d+) attempt=(\d+) step=(\d+)/(\d+) phase=(\w+)")

# Fast timings for tests (seconds); faults are added per test.
FAST_ENV = {
    "I2V_MODEL": "tiny",
    "I2V_POLL_INTERVAL_S": "0.1",
    "I2V_RESCUE_INTERVAL_S": "0.5",
    "I2V_HEARTBEAT_INTERVAL_S": "0.25",
    "I2V_LEASE_SECONDS": "20",
    "I2V_GRACE_SECONDS": "30",
    "LOG_LEVEL": "INFO",
    # One torch thread per worker: the tiny model's small ops run 2-3x faster than with two threads on a shared
    # 2-core machine, and two workers side by side do not oversubscribe it.
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
}


def make_input(directory: Path, *, seed: int = 0) -> tuple[Path, str]:
    """Write a small PNG (a colour gradient with a square) and return its path and sha256."""
    directory.mkdir(parents=True, exist_ok=True)
    width, height = INPUT_SIZE_PX
    y, x = np.mgrid[0:height, 0:width]
    channels = [(x + seed) % 256, (y * 2) % 256, (x + y) % 256]
    image = Image.fromarray(np.dstack(channels).astype(np.uint8), "RGB")
    image.paste((250, 250, 250), (100, 80, 180, 160))
    path = directory / f"input_{seed}.png"
    image.save(path, format="PNG")
    return path, hashlib.sha256(path.read_bytes()).hexdigest()


async def enqueue_jobs(
    url: str,
    count: int,
    input_image: tuple[Path, str],
    *,
    user_id: int = USER_ID,
    steps: int = STEPS,
    frames: int = FRAMES,
    fps: int = FPS,
    model: str = "i2vgenxl",
    size: tuple[int, int] | None = None,
) -> list[int]:
    """Enqueue ``count`` jobs (one transaction each, quota reserved, the image stored with the job) and return
    their ids in order. Another ``model`` takes its own quick preset's resolution and guidance; ``size`` overrides
    the output size (tiny models run faster small)."""
    path, sha = input_image
    image = path.read_bytes()
    resolution, guidance = RESOLUTION, GUIDANCE
    if model != "i2vgenxl":
        quick = SPACES[model].presets["quick"]
        resolution, guidance = quick.resolution, quick.guidance
    width, height = size or target_size(resolution, *INPUT_SIZE_PX, model)
    policy = QuotaPolicy(daily_gpu_seconds=1_000_000.0, max_pending=1000)
    engine = make_engine(url)
    ids: list[int] = []
    try:
        sessions = make_sessionmaker(engine)
        for index in range(count):
            params = GenerationParams(
                prompt=PROMPT,
                negative_prompt=DEFAULT_NEGATIVE_PROMPT,
                resolution=resolution,
                frames=frames,
                fps=fps,
                steps=steps,
                guidance=guidance,
                seed=1000 + index,
                model=model,
            )
            new = NewJob(
                user_id=user_id,
                channel_id=1,
                guild_id=None,
                source=JobSource.SLASH,
                params=params,
                width=width,
                height=height,
                input_sha256=sha,
                upload_limit_bytes=UPLOAD_LIMIT_BYTES,
            )
            async with sessions() as session, session.begin():
                ids.append((await enqueue_job(session, new, policy, image=image)).id)
    finally:
        await engine.dispose()
    return ids


class Db:
    """A small read/write handle on the test database (its own engine)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        self.sessions = make_sessionmaker(self.engine)

    async def close(self) -> None:
        await self.engine.dispose()

    async def jobs(self, ids: Iterable[int]) -> dict[int, Job]:
        async with self.sessions() as session:
            await begin_read_only(session)
            rows = (
                await session.scalars(
                    select(Job).where(Job.id.in_(list(ids))).execution_options(populate_existing=True)
                )
            ).all()
        return {job.id: job for job in rows}

    async def job(self, job_id: int) -> Job:
        return (await self.jobs([job_id]))[job_id]

    async def ledger(self, job_id: int) -> list[tuple[LedgerKind, float]]:
        async with self.sessions() as session:
            await begin_read_only(session)
            rows = (
                await session.execute(
                    select(QuotaLedger.kind, QuotaLedger.amount)
                    .where(QuotaLedger.job_id == job_id)
                    .order_by(QuotaLedger.id)
                )
            ).all()
        return [(row.kind, row.amount) for row in rows]

    async def video(self, job_id: int) -> bytes | None:
        """The MP4 the store keeps for ``job_id``."""
        async with self.sessions() as session:
            await begin_read_only(session)
            return await DATABASE_BLOBS.read_video(session, job_id)

    async def video_file(self, job_id: int, directory: Path) -> Path:
        """The stored MP4 of ``job_id`` written to ``directory`` (for probing); fails if none is stored."""
        data = await self.video(job_id)
        assert data, f"no video stored for job {job_id}"
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"stored_{job_id}.mp4"
        path.write_bytes(data)
        return path

    async def worker(self, worker_id: str) -> Worker | None:
        async with self.sessions() as session:
            await begin_read_only(session)
            return await session.get(Worker, worker_id, populate_existing=True)

    async def run(self, fn: Callable[[Any], Awaitable[T]]) -> T:
        """Run ``fn(session)`` in one transaction."""
        async with self.sessions() as session, session.begin():
            return await fn(session)


async def wait_until(check: Callable[[], Awaitable[T]], *, timeout: float, what: str, interval: float = 0.05) -> T:
    """Poll ``check()`` until it returns something truthy; fail the test naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        await asyncio.sleep(interval)


def worker_env(url: str, output_dir: Path, **extra: str | float | int | Path) -> dict[str, str]:
    """The environment of a test worker: this interpreter's, no inherited fault hooks, fast timings, ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("I2V_")}
    env.update(FAST_ENV)
    env.update({"DATABASE_URL": url, "OUTPUT_DIR": str(output_dir), "PYTHONUNBUFFERED": "1"})
    env.update({key: str(value) for key, value in extra.items()})
    return env


@dataclass
class WorkerProc:
    """A ``python -m generator.worker`` child with its output in a log file."""

    popen: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def signal(self, signum: int) -> None:
        self.popen.send_signal(signum)

    async def wait(self, timeout: float = PROCESS_EXIT_TIMEOUT_S) -> int:
        deadline = time.monotonic() + timeout
        while self.popen.poll() is None:
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"worker pid {self.pid} did not exit within {timeout:.0f} s; log:\n{self.log()[-3000:]}"
                )
            await asyncio.sleep(0.05)
        return self.popen.returncode

    def progress(self, job_id: int, attempt: int | None = None) -> list[tuple[int, int, str]]:
        """(step, total, phase) of every progress write this worker logged for ``job_id``, in order."""
        out = []
        for match in PROGRESS_LINE.finditer(self.log()):
            if int(match[1]) == job_id and (attempt is None or int(match[2]) == attempt):
                out.append((int(match[3]), int(match[4]), match[5]))
        return out


class WorkerPool:
    """Starts worker processes for one test and makes sure none outlives it."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.procs: list[WorkerProc] = []

    def start(
        self, env: dict[str, str], *args: str, name: str = "worker", module: str = "generator.worker"
    ) -> WorkerProc:
        """Start ``python -m <module> <args>`` (the worker, or ``generator.supervisor``) logging to a file."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"{name}-{len(self.procs)}.log"
        with open(log_path, "wb") as log_file:
            popen = subprocess.Popen(
                [sys.executable, "-m", module, *args],
                cwd=REPO_ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        proc = WorkerProc(popen, log_path)
        self.procs.append(proc)
        return proc

    def cleanup(self) -> list[int]:
        """Kill whatever is still running; returns the pids that were (a test then fails on them)."""
        leftovers = []
        for proc in self.procs:
            if proc.popen.poll() is None:
                leftovers.append(proc.pid)
                proc.popen.send_signal(signal.SIGKILL)
                proc.popen.wait(10)
        return leftovers


def pid_alive(pid: int) -> bool:
    """True if a process with this pid exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def files_in(directory: Path) -> list[Path]:
    """Every file a worker left in its ``OUTPUT_DIR`` (its scratch folder: it should leave none, the MP4 goes into
    the store)."""
    return sorted(p for p in directory.rglob("*") if p.is_file()) if directory.exists() else []
