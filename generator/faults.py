"""Test-only fault hooks for the worker process, read from the environment.

These exist so the test suite can drive the real worker process (``python -m generator.worker``) into the
situations it must survive: a kill while the model loads, mid-denoising or while encoding, an out-of-memory error
at a chosen step, a sticky CUDA error. **None of them is set in production**; every variable is named
``I2V_FAULT_*`` so a deployment that sets one by accident is easy to spot, and the worker logs a warning at start-up
when any is active.

Variables (all optional; unset or empty means "off"):

- ``I2V_FAULT_SLEEP_LOAD`` (seconds): sleep before loading the model, so a test can kill the process while it is in
  the "loading" state.
- ``I2V_FAULT_SLEEP_PER_STEP`` (seconds): sleep in every denoising step callback, so the tiny model is slow enough
  for a test to act mid-denoising (kill, SIGTERM, cancel).
- ``I2V_FAULT_SLEEP_ENCODE`` (seconds): sleep just before encoding the MP4 (phase "encoding").
- ``I2V_FAULT_OOM_AT_STEP`` (step number, 1-based): raise ``torch.cuda.OutOfMemoryError`` from the step callback at
  that step, as a real allocation failure inside the UNet would.
- ``I2V_FAULT_OOM_TIMES`` (default 1): how many generation runs of the same job (in this process) get the
  out-of-memory error; 1 means the worker's low-memory retry succeeds, 2 means the retry fails too. Either one
  count for every job (``2``) or per job (``11:1,12:2``; jobs not named get none).
- ``I2V_FAULT_CUDA_AT_STEP`` (step number): raise a sticky, non-OOM CUDA ``RuntimeError`` at that step, on the job's
  first attempt only (so the retry in a fresh process can succeed).
- ``I2V_FAULT_HANG_AT_STEP`` (step number): block the generation thread at that step, on the job's first attempt
  only, as a hung GPU kernel would (the worker's stall check must end the process).
- ``I2V_FAULT_FREEZE_AT_STEP`` (step number): stop the whole process with SIGSTOP at that step, on the job's first
  attempt only, so its heartbeat stops too (the supervisor's heartbeat check must kill it).
- ``I2V_FAULT_UNSAFE_INPUT`` / ``I2V_FAULT_UNSAFE_OUTPUT`` (``1``): with the tiny model, the image safety check's
  tiny classifier says "nsfw" for the input image / the video's frames (:mod:`generator.safety`); otherwise "normal".
- ``I2V_FAULT_JOB_IDS`` (comma-separated job ids): limit the OOM, CUDA and hang faults to these jobs; unset = every
  job.

``I2V_FAULT_OOM_AT_STEP``, ``I2V_FAULT_CUDA_AT_STEP``, ``I2V_FAULT_HANG_AT_STEP`` and ``I2V_FAULT_FREEZE_AT_STEP`` take
either one step for every job (``3``) or steps per job (``7:2,9:4``: job 7 at step 2, job 9 at step 4; other jobs get
none).

This module imports no torch at import time; :meth:`FaultPlan.on_step` imports it only when it has to raise.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

ENV_PREFIX = "I2V_FAULT_"
SIMULATED_CUDA_ERROR_MESSAGE = (
    "CUDA error: an illegal memory access was encountered (simulated by I2V_FAULT_CUDA_AT_STEP)"
)
HANG_S = 3600.0  # seconds a simulated hung GPU call blocks (the worker's stall check ends the process first)
SIMULATED_OOM_MESSAGE = "CUDA out of memory. Tried to allocate 2.00 GiB (simulated by I2V_FAULT_OOM_AT_STEP)"


class FaultConfigError(ValueError):
    """An ``I2V_FAULT_*`` variable holds something that is not a valid value; the message names it."""


def _number_env(
    env: Mapping[str, str], name: str, convert: Callable[[str], float], what: str, minimum: int, unit: str = ""
) -> float | None:
    """The number ``name`` holds (None when unset or empty), ``convert``-ed, at least ``minimum``; raises
    :class:`FaultConfigError` saying it must be ``what`` (``unit``: " seconds" and the like, for the message)."""
    raw = env.get(name, "").strip()
    if not raw:
        return None
    try:
        value = convert(raw)
    except ValueError:
        raise FaultConfigError(f"{name} must be {what}, got {raw!r}") from None
    if value < minimum:
        raise FaultConfigError(f"{name} must be >= {minimum}{unit}, got {raw!r}")
    return value


def _float_env(env: Mapping[str, str], name: str) -> float:
    value = _number_env(env, name, float, "a number of seconds", 0, " seconds")
    return 0.0 if value is None else value


def _int_env(env: Mapping[str, str], name: str, default: int | None) -> int | None:
    value = _number_env(env, name, int, "a whole number", 1)
    return default if value is None else int(value)


def _per_job_env(env: Mapping[str, str], name: str, default: int | None) -> int | dict[int, int] | None:
    """``"3"`` (the same for every job) or ``"7:2,9:4"`` (job id: value); values must be >= 1."""
    raw = env.get(name, "").strip()
    if ":" not in raw:
        return _int_env(env, name, default)
    values: dict[int, int] = {}
    for part in raw.split(","):
        job, _, value = part.partition(":")
        try:
            values[int(job)] = int(value)
        except ValueError:
            raise FaultConfigError(f"{name} must be a number or 'job:number,...' pairs, got {raw!r}") from None
        if values[int(job)] < 1:
            raise FaultConfigError(f"{name} values must be >= 1, got {raw!r}")
    return values


def _flag_env(env: Mapping[str, str], name: str) -> bool:
    raw = env.get(name, "").strip()
    if raw not in ("", "0", "1"):
        raise FaultConfigError(f"{name} must be 1 or 0, got {raw!r}")
    return raw == "1"


def _for_job(setting: int | dict[int, int] | None, job_id: int) -> int | None:
    if isinstance(setting, dict):
        return setting.get(job_id)
    return setting


@dataclass
class FaultPlan:
    """The faults to inject in this worker process (all off by default)."""

    sleep_load_s: float = 0.0
    sleep_per_step_s: float = 0.0
    sleep_encode_s: float = 0.0
    oom_at_step: int | dict[int, int] | None = None
    oom_times: int | dict[int, int] = 1
    cuda_at_step: int | dict[int, int] | None = None
    hang_at_step: int | dict[int, int] | None = None
    freeze_at_step: int | dict[int, int] | None = None
    job_ids: frozenset[int] | None = None
    unsafe_input: bool = False
    unsafe_output: bool = False
    _oom_raised: dict[int, int] = field(default_factory=dict, repr=False)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> FaultPlan:
        """Read the ``I2V_FAULT_*`` variables; raises :class:`FaultConfigError` naming a bad one."""
        env = os.environ if env is None else env
        raw_ids = env.get(ENV_PREFIX + "JOB_IDS", "").strip()
        job_ids: frozenset[int] | None = None
        if raw_ids:
            try:
                job_ids = frozenset(int(part) for part in raw_ids.split(",") if part.strip())
            except ValueError:
                raise FaultConfigError(
                    f"{ENV_PREFIX}JOB_IDS must be comma-separated job ids, got {raw_ids!r}"
                ) from None
        return cls(
            sleep_load_s=_float_env(env, ENV_PREFIX + "SLEEP_LOAD"),
            sleep_per_step_s=_float_env(env, ENV_PREFIX + "SLEEP_PER_STEP"),
            sleep_encode_s=_float_env(env, ENV_PREFIX + "SLEEP_ENCODE"),
            oom_at_step=_per_job_env(env, ENV_PREFIX + "OOM_AT_STEP", None),
            oom_times=_per_job_env(env, ENV_PREFIX + "OOM_TIMES", 1) or 1,
            cuda_at_step=_per_job_env(env, ENV_PREFIX + "CUDA_AT_STEP", None),
            hang_at_step=_per_job_env(env, ENV_PREFIX + "HANG_AT_STEP", None),
            freeze_at_step=_per_job_env(env, ENV_PREFIX + "FREEZE_AT_STEP", None),
            job_ids=job_ids,
            unsafe_input=_flag_env(env, ENV_PREFIX + "UNSAFE_INPUT"),
            unsafe_output=_flag_env(env, ENV_PREFIX + "UNSAFE_OUTPUT"),
        )

    @property
    def active(self) -> bool:
        """True when any fault is switched on."""
        return bool(
            self.sleep_load_s
            or self.sleep_per_step_s
            or self.sleep_encode_s
            or self.oom_at_step is not None
            or self.cuda_at_step is not None
            or self.hang_at_step is not None
            or self.freeze_at_step is not None
            or self.unsafe_input
            or self.unsafe_output
        )

    def _targets(self, job_id: int) -> bool:
        return self.job_ids is None or job_id in self.job_ids

    def before_load(self) -> None:
        """Called by the worker just before it loads the model."""
        if self.sleep_load_s:
            time.sleep(self.sleep_load_s)

    def before_encode(self) -> None:
        """Called by the worker just before it encodes the MP4."""
        if self.sleep_encode_s:
            time.sleep(self.sleep_encode_s)

    def on_step(self, job_id: int, attempt: int, step: int) -> None:
        """Called from the denoising step callback; sleeps and/or raises the configured errors."""
        if self.sleep_per_step_s:
            time.sleep(self.sleep_per_step_s)
        if not self._targets(job_id):
            return
        if step == _for_job(self.oom_at_step, job_id):
            raised = self._oom_raised.get(job_id, 0)
            if raised < (_for_job(self.oom_times, job_id) or 0):
                self._oom_raised[job_id] = raised + 1
                import torch  # the worker process has torch loaded already; imported here to keep this module light

                raise torch.cuda.OutOfMemoryError(SIMULATED_OOM_MESSAGE)
        if attempt == 1 and step == _for_job(self.cuda_at_step, job_id):
            raise RuntimeError(SIMULATED_CUDA_ERROR_MESSAGE)
        if attempt == 1 and step == _for_job(self.hang_at_step, job_id):
            time.sleep(HANG_S)
        if attempt == 1 and step == _for_job(self.freeze_at_step, job_id):
            os.kill(os.getpid(), signal.SIGSTOP)
