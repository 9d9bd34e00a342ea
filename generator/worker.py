"""The GPU worker process: ``python -m generator.worker [--drain] [--once]``.

One process per GPU (design.md section 4). It talks to the job store itself (the database is the IPC channel):

1. migrates the database, registers itself in the ``workers`` table (host, pid, model; state ``loading``; jobs a
   previous process with the same ``WORKER_ID`` left running are requeued at once) and stamps a heartbeat there every
   ``I2V_HEARTBEAT_INTERVAL_S`` from a thread of its own (:mod:`generator.heartbeat`), also while the model loads;
2. loads the pipeline once (``I2V_MODEL``; ``tiny`` is the offline test model) and keeps it warm;
3. loops: every ``I2V_RESCUE_INTERVAL_S`` requeue the jobs of dead workers (after ``WORKER_DEAD_AFTER`` seconds
   without a heartbeat) and of expired leases (``jobs.maintenance.maintain``, its rescue alone) -> claim the next
   job -> read its input image from the store -> ``load_image`` + ``fit_image`` -> ``VideoBackend.generate`` ->
   ``encode_to_budget`` to the job's upload limit (in a scratch file under ``OUTPUT_DIR``, removed at once) ->
   ``finish_job`` with the MP4's bytes and the GPU-seconds, one transaction. Nothing the worker writes to disk
   outlives the job.

Modules: :mod:`generator.worker_settings` (settings and constants), :mod:`generator.jobrun` (a claimed job and the
state the threads share), :mod:`generator.execution` (the job runner the worker owns: it claims jobs and runs them),
this module (the process, the models it holds, its claim loop and shutdown).

Progress. The step callback runs on the generation thread and only records the step in memory (no I/O on the
denoising path). A watcher coroutine on the event loop writes it to the job at most once per
``I2V_PROGRESS_INTERVAL_S`` (each write renews the lease and is fenced by job, attempt and worker), renews the lease
during long phases without steps (VAE decode, encoding), and polls the job's cancel flag every
``CANCEL_POLL_INTERVAL_S``. When the job was cancelled, or the write says the job is no longer ours, the generation
stops at its next step.

Faults. ``GenerationOutOfMemory``: retried once with ``low_memory=True`` (the job's ``error_detail`` records it);
a second one fails the job with the generator's advice (lower resolution or frames) and the quota refunded; the
worker keeps serving. Any other CUDA error is sticky: the worker shortens its lease to now (so the next rescue
requeues the job, the attempt counted) and exits with ``EXIT_CUDA_ERROR``; the supervisor starts a new process. Any
other exception in a job fails that job with a clear message and the detail, and the worker keeps serving.

Shutdown. SIGTERM or SIGINT: stop claiming; the current job may finish if it can within ``I2V_GRACE_SECONDS``
(estimated from its step times), else it is stopped at the next step and given back with ``release_job``
(queued again, uncharged; the give-back is counted in ``releases``, not against ``max_attempts``); then exit 0. A second
signal ends the grace period at once.

Start failures (a bad setting, OUTPUT_DIR, the database, the model): one line, not a traceback, through
:mod:`generator.startfailure` (to the supervisor's reason file, or the log), and an exit code the supervisor counts.

Blocking work (model load, generation, image decode, encoding) runs on daemon threads so that a stop request never
waits for a thread the interpreter would otherwise join at exit. A generation that makes no step for
``I2V_STALL_SECONDS`` is taken as a hung GPU call: the worker exits with ``EXIT_STALLED`` (the lease brings the job
back), since such a call cannot be interrupted from Python.

GPU-seconds are the wall time spent inside ``VideoBackend.generate`` for the job (both runs when it was retried in
low-memory mode); encoding runs on the CPU and is not counted.

Not done: batching several queued jobs of identical shape into one pipeline call. It is off by
design until a GPU benchmark shows a gain; batching multiplies activation memory, and every job's progress, cancel
and fencing would have to stay separate. The claim loop takes one job at a time.

Settings come from the environment; see :class:`WorkerSettings`. Test-only fault hooks: :mod:`generator.faults`.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import os
import signal
import socket
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from config.catalog import WORKER
from config.helptext import settings_help
from config.logs import setup_logging
from config.reader import environment, report_bad_setting
from generator.execution import JobRunner
from generator.faults import FaultPlan
from generator.heartbeat import HeartbeatThread
from generator.jobrun import (  # re-exported: the worker's public names stay importable from here
    ClaimedJob,
    FatalCudaError,
    _exit_now,
    run_in_daemon_thread,
)
from generator.model_download import reporting_downloads
from generator.model_spaces import SPACES
from generator.models import BACKENDS
from generator.startfailure import ENV_EXIT_REASON_FILE, describe, report_start_failure
from generator.worker_settings import (
    EXIT_CONFIG,
    EXIT_CUDA_ERROR,
    EXIT_DATABASE,
    EXIT_MODEL_LOAD,
    EXIT_OK,
    WORKER_STATE_CRASHED,
    WORKER_STATE_IDLE,
    WORKER_STATE_LOADING,
    WORKER_STATE_STOPPED,
    WORKER_STATE_STOPPING,
    WorkerSettings,
)

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

    from generator.models.base import VideoBackend
    from generator.safety import SafetyChecker
    from jobs.progress import ProgressWriter

log = logging.getLogger("generator.worker")
RUNNABLE_MODELS: tuple[str, ...] = tuple(BACKENDS)  # the model backends this worker runs (generator.models)
PROG = "i2v-worker"  # how its one-line errors begin


class WorkerProcess:
    """One worker: the model it holds, the claim loop, its registry row and the shutdown logic; each claimed job
    goes to the :class:`JobRunner` it owns. ``await run()`` returns the exit code."""

    def __init__(
        self, settings: WorkerSettings, *, faults: FaultPlan | None = None, drain: bool = False, once: bool = False
    ) -> None:
        self.settings = settings
        self.faults = faults or FaultPlan()
        self.drain = drain
        self.once = once
        self.generator: VideoBackend | None = None
        self.safety: SafetyChecker | None = None  # the image classifier, loaded beside the model (None: off)
        self._engine: AsyncEngine | None = None
        self._sessions: async_sessionmaker[AsyncSession] | None = None
        self._progress: ProgressWriter | None = None
        self._runner: JobRunner | None = None  # made once the store is open
        self._stopping: asyncio.Event | None = None
        self._stop_deadline = math.inf
        self._state = WORKER_STATE_LOADING
        self._job_id: int | None = None
        self._failure: str | None = None  # why this process could not start, written to its registry row
        # The models it may load (I2V_MODELS narrowed by WORKER_MODELS) among those this worker runs; the claim
        # takes only their jobs. The one it holds is preferred by the claim (MODEL_AFFINITY_MAX_SKIPS).
        self.loadable: tuple[str, ...] = tuple(key for key in settings.models if key in RUNNABLE_MODELS)
        self.loaded_model: str | None = None
        self._download_writes = asyncio.Lock()  # download progress rows in the order they were told

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
        """True once a stop was requested (no more claims)."""
        return self._stopping is not None and self._stopping.is_set()

    @property
    def stop_deadline(self) -> float:
        """``time.monotonic()`` by which the running job must be given back (inf until a stop request)."""
        return self._stop_deadline

    async def run(self) -> int:
        """Run until stopped (or drained); returns the process exit code."""
        from jobs.db import make_engine, make_sessionmaker, migrate, redacted_url
        from jobs.progress import ProgressWriter

        loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self.request_stop)
        if self.faults.active:
            log.warning("TEST FAULT HOOKS ACTIVE: %s", self.faults)
        s = self.settings
        log.info(
            "worker %s starting: model=%s db=%s output=%s",
            s.worker_id,
            s.model,
            redacted_url(s.database_url),
            s.output_dir,
        )
        try:
            s.output_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            return report_start_failure(log, f"OUTPUT_DIR {s.output_dir} cannot be created: {exc}", EXIT_CONFIG)
        if not os.access(s.output_dir, os.W_OK | os.X_OK):
            return report_start_failure(log, f"OUTPUT_DIR {s.output_dir} is not writable by the worker", EXIT_CONFIG)
        if not self.loadable:
            return report_start_failure(
                log,
                f"this worker may load {', '.join(s.models)} (I2V_MODELS, WORKER_MODELS) "
                f"but runs only {', '.join(RUNNABLE_MODELS)}",
                EXIT_CONFIG,
            )
        try:
            await migrate(s.database_url)
        except Exception as exc:  # noqa: BLE001 - any driver error: the store cannot be used
            return report_start_failure(
                log,
                f"the database {redacted_url(s.database_url)} cannot be opened: {describe(exc)}",
                EXIT_DATABASE,
                error=exc,
            )
        self._engine = make_engine(s.database_url)
        self._sessions = make_sessionmaker(self._engine)
        self._progress = ProgressWriter(self._engine)
        self._runner = JobRunner(self, s, self.faults, self._sessions, self._progress)
        parent_watch: asyncio.Task[None] | None = None
        beats = HeartbeatThread(
            s.database_url, s.worker_id, os.getpid(), s.heartbeat_interval_s, lambda: (self._state, self._job_id)
        )
        final_state = WORKER_STATE_STOPPED
        try:
            await self._register()
            beats.start()
            parent_watch = asyncio.create_task(self._watch_parent(), name="worker-parent-watch")
            try:
                loaded = await self._load_model()
            except Exception as exc:  # noqa: BLE001 - one line for the supervisor and the registry, no traceback
                final_state = WORKER_STATE_CRASHED
                named = "" if s.model in str(exc) else f" {s.model!r}"  # most loader errors name it already
                self._failure = f"the model{named} could not be loaded: {describe(exc)}"
                return report_start_failure(log, self._failure, EXIT_MODEL_LOAD, error=exc)
            if not loaded:
                return EXIT_OK
            await self.set_state(WORKER_STATE_IDLE, None)
            await self._serve()
            return EXIT_OK
        except FatalCudaError as exc:
            log.critical("sticky CUDA error, exiting so a fresh process takes over: %s", exc)
            final_state = WORKER_STATE_CRASHED
            return EXIT_CUDA_ERROR
        finally:
            if parent_watch is not None:
                parent_watch.cancel()
                try:
                    await parent_watch
                except asyncio.CancelledError:
                    pass
            await asyncio.to_thread(beats.stop)
            try:
                await self.set_state(final_state, None)
            except Exception:
                log.exception("could not mark the worker stopped")
            await self._progress.close()
            await self._engine.dispose()

    async def _load_model(self) -> bool:
        """Load the first model this worker may load, then the safety classifier, on daemon threads while the
        heartbeat goes on; False if told to stop meanwhile. The video model comes first: its source is the setting
        an admin most often gets wrong, and its first download is the one worth watching."""
        assert self._stopping is not None
        if not await self._load_backend(self.loadable[0]) or self.stopping:
            return False

        def load() -> SafetyChecker | None:
            from generator.safety import SafetyChecker

            s = self.settings
            return SafetyChecker.load(
                s.safety_model,
                video_model=s.model,
                threshold=s.safety_threshold,
                unsafe_label=s.safety_unsafe_label,
                device=s.device,
                faults=self.faults,
            )

        loading = run_in_daemon_thread(load, name="safety-load")
        if not await self._until_stopped(loading):
            log.info("stopped while loading the safety classifier")
            return False
        self.safety = loading.result()
        return not self.stopping

    async def _until_stopped(self, task: asyncio.Future[Any]) -> bool:
        """Wait for ``task`` or a stop request, whichever comes first; True when ``task`` is done."""
        assert self._stopping is not None
        stop_wait = asyncio.ensure_future(self._stopping.wait())
        await asyncio.wait({task, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
        stop_wait.cancel()
        return task.done()

    async def _load_backend(self, key: str) -> bool:
        """Load model ``key`` (this worker holds none now); False if told to stop meanwhile. Raises what the
        backend's load raises."""
        from generator.models import backend_class

        source = self.settings.source_of(key)
        started = time.monotonic()
        loop = asyncio.get_running_loop()

        def told(done: int, total: int) -> None:  # on the loading thread: the write runs on the event loop
            asyncio.run_coroutine_threadsafe(self._record_download(key, done, total), loop)

        def load() -> VideoBackend:
            from generator.model_source import route_library_logs

            self.faults.before_load()
            route_library_logs()
            with reporting_downloads(told):
                return backend_class(key).load(source, device=self.settings.device)

        loading = run_in_daemon_thread(load, name=f"model-load-{key}")
        try:
            if not await self._until_stopped(loading):
                return False
        finally:
            await self._record_download(None, 0, 0)
        self.generator = loading.result()
        self.loaded_model = key
        log.info(
            "model %s (%s) loaded on %s in %.1f s", key, source, self.generator.device_name, time.monotonic() - started
        )
        return True

    async def _record_download(self, key: str | None, done: int, total: int) -> None:
        """Write the download under way of model ``key`` (None: none any more) to this worker's registry row."""
        from jobs.workers import record_download

        try:
            async with self._download_writes, self._session() as session, session.begin():
                await record_download(session, self.settings.worker_id, model=key, done_bytes=done, total_bytes=total)
        except Exception:  # progress is told on a best-effort basis; the load goes on
            log.exception("could not record the download of %s", key)

    async def _unload_backend(self) -> None:
        """Give the model back completely: the pipeline, its hooks and the GPU's cached memory (its idle level)."""
        backend, self.generator, self.loaded_model = self.generator, None, None
        if backend is not None:
            await run_in_daemon_thread(backend.unload, name="model-unload")
            del backend

    async def _switch_for(self, job: ClaimedJob) -> bool:
        """Hold the model ``job`` needs: unload the one held, then load it, renewing the job's lease meanwhile
        (phase "loading"). Counted in the registry (switches, seconds). On a load failure the job goes back to
        the queue uncharged and this worker stops offering that model; False then (or when told to stop)."""
        from jobs.workers import record_switch

        key = job.params.model
        previous = self.loaded_model
        started = time.monotonic()
        log.info("job %d needs %s: switching from %s", job.id, key, previous)
        renew = asyncio.create_task(self._job_runner.renew_while_loading(job), name=f"switch-lease-{job.id}")
        try:
            await self.set_state(WORKER_STATE_LOADING, job.id)
            await self._unload_backend()
            try:
                loaded = await self._load_backend(key)
            except Exception as exc:  # noqa: BLE001 - a model that cannot load must not end the worker
                log.error("model %s could not be loaded; this worker stops offering it: %s", key, describe(exc))
                self.loadable = tuple(k for k in self.loadable if k != key)
                loaded = False
        finally:
            renew.cancel()
        seconds = time.monotonic() - started
        async with self._session() as session, session.begin():
            await record_switch(session, self.settings.worker_id, seconds=seconds)
        if loaded:
            log.info("switched from %s to %s in %.1f s", previous, key, seconds)
            return True
        await self._give_back(job)
        if self.loadable and not self.stopping:  # hold a model again, so the next claim has one
            await self._load_backend(self.loadable[0])
        return False

    async def _give_back(self, job: ClaimedJob) -> None:
        """Put a claimed job back in the queue, uncharged; the worker is idle again."""
        await self._job_runner.give_back(job)
        await self.set_state(WORKER_STATE_IDLE, None)

    async def _serve(self) -> None:
        """The claim loop."""
        assert self._stopping is not None
        last_rescue = -math.inf
        while not self.stopping:
            if time.monotonic() - last_rescue >= self.settings.rescue_interval_s:
                await self._rescue()
                last_rescue = time.monotonic()
            try:
                job = await self._job_runner.claim(self.loadable, self.loaded_model)
            except Exception:
                log.exception("claiming the next job failed")
                job = None
            if job is None:
                if self.drain and not await self._job_runner.work_left(self.loadable):
                    log.info("queue drained; exiting")
                    return
                try:
                    await asyncio.wait_for(self._stopping.wait(), timeout=self.settings.poll_interval_s)
                except TimeoutError:
                    pass
                continue
            if job.params.model != self.loaded_model and not await self._switch_for(job):
                if not self.loadable:
                    log.error("this worker can load none of its models any more; stopping")
                    return
                continue
            await self._job_runner.run(job)
            if self.once:
                log.info("--once: one job done; exiting")
                return

    # -- database ------------------------------------------------------------------------------------------------

    @property
    def _job_runner(self) -> JobRunner:
        assert self._runner is not None, "the store is not open yet"
        return self._runner

    def _session(self) -> AsyncSession:
        assert self._sessions is not None
        return self._sessions()

    async def set_state(self, state: str, job_id: int | None, *, job_done: bool = False) -> None:
        """Record this worker's state (and the job it runs) in its registry row."""
        if state == WORKER_STATE_IDLE and self.stopping:
            state = WORKER_STATE_STOPPING
        self._state = state
        self._job_id = job_id
        await self._write_registry(job_done=job_done)

    async def _register(self) -> None:
        """Write this process's registry row; jobs a previous process left running under this id run again now."""
        from jobs.workers import register_worker

        async with self._session() as session, session.begin():
            requeued = await register_worker(
                session,
                self.settings.worker_id,
                host=socket.gethostname(),
                pid=os.getpid(),
                model=self.settings.model,
                loadable_models=self.loadable,
            )
        if requeued:
            log.warning(
                "requeued jobs a previous process of worker %s left running: %s", self.settings.worker_id, requeued
            )

    async def _write_registry(self, *, job_done: bool = False) -> None:
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
                model=self.settings.source_of(self.loaded_model) if self.loaded_model else None,
                job_done=job_done,
                failure_reason=self._failure,
                loadable_models=self.loadable,
                loaded_model=self.loaded_model,
            )

    async def _watch_parent(self) -> None:
        """Stop when the supervisor is gone (checked every heartbeat interval; the heartbeat itself is stamped by the
        HeartbeatThread)."""
        parent = self.settings.parent_pid
        while True:
            await asyncio.sleep(self.settings.heartbeat_interval_s)
            if parent is not None and os.getppid() != parent and not self.stopping:
                log.warning("supervisor pid %d is gone; stopping", parent)
                self.request_stop()

    async def _rescue(self) -> None:
        """The maintenance pass's rescue (``jobs.maintenance.maintain``, no retention: that is the app's); logs what
        it requeued, and a failure, which the next pass retries."""
        from jobs.maintenance import maintain

        assert self._sessions is not None
        try:
            await maintain(self._sessions, dead_after_s=self.settings.dead_after_s)
        except Exception:
            log.exception("rescue failed")


def build_parser() -> argparse.ArgumentParser:
    """``python -m generator.worker``'s arguments; ``--help`` lists the settings it reads."""
    parser = argparse.ArgumentParser(
        prog="python -m generator.worker",
        description=__doc__.split("\n")[0],
        epilog=settings_help(WORKER),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "command",
        nargs="?",
        choices=("run", "check"),
        default="run",
        help="run (the default): serve jobs; check: report the settings, torch, the GPU and the "
        "model's config files, start nothing (exit status 0, or 2 with a problem)",
    )
    parser.add_argument("--drain", action="store_true", help="exit once no job is queued or running")
    parser.add_argument("--once", action="store_true", help="exit after one job")
    return parser


def check(env: Mapping[str, str]) -> int:
    """``python -m generator.worker check``: what is fine on stdout, warnings and problems on stderr."""
    from generator.device import device_report
    from generator.model_files import check_model_source

    try:
        settings = WorkerSettings.from_env(env)
    except ValueError as exc:
        return report_bad_setting(PROG, exc)
    report = device_report(settings.model, settings.device)
    for key in settings.models:  # each model this worker may load, from its own setting
        setting = SPACES[key].source_setting
        source = settings.source_of(key)
        model_problems = check_model_source(source, setting=setting)
        report.problems += model_problems
        if not model_problems:
            report.fine.append(f"{setting}={source}: its config files are usable ({SPACES[key].display_name})")
    existing = settings.output_dir.absolute()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if existing.is_dir() and os.access(existing, os.W_OK | os.X_OK):
        made = existing == settings.output_dir.absolute()
        report.fine.append(f"OUTPUT_DIR={settings.output_dir}: {'writable' if made else 'can be created'}")
    else:
        report.problems.append(f"OUTPUT_DIR={settings.output_dir}: {existing} is not a folder this user can write in")
    return report.print(PROG, "this worker can start")


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m generator.worker``; returns the exit code."""
    args = build_parser().parse_args(argv)
    env = environment()
    if args.command == "check":
        return check(env)
    try:
        settings = WorkerSettings.from_env(env)
        faults = FaultPlan.from_env()
        # A worker under a supervisor writes LOG_FILE's NAME.worker.EXT: two processes must not rotate one file.
        setup_logging(env, process="worker", file_role="worker" if settings.parent_pid else None)
    except ValueError as exc:
        if env.get(ENV_EXIT_REASON_FILE, "").strip():  # supervised: the supervisor logs and records the reason
            return report_start_failure(log, f"invalid setting: {exc}", EXIT_CONFIG, env=env)
        return report_bad_setting(PROG, exc)
    return asyncio.run(WorkerProcess(settings, faults=faults, drain=args.drain, once=args.once).run())


if __name__ == "__main__":
    _exit_now(main())
