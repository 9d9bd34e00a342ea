"""The first download of a hub model, with its progress told: the log gets a line every ``LOG_EVERY_FRACTION``,
and the callback set by :func:`reporting_downloads` (the worker's registry row) gets bytes done and in all, at
most every ``REPORT_INTERVAL_S`` or each ``REPORT_EVERY_FRACTION``.

diffusers' ``from_pretrained`` downloads through huggingface_hub without a progress hook; so the files a pipeline
loads (the root ``model_index.json`` and, in each component folder it names, the configs, tokenizer files and
the weights: the fp16 safetensors where the folder has them, else the plain safetensors) are fetched here first
with ``snapshot_download(..., tqdm_class=...)``, and the pipeline loads from the returned local folder.
huggingface_hub announces byte totals per file as each file starts (several at once), so the total grows early
on; files already in the local cache are neither counted nor fetched again.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import PurePosixPath
from typing import Any

from tqdm.auto import tqdm

from config.units import BYTES_PER_GB
from generator.model_files import MODEL_INDEX, components

log = logging.getLogger("generator.download")

REPORT_INTERVAL_S: float = 2.0  # the callback hears at most this often ...
REPORT_EVERY_FRACTION: float = 0.01  # ... unless the download moved on by this fraction since it last heard
LOG_EVERY_FRACTION: float = 0.1  # a log line each time the download passes another tenth
WEIGHT_SUFFIXES: tuple[str, ...] = (".safetensors", ".bin", ".ckpt", ".pt", ".pth", ".msgpack", ".h5", ".onnx", ".gguf")
# diffusers' variant naming: unet/x.fp16.safetensors, and x.fp16-00001-of-00002.safetensors for shards
FP16_MARKS: tuple[str, ...] = (".fp16.", ".fp16-")

ProgressCallback = Callable[[int, int], None]
"""Called with (bytes done, bytes in all) of the download under way."""

_reporter_lock = threading.Lock()
_reporter: ProgressCallback | None = None  # the callback while reporting_downloads() holds


@contextmanager
def reporting_downloads(callback: ProgressCallback) -> Iterator[None]:
    """Downloads made inside this block (by any thread: a worker loads on a thread of its own) report to
    ``callback``. One block at a time per process."""
    global _reporter
    with _reporter_lock:
        previous, _reporter = _reporter, callback
    try:
        yield
    finally:
        with _reporter_lock:
            _reporter = previous


class DownloadProgress:
    """The progress of one download, fed by its byte bars: bytes done and in all are those of the byte bar that has
    done the most (huggingface_hub keeps two: bytes written, and network bytes, which dedup and compression can make
    fewer)."""

    def __init__(
        self,
        label: str,
        callback: ProgressCallback | None = None,
        *,
        interval_s: float = REPORT_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.label = label
        self.callback = callback
        self.interval_s = interval_s
        self.clock = clock
        self._bars: list[tqdm] = []
        self._lock = threading.Lock()
        self._reported_at = -float("inf")
        self._reported_fraction = -1.0
        self._logged_tenths = 0
        self.done_bytes = 0
        self.total_bytes = 0

    def add(self, bar: tqdm) -> None:
        with self._lock:
            self._bars.append(bar)

    def poll(self, *, final: bool = False) -> None:
        """Read the bars; report and log when due (``final``: report now)."""
        with self._lock:
            bytes_bars = [bar for bar in self._bars if getattr(bar, "unit", None) == "B"]
            if not bytes_bars:
                return
            lead = max(bytes_bars, key=lambda bar: bar.n)
            done, total = int(lead.n), int(max(lead.total or 0, lead.n))
            self.done_bytes, self.total_bytes = done, total
            fraction = done / total if total else 0.0
            now = self.clock()
            due = (
                final
                or now - self._reported_at >= self.interval_s
                or fraction - self._reported_fraction >= REPORT_EVERY_FRACTION
            )
            if due:
                self._reported_at, self._reported_fraction = now, fraction
            tenths = int(fraction / LOG_EVERY_FRACTION + 1e-9)
            log_now = total > 0 and tenths > self._logged_tenths
            if log_now:
                self._logged_tenths = tenths
        if log_now:
            log.info(
                "downloading %s: %.1f of %.1f GB (%.0f %%)",
                self.label,
                done / BYTES_PER_GB,
                total / BYTES_PER_GB,
                fraction * 100,
            )
        if due and self.callback is not None and total > 0:
            try:
                self.callback(done, total)
            except Exception:  # a report that fails must not stop the download
                log.exception("reporting the download of %s failed", self.label)


class _NullStream:
    """Where the bars would print: nowhere (the log and the registry tell the progress)."""

    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        return None


class ProgressBar(tqdm):
    """A tqdm bar for ``snapshot_download(tqdm_class=...)`` that prints nothing and feeds :attr:`progress`; bind it
    to a download with :meth:`for_download`."""

    progress: DownloadProgress | None = None

    @classmethod
    def for_download(cls, progress: DownloadProgress) -> type[ProgressBar]:
        return type("BoundProgressBar", (cls,), {"progress": progress})

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.pop("name", None)  # huggingface_hub's own tqdm takes a name; tqdm's does not
        kwargs["disable"] = False  # a disabled bar counts nothing
        kwargs["file"] = _NullStream()
        super().__init__(*args, **kwargs)
        if self.progress is not None:
            self.progress.add(self)

    def display(self, *args: Any, **kwargs: Any) -> None:
        return None

    def update(self, n: float | None = 1) -> bool | None:
        shown = super().update(n)
        if self.progress is not None:
            self.progress.poll()
        return shown

    def close(self) -> None:
        super().close()
        if self.progress is not None:
            self.progress.poll()


def weight_files(files: list[str]) -> list[str]:
    """The weight files a pipeline loads from ``files`` (paths in one component folder): the fp16 safetensors where
    the folder has them, else the plain safetensors, else (no safetensors at all) the plain ``.bin`` files."""
    safetensors = [f for f in files if f.endswith(".safetensors")]
    fp16 = [f for f in safetensors if _is_fp16(f)]
    if fp16:
        return fp16
    plain = [f for f in safetensors if not _is_fp16(f)]
    if plain:
        return plain
    return [f for f in files if f.endswith(".bin") and not _is_fp16(f)]


def _is_fp16(path: str) -> bool:
    """Whether ``path`` names diffusers' fp16 variant of a weight file (:data:`FP16_MARKS`)."""
    return any(mark in PurePosixPath(path).name for mark in FP16_MARKS)


def pipeline_files(repo_files: list[str], model_index: dict[str, Any]) -> list[str]:
    """The files of a diffusers repository a pipeline loads: ``model_index.json`` and, in each folder it names as a
    component, every file but weights, plus :func:`weight_files` of that folder (index files of sharded weights
    are JSON, so they come along)."""
    chosen = [MODEL_INDEX]
    for folder in components(model_index):
        inside = [f for f in repo_files if f.startswith(folder + "/") and f.count("/") == 1]
        chosen += [f for f in inside if not f.endswith(WEIGHT_SUFFIXES)]
        chosen += weight_files(inside)
    return chosen


def fetch_pipeline(repo_id: str, label: str) -> str:
    """Download what a diffusers pipeline loads from hub repository ``repo_id`` (into the hub's local cache) with
    its progress told; returns the local folder. Raises what huggingface_hub raises (no network, unknown repo)."""
    from huggingface_hub import HfApi, hf_hub_download, snapshot_download

    with open(hf_hub_download(repo_id, MODEL_INDEX), encoding="utf-8") as index_file:
        model_index = json.load(index_file)
    files = pipeline_files(HfApi().list_repo_files(repo_id), model_index)
    with _reporter_lock:
        callback = _reporter
    progress = DownloadProgress(label, callback)
    folder = snapshot_download(repo_id, allow_patterns=files, tqdm_class=ProgressBar.for_download(progress))
    progress.poll(final=True)
    if progress.total_bytes:
        log.info("downloaded %s (%s): %.1f GB", label, repo_id, progress.total_bytes / BYTES_PER_GB)
    return str(folder)
