"""The worker's settings and the timings, limits and exit codes it runs with (constants with their units)."""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from config.catalog import WORKER, default_float, default_int, default_text, read_by
from config.reader import EXIT_BAD_SETTINGS, as_read, derived, environment, read
from generator.model_spaces import DEFAULT_MODEL as DEFAULT_MODEL_KEY
from generator.model_spaces import SPACES, TINY_SOURCE, enabled_models, worker_models

# The settings' defaults are declared in config.catalog; these names are what the code imports.
DEFAULT_MODEL = default_text("I2V_MODEL")
DEFAULT_OUTPUT_DIR = default_text("OUTPUT_DIR")
POLL_INTERVAL_S = default_float("I2V_POLL_INTERVAL_S")  # idle wait between claims
LEASE_S = default_float("I2V_LEASE_SECONDS")  # lease of a claim and of each progress write
GRACE_S = default_float("I2V_GRACE_SECONDS")  # a job's time to finish after SIGTERM
HEARTBEAT_INTERVAL_S = default_float("I2V_HEARTBEAT_INTERVAL_S")  # from its own thread
PROGRESS_INTERVAL_S = default_float("I2V_PROGRESS_INTERVAL_S")  # least time between writes
CANCEL_POLL_INTERVAL_S = 0.25  # seconds between two reads of the running job's cancel flag
RESCUE_INTERVAL_S = default_float("I2V_RESCUE_INTERVAL_S")  # dead workers, expired leases
WORKER_DEAD_AFTER_S = default_float("WORKER_DEAD_AFTER")  # no heartbeat: job requeued
STALL_S = default_float("I2V_STALL_SECONDS")  # no new step while generating: hung, exit
WORKER_SETTINGS = tuple(s.name for s in read_by(WORKER))
DEFAULT_UPLOAD_LIMIT_BYTES = 10 * 1024 * 1024  # bytes: Discord's default attachment limit, if a job has none
LEASE_RENEW_FRACTION = 1 / 3  # renew the lease after this fraction of it even when nothing changed
LEASE_EXPIRE_NOW_S = 0.001  # seconds: the lease a worker gives itself before exiting on a sticky CUDA error
MAX_DETAIL_CHARS = 4000  # characters of traceback kept in a failed job's error_detail

EXIT_OK = 0
EXIT_CONFIG = EXIT_BAD_SETTINGS  # a setting or fault variable is invalid
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
MSG_TOO_LARGE = (
    "The video could not be made small enough for this channel's upload limit. Try fewer frames or a lower resolution."
)
MSG_INTERNAL = "Something went wrong while making this video. The error was recorded for the admins; please try again."
NOTE_LOW_MEMORY = (
    "Ran out of GPU memory at step {step}/{total}; retried once in low-memory mode (VAE tiling, CPU offload)."
)


# WorkerSettings field -> the setting it is, as read (the fields computed from settings are in from_env)
AS_READ = {
    "affinity_max_skips": "MODEL_AFFINITY_MAX_SKIPS",
    "database_url": "DATABASE_URL",
    "model": "I2V_MODEL",
    "poll_interval_s": "I2V_POLL_INTERVAL_S",
    "lease_s": "I2V_LEASE_SECONDS",
    "grace_s": "I2V_GRACE_SECONDS",
    "heartbeat_interval_s": "I2V_HEARTBEAT_INTERVAL_S",
    "progress_interval_s": "I2V_PROGRESS_INTERVAL_S",
    "rescue_interval_s": "I2V_RESCUE_INTERVAL_S",
    "stall_s": "I2V_STALL_SECONDS",
    "dead_after_s": "WORKER_DEAD_AFTER",
    "parent_pid": "I2V_PARENT_PID",
    "safety_model": "SAFETY_MODEL",
    "safety_threshold": "SAFETY_THRESHOLD",
    "safety_unsafe_label": "SAFETY_UNSAFE_LABEL",
}


@dataclass(frozen=True)
class WorkerSettings:
    """Everything the worker reads from the environment (declared in :mod:`config.catalog`, read through
    :mod:`config.reader`, so ``.env`` is honoured as in the bot).

    ``DATABASE_URL`` (default ``jobs.db.DEFAULT_DATABASE_URL``), ``I2V_MODEL`` (default ``ali-vilab/i2vgen-xl``;
    ``tiny`` for tests), ``I2V_DEVICE`` (default: CUDA when available), ``OUTPUT_DIR`` (default ``outputs``),
    ``WORKER_ID`` (default ``<host>-<pid>``), and the timings in seconds ``I2V_POLL_INTERVAL_S``,
    ``I2V_LEASE_SECONDS``, ``I2V_GRACE_SECONDS``, ``I2V_HEARTBEAT_INTERVAL_S``, ``I2V_PROGRESS_INTERVAL_S``,
    ``I2V_RESCUE_INTERVAL_S``, ``I2V_STALL_SECONDS``, ``WORKER_DEAD_AFTER`` (defaults: the module constants).
    ``I2V_MODELS`` and ``WORKER_MODELS`` give ``models``, the model keys it may load (``generator.model_spaces``),
    and ``I2V_MODEL``, ``I2V_MODEL_WAN``, ``I2V_MODEL_LTX`` their ``sources`` (all tiny with ``I2V_MODEL=tiny``);
    ``MODEL_AFFINITY_MAX_SKIPS`` bounds its preference for the model it holds.
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
    safety_model: str = default_text("SAFETY_MODEL")  # the image classifier (generator.safety); none = off
    safety_threshold: float = default_float("SAFETY_THRESHOLD")
    safety_unsafe_label: str = default_text("SAFETY_UNSAFE_LABEL")
    models: tuple[str, ...] = (DEFAULT_MODEL_KEY,)  # what it may load: I2V_MODELS narrowed by WORKER_MODELS
    sources: Mapping[str, str] = field(default_factory=dict)  # model key -> its hub id or folder (or tiny)
    affinity_max_skips: int = default_int("MODEL_AFFINITY_MAX_SKIPS")  # the claim's bound (jobs.transitions)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> WorkerSettings:
        """Read the settings from ``env`` (default: ``.env`` and ``os.environ``); raises :class:`SettingsError`
        naming the first bad variable."""
        v: dict[str, Any] = read(environment(env), WORKER_SETTINGS)
        models = derived(
            "WORKER_MODELS", lambda: worker_models(enabled_models(v["I2V_MODELS"], v["I2V_MODEL"]), v["WORKER_MODELS"])
        )
        tiny = v["I2V_MODEL"].strip().lower() == TINY_SOURCE
        sources = {key: TINY_SOURCE if tiny else str(v[SPACES[key].source_setting]) for key in models}
        return cls(
            models=models,
            sources=sources,
            device=v["I2V_DEVICE"] or None,
            output_dir=Path(v["OUTPUT_DIR"]),
            worker_id=v["WORKER_ID"] or f"{socket.gethostname()}-{os.getpid()}",
            **as_read(v, AS_READ),
        )

    def source_of(self, key: str) -> str:
        """Where model ``key`` is loaded from: its setting's value, ``I2V_MODEL`` for I2VGen-XL when built
        directly, tiny for every model with ``I2V_MODEL=tiny``."""
        if key in self.sources:
            return self.sources[key]
        return TINY_SOURCE if self.model.strip().lower() == TINY_SOURCE else self.model
