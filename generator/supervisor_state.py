"""What the worker supervisor knows and decides: its state record and the restart back-off (no torch, no I/O).

Restarts back off exponentially: ``backoff_initial_s``, doubling up to ``backoff_max_s``, reset once a child has
run for ``backoff_reset_after_s``. A child that exits with a start-failure code (``generator.startfailure``: a bad
setting, the store cannot be opened, the model cannot be loaded) has *failed to start*; after
``unavailable_after`` such failures in a row the supervisor is **unavailable**: it goes on retrying, but the
back-off keeps doubling up to ``unavailable_retry_s`` (a fixed config and a restart bring it back at once). The
reason of the last failed start (one line) is kept from the first failure until a child is idle.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypedDict

PHASE_STARTING = "starting"
PHASE_LOADING = "loading"
PHASE_IDLE = "idle"
PHASE_BUSY = "busy"
PHASE_STOPPING = "stopping"
PHASE_STOPPED = "stopped"
PHASE_CRASHED = "crashed"  # waiting to restart after a crash or a failed start
PHASE_UNAVAILABLE = "unavailable"  # repeated failed starts: retrying slowly
READY_PHASES = frozenset({PHASE_IDLE, PHASE_BUSY})

BACKOFF_INITIAL_S = 1.0  # seconds before the first restart
BACKOFF_MAX_S = 60.0  # seconds, the longest wait between restarts while not unavailable
BACKOFF_RESET_AFTER_S = 120.0  # a child that ran this many seconds resets the backoff
UNAVAILABLE_AFTER = 3  # failed starts in a row after which the supervisor is unavailable
UNAVAILABLE_RETRY_S = 600.0  # seconds, the longest wait between two tries while unavailable

ENV_BACKOFF_INITIAL = "I2V_RESTART_BACKOFF_SECONDS"
ENV_BACKOFF_MAX = "I2V_RESTART_BACKOFF_MAX_SECONDS"
ENV_UNAVAILABLE_AFTER = "I2V_UNAVAILABLE_AFTER_FAILURES"
ENV_UNAVAILABLE_RETRY = "I2V_UNAVAILABLE_RETRY_SECONDS"


@dataclass(frozen=True)
class SupervisorState:
    """What the supervisor knows about its worker.

    ``phase``: starting | loading | idle | busy | stopping | stopped | crashed | unavailable; ``job_id``: the job
    being made when busy; ``restarts``: how many times the child was restarted; ``pid``: the live child's pid
    (None when none); ``last_exit_code``: the previous child's exit status (negative: killed by that signal);
    ``failure_reason``: why the last start failed (one line), until a child is idle; ``start_failures``: failed
    starts in a row.
    """

    phase: str
    job_id: int | None
    restarts: int
    pid: int | None
    last_exit_code: int | None = None
    worker_id: str = ""
    failure_reason: str | None = None
    start_failures: int = 0

    def describe(self) -> str:
        """A one-line human summary, e.g. ``busy with job 12 (pid 4242, 1 restart)``."""
        what = f"busy with job {self.job_id}" if self.phase == PHASE_BUSY and self.job_id is not None else self.phase
        pid = f"pid {self.pid}, " if self.pid else ""
        return f"{what} ({pid}{self.restarts} restart{'s' if self.restarts != 1 else ''})"


class StateChanges(TypedDict, total=False):
    """Fields of :class:`SupervisorState` to change, as keywords of ``dataclasses.replace``."""

    phase: str
    job_id: int | None
    restarts: int
    pid: int | None
    last_exit_code: int | None
    worker_id: str
    failure_reason: str | None
    start_failures: int


def next_backoff(previous_s: float, *, initial_s: float, max_s: float) -> float:
    """The wait before the next restart: ``initial_s``, then doubling, capped at ``max_s``."""
    if previous_s <= 0:
        return min(initial_s, max_s)
    return min(previous_s * 2, max_s)


@dataclass(frozen=True)
class RestartPolicy:
    """The supervisor's restart timings (seconds) and when it calls itself unavailable."""

    backoff_initial_s: float = BACKOFF_INITIAL_S
    backoff_max_s: float = BACKOFF_MAX_S
    backoff_reset_after_s: float = BACKOFF_RESET_AFTER_S
    unavailable_after: int = UNAVAILABLE_AFTER
    unavailable_retry_s: float = UNAVAILABLE_RETRY_S

    def __post_init__(self) -> None:
        for name in ("backoff_initial_s", "backoff_max_s", "backoff_reset_after_s", "unavailable_retry_s"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number of seconds >= 0, got {value!r}")
        if (
            isinstance(self.unavailable_after, bool)
            or not isinstance(self.unavailable_after, int)
            or self.unavailable_after < 1
        ):
            raise ValueError(f"unavailable_after must be a whole number >= 1, got {self.unavailable_after!r}")

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> RestartPolicy:
        """Read ``I2V_RESTART_BACKOFF_SECONDS``, ``I2V_RESTART_BACKOFF_MAX_SECONDS``,
        ``I2V_UNAVAILABLE_AFTER_FAILURES`` and ``I2V_UNAVAILABLE_RETRY_SECONDS`` through the one settings reader
        (their defaults are declared in ``config.catalog``); raises ``config.reader.SettingsError`` naming the
        variable."""
        from config.reader import read

        v: dict[str, Any] = read(
            env, (ENV_BACKOFF_INITIAL, ENV_BACKOFF_MAX, ENV_UNAVAILABLE_AFTER, ENV_UNAVAILABLE_RETRY)
        )
        return cls(
            backoff_initial_s=float(v[ENV_BACKOFF_INITIAL]),
            backoff_max_s=float(v[ENV_BACKOFF_MAX]),
            unavailable_after=int(v[ENV_UNAVAILABLE_AFTER]),
            unavailable_retry_s=float(v[ENV_UNAVAILABLE_RETRY]),
        )

    def next_wait(self, previous_s: float, *, ran_s: float, start_failures: int) -> float:
        """The wait before the next start, after a child that ran ``ran_s`` seconds; ``start_failures``: failed
        starts in a row including this one (0 when the child had started)."""
        if start_failures == 0 and ran_s >= self.backoff_reset_after_s:
            previous_s = 0.0
        cap = self.backoff_max_s
        if self.unavailable(start_failures):
            cap = max(cap, self.unavailable_retry_s)
        return next_backoff(previous_s, initial_s=self.backoff_initial_s, max_s=cap)

    def unavailable(self, start_failures: int) -> bool:
        """Whether this many failed starts in a row make the supervisor unavailable."""
        return start_failures >= self.unavailable_after
