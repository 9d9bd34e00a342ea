"""The worker's settings and the timings, limits and exit codes it runs with (constants with their units)."""

from __future__ import annotations

import math
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

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
EXIT_DATABASE = 6  # the job store could not be opened or migrated

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

