"""Supervise one GPU worker process: start it, restart it with backoff when it dies, stop it cleanly (no torch).

The bot uses :class:`WorkerSupervisor` in ``WORKER=embedded`` mode; ``python -m generator.supervisor`` runs it on
its own (same environment variables as the worker). This module never imports torch, diffusers or discord.

How the child is started, and why. The worker is started as ``sys.executable -m generator.worker`` through
``asyncio.create_subprocess_exec``: a fresh interpreter, which is what multiprocessing's ``spawn`` start method
gives (CUDA is not fork-safe, design.md section 4) without its costs here: nothing has to be pickled, the parent's
event loop, sockets and (in the bot) discord.py state are never inherited, ``await proc.wait()`` fits the bot's
event loop, and the supervised command is exactly the one an operator runs by hand in ``WORKER=external`` mode, so
there is one code path. The child gets its own session (``start_new_session``): a Ctrl-C in the terminal reaches
only the supervisor, which then stops the child gracefully. The child is told our pid (``I2V_PARENT_PID``) and stops
itself if we disappear, so a crashed bot never leaves a second worker on the GPU.

Restarts. When the child dies while we are not stopping, the jobs it held are requeued at once (the attempt
counted; the child's worker id is ours alone, so this is safe), and a new child starts after an exponential backoff (``BACKOFF_INITIAL_S`` doubling up to
``BACKOFF_MAX_S``), reset once a child has run for ``BACKOFF_RESET_AFTER_S``. A child whose heartbeat in the
``workers`` table is older than ``HANG_TIMEOUT_S`` is killed (a hung GPU call cannot be interrupted otherwise).

State. :attr:`WorkerSupervisor.state` reads the child's ``workers`` row (refreshed every
``STATE_POLL_INTERVAL_S``): phase ``starting``/``loading``/``idle``/``busy`` (with the job id)/``stopping``/
``stopped``/``crashed`` (waiting to restart), the restart count, the pid and the last exit code.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import os
import signal
import socket
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, TYPE_CHECKING

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

# Environment variables of the parent that the worker child does not inherit.
CHILD_ENV_WITHHELD = frozenset({"DISCORD_TOKEN"})

log = logging.getLogger("generator.supervisor")

DEFAULT_STOP_GRACE_S = 60.0  # seconds between SIGTERM and SIGKILL when stopping the child
STOP_MARGIN_S = 3.0  # seconds before SIGKILL at which a second SIGTERM tells the worker to give its job back now
BACKOFF_INITIAL_S = 1.0  # seconds before the first restart
BACKOFF_MAX_S = 60.0  # seconds, the longest wait between restarts
BACKOFF_RESET_AFTER_S = 120.0  # a child that ran this many seconds resets the backoff
HANG_TIMEOUT_S = 180.0  # seconds without a heartbeat before a live child is killed; 0 disables the check
STATE_POLL_INTERVAL_S = 1.0  # seconds between two reads of the child's workers row
WORKER_MODULE = "generator.worker"

PHASE_STARTING = "starting"
PHASE_LOADING = "loading"
PHASE_IDLE = "idle"
PHASE_BUSY = "busy"
PHASE_STOPPING = "stopping"
PHASE_STOPPED = "stopped"
PHASE_CRASHED = "crashed"


@dataclass(frozen=True)
class SupervisorState:
    """What the supervisor knows about its worker.

    ``phase``: starting | loading | idle | busy | stopping | stopped | crashed; ``job_id``: the job being made when
    busy; ``restarts``: how many times the child was restarted; ``pid``: the live child's pid (None when none);
    ``last_exit_code``: the previous child's exit status (negative: killed by that signal).
    """

    phase: str
    job_id: int | None
    restarts: int
    pid: int | None
    last_exit_code: int | None = None
    worker_id: str = ""

    def describe(self) -> str:
        """A one-line human summary, e.g. ``busy with job 12 (pid 4242, 1 restart)``."""
        what = f"busy with job {self.job_id}" if self.phase == PHASE_BUSY and self.job_id is not None else self.phase
        pid = f"pid {self.pid}, " if self.pid else ""
        return f"{what} ({pid}{self.restarts} restart{'s' if self.restarts != 1 else ''})"


def next_backoff(previous_s: float, *, initial_s: float, max_s: float) -> float:
    """The wait before the next restart: ``initial_s``, then doubling, capped at ``max_s``."""
    if previous_s <= 0:
        return min(initial_s, max_s)
    return min(previous_s * 2, max_s)


class WorkerSupervisor:
    """Runs ``python -m generator.worker`` as a child, restarting it with backoff; use from any asyncio loop.

    ``await start()`` returns once the first child is started; ``await stop(grace)`` stops it (SIGTERM, then
    SIGKILL after ``grace`` seconds) and waits. ``extra_env`` is added to the child's environment (e.g. timings);
    ``log_path`` appends the child's output to a file instead of inheriting our stderr.
    """

    def __init__(
        self,
        database_url: str,
        model: str,
        output_dir: str | os.PathLike[str],
        *,
        worker_id: str | None = None,
        extra_env: Mapping[str, str] | None = None,
        worker_args: Sequence[str] = (),
        log_path: str | os.PathLike[str] | None = None,
        stop_grace_s: float = DEFAULT_STOP_GRACE_S,
        backoff_initial_s: float = BACKOFF_INITIAL_S,
        backoff_max_s: float = BACKOFF_MAX_S,
        backoff_reset_after_s: float = BACKOFF_RESET_AFTER_S,
        hang_timeout_s: float = HANG_TIMEOUT_S,
        state_poll_interval_s: float = STATE_POLL_INTERVAL_S,
        python: str = sys.executable,
    ) -> None:
        if not isinstance(database_url, str) or not database_url.strip():
            raise ValueError(f"database_url must be a non-empty string, got {database_url!r}")
        if not isinstance(model, str) or not model.strip():
            raise ValueError(f"model must be a non-empty string, got {model!r}")
        for name, value in (("stop_grace_s", stop_grace_s), ("backoff_initial_s", backoff_initial_s),
                            ("backoff_max_s", backoff_max_s), ("backoff_reset_after_s", backoff_reset_after_s),
                            ("hang_timeout_s", hang_timeout_s)):
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number of seconds >= 0, got {value!r}")
        if not math.isfinite(state_poll_interval_s) or state_poll_interval_s <= 0:
            raise ValueError(f"state_poll_interval_s must be > 0 seconds, got {state_poll_interval_s!r}")
        self.database_url = database_url
        self.model = model
        self.output_dir = Path(output_dir)
        self.worker_id = worker_id or f"{socket.gethostname()}-sup{os.getpid()}"
        self.extra_env = dict(extra_env or {})
        self.worker_args = list(worker_args)
        self.log_path = Path(log_path) if log_path is not None else None
        self.stop_grace_s = stop_grace_s
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.backoff_reset_after_s = backoff_reset_after_s
        self.hang_timeout_s = hang_timeout_s
        self.state_poll_interval_s = state_poll_interval_s
        self.python = python
        self._state = SupervisorState(PHASE_STOPPED, None, 0, None, None, self.worker_id)
        self._proc: asyncio.subprocess.Process | None = None
        self._stopping = False
        self._stop_grace_s = stop_grace_s
        self._runner: asyncio.Task[None] | None = None
        self._monitor: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None
        self._started: asyncio.Event | None = None
        self._engine: AsyncEngine | None = None
        self._log_file: IO[bytes] | None = None

    # -- public ------------------------------------------------------------------------------------------------

    @property
    def state(self) -> SupervisorState:
        """The last known state (refreshed from the worker's row every ``state_poll_interval_s``)."""
        return self._state

    @property
    def running(self) -> bool:
        """True between start() and stop()."""
        return self._runner is not None and not self._runner.done()

    async def start(self) -> None:
        """Start the supervision loop and the first child; returns once the child process exists."""
        if self.running:
            raise RuntimeError("WorkerSupervisor.start() called twice")
        from jobs.db import make_engine

        self._stopping = False
        self._wake = asyncio.Event()
        self._started = asyncio.Event()
        self._engine = make_engine(self.database_url)
        try:
            await self.rescue_own_host()
        except Exception:  # noqa: BLE001 - the heartbeat rescuers bring those jobs back a little later
            log.exception("could not requeue the jobs of this host's dead workers")
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log_file = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self._runner = asyncio.create_task(self._run(), name="worker-supervisor")
        self._monitor = asyncio.create_task(self._monitor_loop(), name="worker-supervisor-monitor")
        started = asyncio.ensure_future(self._started.wait())
        await asyncio.wait({started, self._runner}, return_when=asyncio.FIRST_COMPLETED)
        started.cancel()
        if self._runner.done():
            self._runner.result()  # re-raise what stopped it

    async def stop(self, grace: float | None = None) -> int | None:
        """Stop the child and the supervision; returns the child's exit code (None if none was running).

        The child gets SIGTERM (it stops claiming and may finish its job), a second SIGTERM ``STOP_MARGIN_S``
        before ``grace`` runs out (it gives the job back uncharged at the next step), and SIGKILL when ``grace``
        seconds have passed. Call it before the event loop closes, or the child is left to notice our exit.
        """
        grace = self.stop_grace_s if grace is None else grace
        if not math.isfinite(grace) or grace < 0:
            raise ValueError(f"grace must be a finite number of seconds >= 0, got {grace!r}")
        self._stopping = True
        self._stop_grace_s = grace
        if self._wake is not None:
            self._wake.set()
        code: int | None = None
        proc = self._proc
        if proc is not None and proc.returncode is None:
            self._set_state(phase=PHASE_STOPPING)
            code = await self._terminate(proc, grace)
        if self._runner is not None:
            try:
                await self._runner
            except Exception:  # noqa: BLE001 - already logged by the runner; stopping must complete
                log.exception("supervisor loop ended with an error")
        if self._monitor is not None:
            self._monitor.cancel()
            try:
                await self._monitor
            except asyncio.CancelledError:
                pass
        if self._engine is not None:
            await self._engine.dispose()
            self._engine = None
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        self._set_state(phase=PHASE_STOPPED, pid=None, job_id=None,
                        last_exit_code=code if code is not None else self._state.last_exit_code)
        return code

    async def kill_child(self, sig: int = signal.SIGKILL) -> int | None:
        """Send ``sig`` to the live child (operators and fault tests); returns its pid, or None when none runs."""
        proc = self._proc
        if proc is None or proc.returncode is not None:
            return None
        proc.send_signal(sig)
        return proc.pid

    # -- internals -----------------------------------------------------------------------------------------------

    def _set_state(self, **changes: object) -> None:
        new = replace(self._state, **changes)  # type: ignore[arg-type]
        if (new.phase, new.job_id, new.pid) != (self._state.phase, self._state.job_id, self._state.pid):
            log.info("worker %s: %s", self.worker_id, new.describe())
        self._state = new

    def _child_env(self, restarts: int) -> dict[str, str]:
        # The worker never talks to Discord: keep the bot's secrets out of its environment (and its crash dumps).
        env = {k: v for k, v in os.environ.items() if k not in CHILD_ENV_WITHHELD}
        env.update(self.extra_env)
        env.update({
            "DATABASE_URL": self.database_url,
            "I2V_MODEL": self.model,
            "OUTPUT_DIR": str(self.output_dir),
            "WORKER_ID": self.worker_id,
            "I2V_PARENT_PID": str(os.getpid()),
            "I2V_WORKER_RESTARTS": str(restarts),
            "PYTHONUNBUFFERED": "1",
        })
        return env

    async def _spawn(self, restarts: int) -> asyncio.subprocess.Process:
        output = self._log_file if self._log_file is not None else None
        proc = await asyncio.create_subprocess_exec(
            self.python, "-m", WORKER_MODULE, *self.worker_args,
            env=self._child_env(restarts),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=output,
            stderr=output,
            start_new_session=True,
        )
        log.info("started worker %s as pid %d (restart %d)", self.worker_id, proc.pid, restarts)
        return proc

    async def _run(self) -> None:
        """Start the child; whenever it dies (and we are not stopping), release its jobs and restart it."""
        assert self._wake is not None and self._started is not None
        restarts = 0
        backoff = 0.0
        while not self._stopping:
            self._set_state(phase=PHASE_STARTING, job_id=None, restarts=restarts)
            started_at = time.monotonic()
            try:
                proc = await self._spawn(restarts)
            except OSError:
                if restarts == 0:
                    raise  # start() reports it: nothing was ever running (a bad interpreter path, say)
                log.exception("could not start the worker process")
                code: int | None = None
            else:
                self._proc = proc
                self._set_state(pid=proc.pid)
                self._started.set()
                if self._stopping:  # stop() came while the process was being created: it did not see it
                    code = await self._terminate(proc, self._stop_grace_s)
                else:
                    code = await proc.wait()
            ran_s = time.monotonic() - started_at
            self._set_state(pid=None, job_id=None, last_exit_code=code)
            if self._stopping:
                break
            log.warning("worker exited with %s after %.1f s", code, ran_s)
            await self._release_leases()
            backoff = 0.0 if ran_s >= self.backoff_reset_after_s else backoff
            backoff = next_backoff(backoff, initial_s=self.backoff_initial_s, max_s=self.backoff_max_s)
            self._set_state(phase=PHASE_CRASHED)
            try:  # only stop() sets the event: it cuts the backoff short
                await asyncio.wait_for(self._wake.wait(), timeout=backoff)
            except TimeoutError:
                pass
            restarts += 1

    async def _terminate(self, proc: asyncio.subprocess.Process, grace: float) -> int:
        """SIGTERM; a second SIGTERM ``STOP_MARGIN_S`` before the end of ``grace`` (the worker then gives its job
        back at the next step instead of finishing it); SIGKILL at the end, after which its leases are expired."""
        margin = min(STOP_MARGIN_S, grace / 2)
        for signum, wait_s in ((signal.SIGTERM, grace - margin), (signal.SIGTERM, margin)):
            try:
                proc.send_signal(signum)
            except ProcessLookupError:
                pass
            try:
                return await asyncio.wait_for(proc.wait(), timeout=wait_s)
            except TimeoutError:
                pass
        log.warning("worker pid %d did not stop within %.1f s; killing it", proc.pid, grace)
        try:
            proc.kill()
        except ProcessLookupError:
            pass
        code = await proc.wait()
        await self._release_leases()
        return code

    async def _release_leases(self) -> None:
        """The child is dead: requeue the jobs it held now (its worker id is ours alone, so this is safe)."""
        from jobs.db import make_sessionmaker
        from jobs.queue import rescue_workers

        if self._engine is None:
            return
        try:
            async with make_sessionmaker(self._engine)() as session, session.begin():
                rescued = await rescue_workers(session, [self.worker_id], why="worker process exited")
        except Exception:  # noqa: BLE001 - the heartbeat rescuers and the lease then bring the jobs back
            log.exception("could not requeue the dead worker's jobs")
            return
        if rescued:
            log.info("requeued the job(s) held by the dead worker: %s", rescued)

    async def rescue_own_host(self) -> list[int]:
        """Requeue the running jobs of this host's workers whose process is gone (run once when starting)."""
        from jobs.db import make_sessionmaker
        from jobs.workers import pid_alive, rescue_dead_on_host

        assert self._engine is not None
        async with make_sessionmaker(self._engine)() as session, session.begin():
            rescued = await rescue_dead_on_host(session, socket.gethostname(), alive=pid_alive)
        if rescued:
            log.warning("requeued jobs of this host's dead worker processes: %s", rescued)
        return rescued

    async def _monitor_loop(self) -> None:
        """Mirror the child's workers row into ``state``; kill a child whose heartbeat stopped."""
        while True:
            await asyncio.sleep(self.state_poll_interval_s)
            try:
                await self._refresh()
            except Exception:  # noqa: BLE001 - a failed read is retried next round
                log.exception("reading the worker's state failed")

    async def _refresh(self) -> None:
        from jobs.db import begin_read_only, make_sessionmaker
        from jobs.workers import find_worker

        proc = self._proc
        if self._engine is None or proc is None or proc.returncode is not None:
            return
        async with make_sessionmaker(self._engine)() as session:
            await begin_read_only(session)
            row = await find_worker(session, self.worker_id)
        if row is None or row.pid != proc.pid or proc.returncode is not None:
            return  # the new child has not registered yet
        state = row.state.value if hasattr(row.state, "value") else str(row.state)
        if self._state.phase not in (PHASE_STOPPING, PHASE_STOPPED):
            self._set_state(phase=state, job_id=row.current_job_id if state == PHASE_BUSY else None)
        age = (datetime.now(timezone.utc) - row.last_heartbeat_at).total_seconds()
        if self.hang_timeout_s and age > self.hang_timeout_s and not self._stopping:
            log.error("worker pid %d has not sent a heartbeat for %.0f s; killing it", proc.pid, age)
            try:
                proc.kill()
            except ProcessLookupError:
                pass


SUPERVISOR_PROG = "i2v-supervisor"  # how its one-line errors begin


def _settings_from_env(env: Mapping[str, str]) -> tuple[str, str, str, str | None]:
    """DATABASE_URL, I2V_MODEL, OUTPUT_DIR and WORKER_ID through config.reader (raises SettingsError)."""
    from config.reader import read

    v = read(env, ("DATABASE_URL", "I2V_MODEL", "OUTPUT_DIR", "WORKER_ID"))
    return str(v["DATABASE_URL"]), str(v["I2V_MODEL"]), str(v["OUTPUT_DIR"]), str(v["WORKER_ID"]) or None


async def _serve_forever(supervisor: WorkerSupervisor) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await supervisor.start()
    await stop.wait()
    log.info("stopping the worker")
    await supervisor.stop()


def main(argv: list[str] | None = None) -> int:
    """``python -m generator.supervisor``: supervise one worker until SIGTERM/SIGINT."""
    from config.catalog import SUPERVISOR, WORKER
    from config.helptext import settings_help
    from config.logs import setup_logging
    from config.reader import environment, report_bad_setting

    parser = argparse.ArgumentParser(
        prog="python -m generator.supervisor", description="Run and supervise one GPU worker process.",
        epilog=settings_help(SUPERVISOR) + "\n\n" + settings_help(WORKER, title="and the worker it runs reads"),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stop-grace", type=float, default=DEFAULT_STOP_GRACE_S,
                        help="seconds between SIGTERM and SIGKILL when stopping (default %(default)s)")
    args = parser.parse_args(argv)
    env = environment()
    try:
        database_url, model, output_dir, worker_id = _settings_from_env(env)
        setup_logging(env, process="supervisor")
    except ValueError as error:
        return report_bad_setting(SUPERVISOR_PROG, error)
    supervisor = WorkerSupervisor(database_url, model, output_dir, worker_id=worker_id, stop_grace_s=args.stop_grace)
    try:
        asyncio.run(_serve_forever(supervisor))
    except KeyboardInterrupt:  # a signal before the loop's handlers were installed
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
