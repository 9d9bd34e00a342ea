"""One claimed job as the worker sees it: what the claim copied out (``ClaimedJob``), what the generation thread and
the event loop share while it runs (``JobRun``), and the helpers both sides use (daemon threads, CUDA error kinds)."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from generator.faults import FaultPlan
from generator.worker_settings import MAX_DETAIL_CHARS, PHASE_DECODING, PHASE_DENOISING, PHASE_PREPARING

if TYPE_CHECKING:
    from generator.params import GenerationParams

log = logging.getLogger("generator.worker")

T = TypeVar("T")


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
    params: GenerationParams
    width: int | None
    height: int | None
    upload_limit_bytes: int

    @property
    def steps(self) -> int:
        return self.params.steps


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


def _exit_now(code: int) -> None:
    """Flush the logs and leave at once, without the interpreter's teardown of torch and diffusers (about a second
    on a busy CPU, which would eat into the supervisor's stop grace; after a stall the hung GPU call would block it)."""
    log.info("worker exiting with code %d", code)
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
