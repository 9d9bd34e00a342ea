"""The GPU worker process: ``python -m generator.worker [--drain] [--once]``.

One process per GPU (design.md section 4). It talks to the job store itself (the database is the IPC channel):

1. migrates the database, registers itself in the ``workers`` table (state ``loading``) and keeps a heartbeat there,
   also while the model loads;
2. loads the pipeline once (``I2V_MODEL``; ``tiny`` is the offline test model) and keeps it warm;
3. loops: now and then requeue expired leases (``rescue_expired``) -> claim the next job -> read its stored input
   image -> ``load_image`` + ``fit_image`` -> ``VideoGenerator.generate`` -> ``encode_to_budget`` to the job's upload
   limit -> ``finish_job`` with the output path, size and GPU-seconds.

Progress. The step callback runs on the generation thread and only records the step in memory (no I/O on the
denoising path). A watcher coroutine on the event loop writes it to the job at most once per
``I2V_PROGRESS_INTERVAL_S`` (each write renews the lease and is fenced by the attempt), renews the lease during long
phases without steps (VAE decode, encoding), and polls the job's cancel flag every ``CANCEL_POLL_INTERVAL_S``. When
the job was cancelled, or the write says the job is no longer ours, the generation stops at its next step.

Faults. ``GenerationOutOfMemory``: retried once with ``low_memory=True`` (the job's ``error_detail`` records it);
a second one fails the job with the generator's advice (lower resolution or frames) and the quota refunded; the
worker keeps serving. Any other CUDA error is sticky: the worker shortens its lease to now (so the next rescue
requeues the job, the attempt counted) and exits with ``EXIT_CUDA_ERROR``; the supervisor starts a new process. Any
other exception in a job fails that job with a clear message and the detail, and the worker keeps serving.

Shutdown. SIGTERM or SIGINT: stop claiming; the current job may finish if it can within ``I2V_GRACE_SECONDS``
(estimated from its step times), else it is stopped at the next step and given back with ``release_job``
(queued again, uncharged, no attempt burnt); then exit 0. A second signal ends the grace period at once.

Blocking work (model load, generation, image decode, encoding) runs on daemon threads so that a stop request never
waits for a thread the interpreter would otherwise join at exit. A generation that makes no step for
``I2V_STALL_SECONDS`` is taken as a hung GPU call: the worker exits with ``EXIT_STALLED`` (the lease brings the job
back), since such a call cannot be interrupted from Python.

GPU-seconds are the wall time spent inside ``VideoGenerator.generate`` for the job (both runs when it was retried in
low-memory mode); encoding runs on the CPU and is not counted.

Not done: batching several queued jobs of identical shape into one pipeline call (issue 4, item 4). It is off by
design until a GPU benchmark shows a gain; batching multiplies activation memory, and every job's progress, cancel
and fencing would have to stay separate. The claim loop takes one job at a time.

Settings come from the environment; see :class:`WorkerSettings`. Test-only fault hooks: :mod:`generator.faults`.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import gc
import logging
import math
import os
import signal
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from generator.faults import FaultPlan
from generator.heartbeat import HeartbeatThread

if TYPE_CHECKING:
    from PIL.Image import Image
    from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

    from generator.params import GenerationParams
    from generator.pipeline import VideoGenerator
    from jobs.progress import ProgressWriter

log = logging.getLogger("generator.worker")

T = TypeVar("T")

DEFAULT_MODEL = "ali-vilab/i2vgen-xl"
DEFAULT_OUTPUT_DIR = "outputs"
POLL_INTERVAL_S = 1.0  # seconds an idle worker waits between two claims
LEASE_S = 90.0  # seconds of lease granted by a claim and by every progress write
GRACE_S = 30.0  # seconds the current job may still run after SIGTERM before it is given back
HEARTBEAT_INTERVAL_S = 2.0  # seconds between two heartbeats written to the worker's row (from its own thread)
PROGRESS_INTERVAL_S = 1.0  # at most one progress write per this many seconds
CANCEL_POLL_INTERVAL_S = 0.25  # seconds between two reads of the running job's cancel flag
RESCUE_INTERVAL_S = 2.0  # seconds between two runs of the rescuer (dead workers, expired leases)
WORKER_DEAD_AFTER_S = 15.0  # seconds without a heartbeat after which a worker's running job is requeued
STALL_S = 900.0  # seconds without a new step or phase while generating: the GPU call hung, exit
DEFAULT_UPLOAD_LIMIT_BYTES = 10 * 1024 * 1024  # bytes: Discord's default attachment limit, if a job has none
LEASE_RENEW_FRACTION = 1 / 3  # renew the lease after this fraction of it even when nothing changed
LEASE_EXPIRE_NOW_S = 0.001  # seconds: the lease a worker gives itself before exiting on a sticky CUDA error
MAX_DETAIL_CHARS = 4000  # characters of traceback kept in a failed job's error_detail

EXIT_OK = 0
EXIT_CONFIG = 2  # a setting or fault variable is invalid
EXIT_CUDA_ERROR = 3  # a sticky (non-OOM) CUDA error: the process must be replaced
EXIT_STALLED = 4  # a generation made no progress for I2V_STALL_SECONDS
EXIT_MODEL_LOAD = 5  # the model could not be loaded

WORKER_STATE_LOADING = "loading"
WORKER_STATE_IDLE = "idle"
WORKER_STATE_BUSY = "busy"
WORKER_STATE_STOPPING = "stopping"
WORKER_STATE_STOPPED = "stopped"
WORKER_STATE_CRASHED = "crashed"

PHASE_PREPARING = "preparing"
PHASE_DENOISING = "denoising"
PHASE_DECODING = "decoding"
PHASE_ENCODING = "encoding"

STOP_CANCEL = "cancel"  # the user (or an admin) cancelled the running job
STOP_LOST = "lost"  # the job is no longer ours (lease expired and rescued, or finished elsewhere)
STOP_SHUTDOWN = "shutdown"  # the worker is stopping and the job would not finish within the grace period

MSG_IMAGE_UNREADABLE = "The image could not be used: {reason}"
MSG_INPUT_MISSING = "The stored input image for this job is missing, so it cannot be generated. Please submit it again."
MSG_TOO_LARGE = "The video could not be made small enough for this channel's upload limit. Try fewer frames or a lower resolution."
MSG_INTERNAL = "Something went wrong while making this video. The error was recorded for the admins; please try again."
NOTE_LOW_MEMORY = (
    "Ran out of GPU memory at step {step}/{total}; retried once in low-memory mode (VAE tiling, CPU offload)."
)


class SettingsError(ValueError):
    """A worker setting from the environment is invalid; the message names the variable and the value."""


def _env_float(env: Mapping[str, str], name: str, default: float, *, minimum: float = 0.0) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number of seconds, got {raw!r}") from None
    if not math.isfinite(value) or value < minimum:
        raise SettingsError(f"{name} must be a finite number >= {minimum}, got {raw!r}")
    return value


def _env_int(env: Mapping[str, str], name: str) -> int | None:
    raw = env.get(name, "").strip()
    if not raw:
        return None
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a whole number, got {raw!r}") from None
    if value < 0:
        raise SettingsError(f"{name} must be >= 0, got {raw!r}")
    return value


@dataclass(frozen=True)
class WorkerSettings:
    """Everything the worker reads from the environment.

    ``DATABASE_URL`` (default ``jobs.db.DEFAULT_DATABASE_URL``), ``I2V_MODEL`` (default ``ali-vilab/i2vgen-xl``;
    ``tiny`` for tests), ``I2V_DEVICE`` (default: CUDA when available), ``OUTPUT_DIR`` (default ``outputs``),
    ``WORKER_ID`` (default ``<host>-<pid>``), and the timings in seconds ``I2V_POLL_INTERVAL_S``,
    ``I2V_LEASE_SECONDS``, ``I2V_GRACE_SECONDS``, ``I2V_HEARTBEAT_INTERVAL_S``, ``I2V_PROGRESS_INTERVAL_S``,
    ``I2V_RESCUE_INTERVAL_S``, ``I2V_STALL_SECONDS``, ``WORKER_DEAD_AFTER`` (defaults: the module constants).
    ``OUTPUT_DIR`` is only a scratch folder for encoding: the MP4 goes into the store. Set by the supervisor:
    ``I2V_PARENT_PID`` (the worker stops itself when that process is gone).
    """

    database_url: str
    model: str = DEFAULT_MODEL
    device: str | None = None
    output_dir: Path = Path(DEFAULT_OUTPUT_DIR)
    worker_id: str = ""
    poll_interval_s: float = POLL_INTERVAL_S
    lease_s: float = LEASE_S
    grace_s: float = GRACE_S
    heartbeat_interval_s: float = HEARTBEAT_INTERVAL_S
    progress_interval_s: float = PROGRESS_INTERVAL_S
    rescue_interval_s: float = RESCUE_INTERVAL_S
    stall_s: float = STALL_S
    dead_after_s: float = WORKER_DEAD_AFTER_S
    parent_pid: int | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> WorkerSettings:
        """Read the settings; raises :class:`SettingsError` naming the first bad variable."""
        env = os.environ if env is None else env
        from jobs.db import DEFAULT_DATABASE_URL

        model = env.get("I2V_MODEL", "").strip() or DEFAULT_MODEL
        worker_id = env.get("WORKER_ID", "").strip() or f"{socket.gethostname()}-{os.getpid()}"
        if len(worker_id) > 200:
            raise SettingsError(f"WORKER_ID must be at most 200 characters, got {len(worker_id)}")
        lease_s = _env_float(env, "I2V_LEASE_SECONDS", LEASE_S, minimum=1.0)
        return cls(
            database_url=env.get("DATABASE_URL", "").strip() or DEFAULT_DATABASE_URL,
            model=model,
            device=env.get("I2V_DEVICE", "").strip() or None,
            output_dir=Path(env.get("OUTPUT_DIR", "").strip() or DEFAULT_OUTPUT_DIR),
            worker_id=worker_id,
            poll_interval_s=_env_float(env, "I2V_POLL_INTERVAL_S", POLL_INTERVAL_S, minimum=0.01),
            lease_s=lease_s,
            grace_s=_env_float(env, "I2V_GRACE_SECONDS", GRACE_S),
            heartbeat_interval_s=_env_float(env, "I2V_HEARTBEAT_INTERVAL_S", HEARTBEAT_INTERVAL_S, minimum=0.05),
            progress_interval_s=_env_float(env, "I2V_PROGRESS_INTERVAL_S", PROGRESS_INTERVAL_S),
            rescue_interval_s=_env_float(env, "I2V_RESCUE_INTERVAL_S", RESCUE_INTERVAL_S, minimum=0.05),
            stall_s=_env_float(env, "I2V_STALL_SECONDS", STALL_S, minimum=1.0),
            dead_after_s=_env_float(env, "WORKER_DEAD_AFTER", WORKER_DEAD_AFTER_S, minimum=0.1),
            parent_pid=_env_int(env, "I2V_PARENT_PID"),
        )


def run_in_daemon_thread(fn: Callable[[], T], *, name: str) -> asyncio.Future[T]:
    """Start ``fn()`` on a new daemon thread; the returned future settles with its result or its exception.

    Unlike ``asyncio.to_thread`` the thread is not joined at interpreter exit, so a worker told to stop during a
    long model load or a hung GPU call can still exit. Must be called from a running event loop.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(result: Any, error: BaseException | None) -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)

    def target() -> None:
        try:
            result = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the awaiting coroutine, never swallowed
            error: BaseException | None = exc
            result = None
        else:
            error = None
        try:
            loop.call_soon_threadsafe(settle, result, error)
        except RuntimeError:  # the loop closed while we ran: nobody is waiting any more
            pass

    threading.Thread(target=target, name=name, daemon=True).start()
    return future


def is_fatal_cuda_error(exc: BaseException) -> bool:
    """True for a CUDA error other than out-of-memory: such errors are sticky and the process must be replaced."""
    import torch

    if isinstance(exc, torch.cuda.OutOfMemoryError):
        return False
    accelerator_error = getattr(torch, "AcceleratorError", None)
    if accelerator_error is not None and isinstance(exc, accelerator_error):
        return True
    return isinstance(exc, RuntimeError) and "CUDA" in str(exc) and "out of memory" not in str(exc).lower()


def _detail(exc: BaseException) -> str:
    text = "".join(traceback.format_exception(exc))
    return text if len(text) <= MAX_DETAIL_CHARS else "..." + text[-MAX_DETAIL_CHARS:]


@dataclass(frozen=True)
class ClaimedJob:
    """The fields of a claimed job the worker needs, copied out of the claiming transaction."""

    id: int
    attempt: int
    input_sha256: str
    params: dict[str, Any]
    width: int | None
    height: int | None
    upload_limit_bytes: int

    @property
    def steps(self) -> int:
        return int(self.params["steps"])


class InputMissing(Exception):
    """The job's input image is not in the store (deleted or pruned)."""


class FatalCudaError(Exception):
    """A sticky CUDA error happened in a job; the process must exit (the job returns through its lease)."""


@dataclass
class JobRun:
    """What the generation thread and the event loop share about the running job (guarded by ``lock``)."""

    job: ClaimedJob
    faults: FaultPlan
    loop: asyncio.AbstractEventLoop
    changed: asyncio.Event
    lock: threading.Lock = field(default_factory=threading.Lock)
    step: int = 0
    total: int = 0
    phase: str = PHASE_PREPARING
    last_change: float = field(default_factory=time.monotonic)
    generating_since: float | None = None
    stop_reason: str | None = None
    stop_event: threading.Event = field(default_factory=threading.Event)
    gpu_seconds: float = 0.0
    note: str | None = None

    def _touch(self) -> None:
        self.last_change = time.monotonic()
        try:
            self.loop.call_soon_threadsafe(self.changed.set)
        except RuntimeError:
            pass

    def set_phase(self, phase: str) -> None:
        """Record a new phase (called from either thread)."""
        with self.lock:
            self.phase = phase
        self._touch()

    def on_step(self, step: int, total: int) -> None:
        """The generator's step callback (generation thread): record, wake the watcher, run the fault hooks."""
        with self.lock:
            self.step = step
            self.total = total
            self.phase = PHASE_DECODING if step >= total else PHASE_DENOISING
        self._touch()
        self.faults.on_step(self.job.id, self.job.attempt, step)

    def should_cancel(self) -> bool:
        """The generator's per-step stop check."""
        return self.stop_event.is_set()

    def stop(self, reason: str) -> None:
        """Ask the generation to stop at its next step; the first reason wins."""
        with self.lock:
            if self.stop_reason is None:
                self.stop_reason = reason
        self.stop_event.set()

    def snapshot(self) -> tuple[int, int, str]:
        """(step, total, phase) as last recorded."""
        with self.lock:
            return self.step, self.total or self.job.steps, self.phase


class WorkerProcess:
    """One worker: the claim loop, the job runner and the shutdown logic. ``await run()`` returns the exit code."""

    def __init__(self, settings: WorkerSettings, *, faults: FaultPlan | None = None, drain: bool = False,
                 once: bool = False) -> None:
        self.settings = settings
        self.faults = faults or FaultPlan()
        self.drain = drain
        self.once = once
        self.generator: VideoGenerator | None = None
        self._engine: AsyncEngine | None = None
        self._sessions: async_sessionmaker[AsyncSession] | None = None
        self._progress: ProgressWriter | None = None
        self._stopping: asyncio.Event | None = None
        self._stop_deadline = math.inf
        self._state = WORKER_STATE_LOADING
        self._job_id: int | None = None

    # -- lifecycle -------------------------------------------------------------------------------------------

    def request_stop(self) -> None:
        """SIGTERM/SIGINT: stop claiming; the first request starts the grace period, a second one ends it."""
        assert self._stopping is not None
        now = time.monotonic()
        if self._stopping.is_set():
            log.warning("second stop request: giving the current job back now")
            self._stop_deadline = now
        else:
            log.info("stop requested: no more claims; current job gets %.1f s", self.settings.grace_s)
            self._stop_deadline = now + self.settings.grace_s
            self._stopping.set()
            if self._state == WORKER_STATE_IDLE:
                self._state = WORKER_STATE_STOPPING

    @property
    def stopping(self) -> bool:
        return self._stopping is not None and self._stopping.is_set()

    async def run(self) -> int:
        """Run until stopped (or drained); returns the process exit code."""
        from jobs.db import make_engine, make_sessionmaker, migrate
        from jobs.progress import ProgressWriter

        loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self.request_stop)
        if self.faults.active:
            log.warning("TEST FAULT HOOKS ACTIVE: %s", self.faults)
        s = self.settings
        log.info("worker %s starting: model=%s db=%s output=%s", s.worker_id, s.model, _redact(s.database_url),
                 s.output_dir)
        try:
            s.output_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            log.error("OUTPUT_DIR %s cannot be created: %s", s.output_dir, exc)
            return EXIT_CONFIG
        if not os.access(s.output_dir, os.W_OK | os.X_OK):
            log.error("OUTPUT_DIR %s is not writable by this process", s.output_dir)
            return EXIT_CONFIG
        await migrate(s.database_url)
        self._engine = make_engine(s.database_url)
        self._sessions = make_sessionmaker(self._engine)
        self._progress = ProgressWriter(self._engine)
        heartbeat: asyncio.Task[None] | None = None
        beats = HeartbeatThread(s.database_url, s.worker_id, os.getpid(), s.heartbeat_interval_s,
                                lambda: (self._state, self._job_id))
        final_state = WORKER_STATE_STOPPED
        try:
            await self._register()
            beats.start()
            heartbeat = asyncio.create_task(self._heartbeat_loop(), name="worker-parent-watch")
            try:
                loaded = await self._load_model()
            except Exception:  # noqa: BLE001 - reported and turned into an exit code the supervisor sees
                log.critical("could not load the model %r", s.model, exc_info=True)
                final_state = WORKER_STATE_CRASHED
                return EXIT_MODEL_LOAD
            if not loaded:
                return EXIT_OK
            await self._set_state(WORKER_STATE_IDLE, None)
            await self._serve()
            return EXIT_OK
        except FatalCudaError as exc:
            log.critical("sticky CUDA error, exiting so a fresh process takes over: %s", exc)
            final_state = WORKER_STATE_CRASHED
            return EXIT_CUDA_ERROR
        finally:
            if heartbeat is not None:
                heartbeat.cancel()
                try:
                    await heartbeat
                except asyncio.CancelledError:
                    pass
            await asyncio.to_thread(beats.stop)
            try:
                await self._set_state(final_state, None)
            except Exception:  # noqa: BLE001 - best effort on the way out; the heartbeat age tells the rest
                log.exception("could not mark the worker stopped")
            await self._progress.close()
            await self._engine.dispose()

    async def _load_model(self) -> bool:
        """Load the pipeline on a daemon thread while the heartbeat goes on; False if told to stop meanwhile."""
        assert self._stopping is not None

        def load() -> VideoGenerator:
            self.faults.before_load()
            from generator.pipeline import VideoGenerator

            return VideoGenerator.load(self.settings.model, device=self.settings.device)

        started = time.monotonic()
        loading = run_in_daemon_thread(load, name="model-load")
        stop_wait = asyncio.ensure_future(self._stopping.wait())
        await asyncio.wait({loading, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
        stop_wait.cancel()
        if not loading.done():
            log.info("stopped while loading the model")
            return False
        self.generator = loading.result()
        log.info("model %s loaded on %s in %.1f s", self.settings.model, self.generator.device_name,
                 time.monotonic() - started)
        return not self.stopping

    async def _serve(self) -> None:
        """The claim loop."""
        assert self._stopping is not None
        last_rescue = -math.inf
        while not self.stopping:
            if time.monotonic() - last_rescue >= self.settings.rescue_interval_s:
                await self._rescue()
                last_rescue = time.monotonic()
            try:
                job = await self._claim()
            except Exception:  # noqa: BLE001 - a database hiccup must not end the worker; retry after a poll
                log.exception("claiming the next job failed")
                job = None
            if job is None:
                if self.drain and not await self._work_left():
                    log.info("queue drained; exiting")
                    return
                try:
                    await asyncio.wait_for(self._stopping.wait(), timeout=self.settings.poll_interval_s)
                except TimeoutError:
                    pass
                continue
            await self._run_job(job)
            if self.once:
                log.info("--once: one job done; exiting")
                return

    # -- database ------------------------------------------------------------------------------------------------

    def _session(self) -> AsyncSession:
        assert self._sessions is not None
        return self._sessions()

    async def _set_state(self, state: str, job_id: int | None, *, job_done: bool = False) -> None:
        if state == WORKER_STATE_IDLE and self.stopping:
            state = WORKER_STATE_STOPPING
        self._state = state
        self._job_id = job_id
        await self._write_heartbeat(job_done=job_done)

    async def _register(self) -> None:
        """Write this process's registry row; jobs a previous process left running under this id run again now."""
        from jobs.workers import register_worker

        async with self._session() as session, session.begin():
            requeued = await register_worker(session, self.settings.worker_id, host=socket.gethostname(),
                                             pid=os.getpid(), model=self.settings.model)
        if requeued:
            log.warning("requeued jobs a previous process of worker %s left running: %s", self.settings.worker_id,
                        requeued)

    async def _write_heartbeat(self, *, job_done: bool = False) -> None:
        """Upsert this worker's registry row (state, GPU, current job) and stamp its heartbeat."""
        from jobs.workers import upsert_worker

        generator = self.generator
        async with self._session() as session, session.begin():
            await upsert_worker(
                session,
                self.settings.worker_id,
                host=socket.gethostname(),
                pid=os.getpid(),
                state=self._state,
                gpu_name=generator.device_name if generator is not None else None,
                gpu_memory_bytes=generator.gpu_memory_bytes if generator is not None else None,
                current_job_id=self._job_id,
                model=self.settings.model,
                job_done=job_done,
            )

    async def _heartbeat_loop(self) -> None:
        """Stop when the supervisor is gone (the heartbeat itself is stamped by the HeartbeatThread)."""
        parent = self.settings.parent_pid
        while True:
            await asyncio.sleep(self.settings.heartbeat_interval_s)
            if parent is not None and os.getppid() != parent and not self.stopping:
                log.warning("supervisor pid %d is gone; stopping", parent)
                self.request_stop()

    async def _rescue(self) -> None:
        from jobs.queue import rescue_dead_workers, rescue_expired

        try:
            async with self._session() as session, session.begin():
                dead = await rescue_dead_workers(session, dead_after_s=self.settings.dead_after_s)
                expired = await rescue_expired(session)
        except Exception:  # noqa: BLE001 - the rescuer is housekeeping; the claim loop goes on
            log.exception("rescue failed")
            return
        if dead:
            log.warning("requeued jobs of workers that stopped heartbeating: %s", dead)
        if expired:
            log.info("requeued jobs with expired leases: %s", expired)

    async def _work_left(self) -> bool:
        """True while any job is queued or running (anywhere): a draining worker waits for leases to settle."""
        from jobs.db import begin_read_only
        from jobs.queue import pending_count

        async with self._session() as session:
            await begin_read_only(session)
            return await pending_count(session) > 0

    async def _claim(self) -> ClaimedJob | None:
        from jobs.queue import claim_next_job

        async with self._session() as session, session.begin():
            job = await claim_next_job(session, self.settings.worker_id, lease_seconds=self.settings.lease_s)
            if job is None:
                return None
            claimed = ClaimedJob(
                id=job.id,
                attempt=job.attempt,
                input_sha256=job.input_sha256,
                params={
                    "prompt": job.prompt,
                    "negative_prompt": job.negative_prompt,
                    "resolution": job.resolution,
                    "frames": job.frames,
                    "fps": job.fps,
                    "steps": job.steps,
                    "guidance": job.guidance,
                    "seed": job.seed,
                    "preset": job.preset,
                },
                width=job.width,
                height=job.height,
                upload_limit_bytes=job.upload_limit_bytes or DEFAULT_UPLOAD_LIMIT_BYTES,
            )
        log.info("claimed job %d (attempt %d)", claimed.id, claimed.attempt)
        return claimed

    async def _report(self, run: JobRun, *, lease_s: float | None = None) -> None:
        """One fenced progress write (renews the lease); stops the run if the job was cancelled or is not ours."""
        assert self._progress is not None
        step, total, phase = run.snapshot()
        ack = await self._progress.write(run.job.id, run.job.attempt, worker_id=self.settings.worker_id,
                                         step=step, total=total, phase=phase,
                                         lease_seconds=self.settings.lease_s if lease_s is None else lease_s)
        log.info("progress job=%d attempt=%d step=%d/%d phase=%s", run.job.id, run.job.attempt, step, total, phase)
        if not ack.ok:
            log.warning("job %d attempt %d is no longer ours; stopping it", run.job.id, run.job.attempt)
            run.stop(STOP_LOST)
        elif ack.cancel_requested:
            log.info("job %d: cancel requested", run.job.id)
            run.stop(STOP_CANCEL)

    async def _poll_cancel(self, run: JobRun) -> None:
        """A cheap read of the job's cancel flag and ownership between progress writes."""
        from jobs.db import begin_read_only
        from jobs.queue import attempt_state

        async with self._session() as session:
            await begin_read_only(session)
            ack = await attempt_state(session, run.job.id, run.job.attempt, worker_id=self.settings.worker_id)
        if not ack.ok:
            run.stop(STOP_LOST)
        elif ack.cancel_requested:
            log.info("job %d: cancel requested", run.job.id)
            run.stop(STOP_CANCEL)

    async def _record_note(self, run: JobRun, note: str) -> None:
        """Record a degradation (the low-memory retry) in the job's ``error_detail`` (internal worker notes),
        fenced like every worker write: this job, this attempt, this worker, still running."""
        from jobs.queue import record_note

        async with self._session() as session, session.begin():
            await record_note(session, run.job.id, run.job.attempt, worker_id=self.settings.worker_id, note=note)

    # -- one job ---------------------------------------------------------------------------------------------

    async def _run_job(self, job: ClaimedJob) -> None:
        run = JobRun(job=job, faults=self.faults, loop=asyncio.get_running_loop(), changed=asyncio.Event())
        await self._set_state(WORKER_STATE_BUSY, job.id)
        watcher = asyncio.create_task(self._watch(run), name=f"watch-job-{job.id}")
        try:
            await self._execute(run)
        finally:
            watcher.cancel()
            try:
                await watcher
            except asyncio.CancelledError:
                pass
        await self._set_state(WORKER_STATE_IDLE, None, job_done=True)

    async def _watch(self, run: JobRun) -> None:
        """Progress writes (throttled), lease renewal, cancel polling, the shutdown deadline and the stall check."""
        s = self.settings
        renew_after = s.lease_s * LEASE_RENEW_FRACTION
        last_write = -math.inf
        last_written: tuple[int, int, str] | None = run.snapshot()  # the claim/"preparing" write covers this
        last_poll = time.monotonic()
        last_write = time.monotonic()
        while True:
            try:
                await asyncio.wait_for(run.changed.wait(), timeout=CANCEL_POLL_INTERVAL_S)
            except TimeoutError:
                pass
            run.changed.clear()
            now = time.monotonic()
            snap = run.snapshot()
            try:
                if (snap != last_written and now - last_write >= s.progress_interval_s) or now - last_write >= renew_after:
                    await self._report(run)
                    last_write, last_written, last_poll = now, snap, now
                elif now - last_poll >= CANCEL_POLL_INTERVAL_S:
                    await self._poll_cancel(run)
                    last_poll = now
            except Exception:  # noqa: BLE001 - a failed write is retried next round; fencing keeps it safe
                log.exception("progress write for job %d failed", run.job.id)
            self._check_deadline(run, now)
            if run.generating_since is not None and now - run.last_change > s.stall_s:
                log.critical("job %d made no progress for %.0f s: the GPU call hung; exiting", run.job.id, s.stall_s)
                _exit_now(EXIT_STALLED)

    def _check_deadline(self, run: JobRun, now: float) -> None:
        """After SIGTERM: stop the job if it cannot finish within the grace period."""
        if not self.stopping or run.stop_reason is not None or run.generating_since is None:
            return
        step, total, _ = run.snapshot()
        if step >= total:
            return  # decoding: nearly done, let it finish
        if step > 0:
            per_step = (now - run.generating_since) / step
            expected_end = now + per_step * (total - step)
        else:
            expected_end = now
        if now >= self._stop_deadline or (step > 0 and expected_end > self._stop_deadline):
            log.info("job %d cannot finish within the grace period (step %d/%d); giving it back", run.job.id, step,
                     total)
            run.stop(STOP_SHUTDOWN)

    async def _execute(self, run: JobRun) -> None:
        """Prepare, generate, encode and settle one job."""
        from generator.images import ImageError
        from generator.params import ParamError
        from generator.pipeline import GenerationCancelled, GenerationFailed, GenerationOutOfMemory
        from generator.video import VideoTooLarge

        job = run.job
        try:
            await self._report(run)
            data = await self._read_input(job)
            image, params, width, height = await run_in_daemon_thread(
                functools.partial(self._prepare, job, data), name=f"prepare-{job.id}"
            )
            if run.stop_reason is None and self.stopping and time.monotonic() >= self._stop_deadline:
                run.stop(STOP_SHUTDOWN)
            if run.stop_reason is not None:
                raise GenerationCancelled(0, job.steps)
            frames = await self._generate(run, image, params, width, height)
            if run.stop_reason in (STOP_CANCEL, STOP_LOST):
                raise GenerationCancelled(0, job.steps)
            run.set_phase(PHASE_ENCODING)
            await self._report(run)
            await self._encode_and_finish(run, frames, params.fps)
        except GenerationCancelled:
            await self._settle_stopped(run)
        except InputMissing as exc:
            await self._fail(run, MSG_INPUT_MISSING, exc)
        except ImageError as exc:
            await self._fail(run, MSG_IMAGE_UNREADABLE.format(reason=exc), exc)
        except ParamError as exc:
            await self._fail(run, f"The stored parameters are invalid: {exc}", exc)
        except (GenerationOutOfMemory, GenerationFailed) as exc:
            await self._fail(run, str(exc), exc)
        except VideoTooLarge as exc:
            await self._fail(run, MSG_TOO_LARGE, exc)
        except FatalCudaError:
            raise
        except Exception as exc:  # noqa: BLE001 - one bad job must not take the worker down
            if is_fatal_cuda_error(exc):
                await self._expire_lease(run)
                raise FatalCudaError(str(exc)) from exc
            log.exception("job %d failed", job.id)
            await self._fail(run, MSG_INTERNAL, exc)

    async def _read_input(self, job: ClaimedJob) -> bytes:
        """The job's input image from the store; raises InputMissing when it is not kept."""
        from jobs.blobs import DATABASE_BLOBS
        from jobs.db import begin_read_only

        async with self._session() as session:
            await begin_read_only(session)
            data = await DATABASE_BLOBS.read_input(session, job.input_sha256)
        if data is None:
            raise InputMissing(f"no stored image {job.input_sha256}")
        return data

    def _prepare(self, job: ClaimedJob, data: bytes) -> tuple[Image, GenerationParams, int, int]:
        """Decode and fit the input image and rebuild the parameters (runs on a thread)."""
        from generator.images import fit_image, load_image
        from generator.params import GenerationParams, target_size

        params = GenerationParams.from_dict(job.params)
        image = load_image(data)
        if job.width and job.height:
            width, height = job.width, job.height
        else:
            width, height = target_size(params.resolution, image.width, image.height)
        return fit_image(image, width, height), params, width, height

    async def _generate(self, run: JobRun, image: Image, params: GenerationParams, width: int,
                        height: int) -> list[Image]:
        """Run the pipeline; on out-of-memory retry once in low-memory mode (recorded on the job)."""
        from generator.pipeline import GenerationOutOfMemory

        assert self.generator is not None
        generator = self.generator
        for low_memory in (False, True):
            with run.lock:
                run.step = 0
                run.phase = PHASE_DENOISING
            call = functools.partial(generator.generate, image, params, width=width, height=height,
                                     on_step=run.on_step, should_cancel=run.should_cancel, low_memory=low_memory,
                                     on_phase=run.set_phase)
            started = time.monotonic()
            run.generating_since = started
            run.last_change = started
            try:
                return await run_in_daemon_thread(call, name=f"generate-{run.job.id}")
            except GenerationOutOfMemory:
                if low_memory:
                    raise
                step, total, _ = run.snapshot()
                run.note = NOTE_LOW_MEMORY.format(step=step, total=total)
                log.warning("job %d: %s", run.job.id, run.note)
                gc.collect()
                try:
                    await self._record_note(run, run.note)
                except Exception:  # noqa: BLE001 - the note is informative; the retry matters more
                    log.exception("could not record the low-memory note for job %d", run.job.id)
            finally:
                run.gpu_seconds += time.monotonic() - started
                run.generating_since = None
        raise AssertionError("unreachable")  # pragma: no cover

    async def _encode_and_finish(self, run: JobRun, frames: list[Image], fps: int) -> None:
        from generator.video import encode_to_budget
        from jobs.queue import finish_job

        job = run.job
        scratch = self.settings.output_dir / f".encode-{job.id}-{job.attempt}-{os.getpid()}.mp4"

        def encode() -> tuple[Any, bytes]:
            self.faults.before_encode()
            try:
                result = encode_to_budget(frames, scratch, fps, job.upload_limit_bytes)
                return result, scratch.read_bytes()
            finally:
                scratch.unlink(missing_ok=True)

        result, video = await run_in_daemon_thread(encode, name=f"encode-{job.id}")
        async with self._session() as session, session.begin():
            ok = await finish_job(session, job.id, job.attempt, worker_id=self.settings.worker_id, video=video,
                                  gpu_seconds=run.gpu_seconds)
        if ok:
            log.info("job %d done: stored %d bytes, %.2f GPU-s, %d encode attempt(s)", job.id,
                     result.size_bytes, run.gpu_seconds, result.attempts)
        else:
            log.warning("job %d attempt %d was no longer ours at finish; its video was not stored", job.id,
                        job.attempt)

    async def _settle_stopped(self, run: JobRun) -> None:
        """The generation stopped early: cancelled (charged), given back (shutdown) or lost (nothing to do)."""
        from jobs.queue import finish_cancelled, release_job

        job = run.job
        reason = run.stop_reason
        if reason == STOP_CANCEL:
            try:
                await self._report(run)  # record the step it stopped at
            except Exception:  # noqa: BLE001 - informative only; settling matters
                log.exception("final progress write for job %d failed", job.id)
        async with self._session() as session, session.begin():
            if reason == STOP_CANCEL:
                ok = await finish_cancelled(session, job.id, job.attempt, worker_id=self.settings.worker_id,
                                            gpu_seconds=run.gpu_seconds)
                log.info("job %d cancelled at step %d (%.2f GPU-s charged, recorded=%s)", job.id, run.step,
                         run.gpu_seconds, ok)
            elif reason == STOP_SHUTDOWN:
                ok = await release_job(session, job.id, job.attempt, worker_id=self.settings.worker_id)
                log.info("job %d given back to the queue uncharged (recorded=%s)", job.id, ok)
            else:
                log.warning("job %d attempt %d lost its lease; leaving it to its new owner", job.id, job.attempt)

    async def _fail(self, run: JobRun, message: str, exc: BaseException) -> None:
        from jobs.queue import fail_job

        detail = _detail(exc)
        if run.note:
            detail = run.note + "\n" + detail
        async with self._session() as session, session.begin():
            ok = await fail_job(session, run.job.id, run.job.attempt, worker_id=self.settings.worker_id,
                                error=message, detail=detail,
                                gpu_seconds=run.gpu_seconds)
        log.warning("job %d failed (recorded=%s): %s", run.job.id, ok, message)

    async def _expire_lease(self, run: JobRun) -> None:
        """Before exiting on a sticky CUDA error: shorten our lease to now so the next rescue requeues the job."""
        try:
            await self._report(run, lease_s=LEASE_EXPIRE_NOW_S)
        except Exception:  # noqa: BLE001 - the lease will expire on its own
            log.exception("could not shorten the lease of job %d", run.job.id)


def _redact(url: str) -> str:
    """The database URL without its password, for logs."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - only for a log line
        return "<unparseable DATABASE_URL>"


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m generator.worker``; returns the exit code."""
    parser = argparse.ArgumentParser(prog="python -m generator.worker", description=__doc__.split("\n")[0])
    parser.add_argument("--drain", action="store_true", help="exit once no job is queued or running")
    parser.add_argument("--once", action="store_true", help="exit after one job")
    args = parser.parse_args(argv)
    logging.basicConfig(level=os.environ.get("LOG_LEVEL", "INFO").upper(),
                        format="%(asctime)s %(levelname)s worker[%(process)d] %(message)s", stream=sys.stderr)
    try:
        settings = WorkerSettings.from_env()
        faults = FaultPlan.from_env()
    except ValueError as exc:
        log.error("invalid setting: %s", exc)
        return EXIT_CONFIG
    return asyncio.run(WorkerProcess(settings, faults=faults, drain=args.drain, once=args.once).run())


def _exit_now(code: int) -> None:
    """Flush the logs and leave at once, without the interpreter's teardown of torch and diffusers (about a second
    on a busy CPU, which would eat into the supervisor's stop grace; after a stall the hung GPU call would block it)."""
    log.info("worker exiting with code %d", code)
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    _exit_now(main())
