"""Supervise one GPU worker process: start it, restart it with backoff when it dies, stop it cleanly (no torch).

The bot uses :class:`WorkerSupervisor` in ``WORKER=embedded`` mode; ``python -m generator.supervisor`` runs it on
its own (same environment variables as the worker). This module never imports torch, diffusers or discord.
Modules: :mod:`generator.worker_child` (the child's environment, start and stop), :mod:`generator.supervisor_state`
(the state record and the restart policy), :mod:`generator.supervisor_store` (the job-store reads and writes).

Restarts. When the child dies while we are not stopping, the jobs it held are requeued at once (the attempt
counted; the child's worker id is ours alone, so this is safe), and a new child starts after an exponential
backoff (:class:`~generator.supervisor_state.RestartPolicy`). A child whose heartbeat in the ``workers`` table is
older than ``HANG_TIMEOUT_S`` is killed (a hung GPU call cannot be interrupted otherwise).

Start failures. A child that cannot start (a bad setting, the store cannot be opened, the model cannot be loaded)
writes one line to its reason file and exits with a start-failure code; we log that line once per attempt (no
traceback), record it in the child's registry row, and expose it as :attr:`WorkerSupervisor.failure_reason` until
a child is idle. After ``unavailable_after`` failed starts in a row the phase is ``unavailable``: retries go on,
slowly (up to ``unavailable_retry_s`` apart), and the row says since when.

Stopping. ``stop(grace)``: SIGTERM, and the running job may finish within ``grace`` seconds (the child is told the
same ``I2V_GRACE_SECONDS``); then it is given back and the child exits, or is killed a few seconds later.

State. :attr:`WorkerSupervisor.state` reads the child's ``workers`` row (refreshed every
``STATE_POLL_INTERVAL_S``): phase ``starting``/``loading``/``idle``/``busy`` (with the job id)/``stopping``/
``stopped``/``crashed`` (waiting to restart)/``unavailable``, the restart count, the pid, the last exit code and
the reason of the last failed start.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Unpack

from generator.startfailure import START_FAILURE_CODES, describe, read_exit_reason
from generator.supervisor_state import (  # re-exported: callers import the state names from here
    PHASE_BUSY,
    PHASE_CRASHED,
    PHASE_STARTING,
    PHASE_STOPPED,
    PHASE_STOPPING,
    PHASE_UNAVAILABLE,
    READY_PHASES,
    RestartPolicy,
    StateChanges,
    SupervisorState,
)
from generator.supervisor_store import read_row, record_failure, record_stopped, release_leases, rescue_own_host
from generator.worker_child import child_env, spawn, terminate
from generator.worker_settings import GRACE_S

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

log = logging.getLogger("generator.supervisor")


DEFAULT_STOP_GRACE_S = GRACE_S  # seconds a running job may still take when stopping (I2V_GRACE_SECONDS)
HANG_TIMEOUT_S = 180.0  # seconds without a heartbeat before a live child is killed; 0 disables the check
STATE_POLL_INTERVAL_S = 1.0  # seconds between two reads of the child's workers row


class WorkerSupervisor:
    """Runs ``python -m generator.worker`` as a child, restarting it with backoff; use from any asyncio loop.

    ``await start()`` returns once the first child is started; ``await stop(grace)`` stops it (see
    :func:`generator.worker_child.terminate`) and waits. ``extra_env`` is added to the child's environment (e.g.
    timings); ``log_path`` appends the child's output to a file instead of inheriting our stderr. ``policy`` holds
    the restart timings; the ``backoff_*`` keywords override its fields.
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
        policy: RestartPolicy | None = None,
        backoff_initial_s: float | None = None,
        backoff_max_s: float | None = None,
        backoff_reset_after_s: float | None = None,
        hang_timeout_s: float = HANG_TIMEOUT_S,
        state_poll_interval_s: float = STATE_POLL_INTERVAL_S,
        python: str = sys.executable,
    ) -> None:
        if not isinstance(database_url, str) or not database_url.strip():
            raise ValueError(f"database_url must be a non-empty string, got {database_url!r}")
        if not isinstance(model, str) or not model.strip():
            raise ValueError(f"model must be a non-empty string, got {model!r}")
        for name, value in (("stop_grace_s", stop_grace_s), ("hang_timeout_s", hang_timeout_s)):
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number of seconds >= 0, got {value!r}")
        if not math.isfinite(state_poll_interval_s) or state_poll_interval_s <= 0:
            raise ValueError(f"state_poll_interval_s must be > 0 seconds, got {state_poll_interval_s!r}")
        overrides: dict[str, Any] = {
            name: value
            for name, value in (
                ("backoff_initial_s", backoff_initial_s),
                ("backoff_max_s", backoff_max_s),
                ("backoff_reset_after_s", backoff_reset_after_s),
            )
            if value is not None
        }
        self.policy = replace(policy or RestartPolicy(), **overrides)  # validates the numbers
        self.database_url = database_url
        self.model = model
        self.output_dir = Path(output_dir)
        self.worker_id = worker_id or f"{socket.gethostname()}-sup{os.getpid()}"
        self.extra_env = dict(extra_env or {})
        self.worker_args = list(worker_args)
        self.log_path = Path(log_path) if log_path is not None else None
        self.stop_grace_s = stop_grace_s
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
        self._scratch: Path | None = None  # holds the children's reason files

    # -- public ------------------------------------------------------------------------------------------------

    @property
    def state(self) -> SupervisorState:
        """The last known state (refreshed from the worker's row every ``state_poll_interval_s``)."""
        return self._state

    @property
    def failure_reason(self) -> str | None:
        """Why no worker can start right now (the last failed start's one line), or None once a child is idle."""
        return self._state.failure_reason

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
            await rescue_own_host(self._engine)
        except Exception as exc:  # noqa: BLE001 - the heartbeat rescuers bring those jobs back a little later
            log.warning("could not requeue the jobs of this host's dead workers: %s", describe(exc))
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log_file = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self._scratch = Path(tempfile.mkdtemp(prefix="i2v-supervisor-"))
        self._runner = asyncio.create_task(self._run(), name="worker-supervisor")
        self._monitor = asyncio.create_task(self._monitor_loop(), name="worker-supervisor-monitor")
        started = asyncio.ensure_future(self._started.wait())
        await asyncio.wait({started, self._runner}, return_when=asyncio.FIRST_COMPLETED)
        started.cancel()
        if self._runner.done():
            self._runner.result()  # re-raise what stopped it

    async def stop(self, grace: float | None = None) -> int | None:
        """Stop the child and the supervision; returns the child's exit code (None if none was running).

        The running job may go on for ``grace`` seconds (default ``stop_grace_s``); then it is given back
        uncharged at the next step, and the child is killed if it has not exited a few seconds later (its leases
        are then released). Call it before the event loop closes, or the child is left to notice our exit.
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
            except Exception:
                log.exception("supervisor loop ended with an error")
        if self._monitor is not None:
            self._monitor.cancel()
            try:
                await self._monitor
            except asyncio.CancelledError:
                pass
        if self._engine is not None:
            if code is None and self._state.failure_reason:
                await record_stopped(self._engine, self.worker_id)  # no child wrote its final state
            await self._engine.dispose()
            self._engine = None
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None
        self._set_state(
            phase=PHASE_STOPPED,
            pid=None,
            job_id=None,
            last_exit_code=code if code is not None else self._state.last_exit_code,
        )
        return code

    # -- internals -----------------------------------------------------------------------------------------------

    def _set_state(self, **changes: Unpack[StateChanges]) -> None:
        new = replace(self._state, **changes)
        if (new.phase, new.job_id, new.pid) != (self._state.phase, self._state.job_id, self._state.pid):
            log.info("worker %s: %s", self.worker_id, new.describe())
        self._state = new

    @property
    def _reason_file(self) -> Path:
        assert self._scratch is not None
        return self._scratch / "exit-reason"

    async def _spawn(self, restarts: int) -> asyncio.subprocess.Process:
        self._reason_file.unlink(missing_ok=True)
        env = child_env(
            database_url=self.database_url,
            model=self.model,
            output_dir=self.output_dir,
            worker_id=self.worker_id,
            restarts=restarts,
            grace_s=self.stop_grace_s,
            reason_file=self._reason_file,
            extra_env=self.extra_env,
        )
        proc = await spawn(self.python, self.worker_args, env, self._log_file)
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
            except OSError as exc:
                if restarts == 0:
                    raise  # start() reports it: nothing was ever running (a bad interpreter path, say)
                log.error("could not start the worker process: %s", exc)
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
            failed_start = await self._after_exit(code, ran_s)
            backoff = self.policy.next_wait(backoff, ran_s=ran_s, start_failures=self._state.start_failures)
            if failed_start:
                self._say_retry(code, ran_s, backoff)
            try:  # only stop() sets the event: it cuts the backoff short
                await asyncio.wait_for(self._wake.wait(), timeout=backoff)
            except TimeoutError:
                pass
            restarts += 1

    async def _after_exit(self, code: int | None, ran_s: float) -> bool:
        """The child died: release its jobs; a failed start is counted and recorded with its reason (True)."""
        reason = read_exit_reason(self._reason_file)
        if code is not None and code in START_FAILURE_CODES and self._state.phase not in READY_PHASES:
            failures = self._state.start_failures + 1
            reason = reason or f"the worker exited with status {code} while starting"
            unavailable = self.policy.unavailable(failures)
            self._set_state(
                phase=PHASE_UNAVAILABLE if unavailable else PHASE_CRASHED,
                failure_reason=reason,
                start_failures=failures,
            )
            if self._engine is not None:
                await record_failure(
                    self._engine, self.worker_id, pid=os.getpid(), reason=reason, unavailable=unavailable
                )
                await release_leases(self._engine, self.worker_id)
            return True
        phase = PHASE_UNAVAILABLE if self._state.phase == PHASE_UNAVAILABLE else PHASE_CRASHED
        self._set_state(phase=phase)
        log.warning("worker exited with %s after %.1f s%s", code, ran_s, f": {reason}" if reason else "")
        if self._engine is not None:
            await release_leases(self._engine, self.worker_id)
        return False

    def _say_retry(self, code: int | None, ran_s: float, wait_s: float) -> None:
        """One log line per failed start, with its reason (the child logged none)."""
        state = self._state
        if state.phase == PHASE_UNAVAILABLE:
            log.error(
                "video generation is unavailable: the worker could not start (%d failed starts in a row, "
                "exit %s): %s; trying again in %.1f s",
                state.start_failures,
                code,
                state.failure_reason,
                wait_s,
            )
        else:
            log.error(
                "the worker could not start (exit %s after %.1f s): %s; trying again in %.1f s",
                code,
                ran_s,
                state.failure_reason,
                wait_s,
            )

    async def _terminate(self, proc: asyncio.subprocess.Process, grace: float) -> int:
        code, killed = await terminate(proc, grace)
        if killed and self._engine is not None:
            await release_leases(self._engine, self.worker_id)
        return code

    async def _monitor_loop(self) -> None:
        """Mirror the child's workers row into ``state``; kill a child whose heartbeat stopped. A read that fails
        (the store unreachable, or not migrated yet) is logged in one line when its message changes."""
        last_error = ""
        while True:
            await asyncio.sleep(self.state_poll_interval_s)
            try:
                await self._refresh()
                last_error = ""
            except Exception as exc:  # noqa: BLE001 - a failed read is retried next round
                error = describe(exc)
                if error != last_error:
                    log.warning("reading the worker's state failed (retrying): %s", error)
                last_error = error

    async def _refresh(self) -> None:
        proc = self._proc
        if self._engine is None or proc is None or proc.returncode is not None:
            return
        row = await read_row(self._engine, self.worker_id)
        if row is None or row.pid != proc.pid or proc.returncode is not None:
            return  # the new child has not registered yet
        state = row.state.value if hasattr(row.state, "value") else str(row.state)
        if self._state.phase not in (PHASE_STOPPING, PHASE_STOPPED):
            changes: StateChanges = {"phase": state, "job_id": row.current_job_id if state == PHASE_BUSY else None}
            if state in READY_PHASES:  # started: the failure record is over (the row cleared it too)
                changes.update({"failure_reason": None, "start_failures": 0})
            self._set_state(**changes)
        age = (datetime.now(UTC) - row.last_heartbeat_at).total_seconds()
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
    from config.reader import environment, read, report_bad_setting

    parser = argparse.ArgumentParser(
        prog="python -m generator.supervisor",
        description="Run and supervise one GPU worker process.",
        epilog=settings_help(SUPERVISOR) + "\n\n" + settings_help(WORKER, title="and the worker it runs reads"),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--stop-grace",
        type=float,
        default=None,
        help="seconds a running job may still take when stopping (default: I2V_GRACE_SECONDS, "
        f"{DEFAULT_STOP_GRACE_S:g})",
    )
    args = parser.parse_args(argv)
    env = environment()
    try:
        database_url, model, output_dir, worker_id = _settings_from_env(env)
        setup_logging(env, process="supervisor")
        grace_s = (
            args.stop_grace
            if args.stop_grace is not None
            else float(str(read(env, ["I2V_GRACE_SECONDS"])["I2V_GRACE_SECONDS"]))
        )
        policy = RestartPolicy.from_env(env)
    except ValueError as error:
        return report_bad_setting(SUPERVISOR_PROG, error)
    supervisor = WorkerSupervisor(
        database_url, model, output_dir, worker_id=worker_id, stop_grace_s=grace_s, policy=policy
    )
    try:
        asyncio.run(_serve_forever(supervisor))
    except KeyboardInterrupt:  # a signal before the loop's handlers were installed
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
