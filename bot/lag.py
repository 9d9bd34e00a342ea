"""Event-loop lag watch: how late the bot's loop wakes up compared with when it asked to.

Anything that blocks the loop (a decode, a hash, a slow database call done synchronously) shows up here as lag,
and every interaction waiting behind it is late too. The monitor logs a warning for a lag above
``LAG_WARNING_SECONDS`` and, when the bot stops, logs a summary and, when ``LOOP_LAG_REPORT`` names a file, writes
it there as JSON: probes over the whole run, the max over the whole run, and p50 and p99 of the latest
``WINDOW_SAMPLES`` probes (in milliseconds).
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import time
from pathlib import Path

import numpy as np

from jobs.stats import NEAREST_RANK

log = logging.getLogger(__name__)

SAMPLE_INTERVAL_SECONDS = 0.01  # how often the loop is probed
LAG_WARNING_SECONDS = 0.25  # a single lag above this is logged
WINDOW_SAMPLES = 200_000  # latest probes kept for the quantiles (about 33 minutes at 100 Hz; ~7 MB)
QUANTILES = (0.50, 0.99)  # p50 and p99 of the window, one sort


class LoopLagMonitor:
    """Probes the running loop every ``SAMPLE_INTERVAL_SECONDS``; keeps the latest lags, the count and the max."""

    def __init__(self, report_path: Path | None = None) -> None:
        self.report_path = report_path
        self.samples: collections.deque[float] = collections.deque(maxlen=WINDOW_SAMPLES)
        self.probes = 0
        self.max_lag = 0.0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start probing on the running loop."""
        self._task = asyncio.create_task(self._run(), name="loop-lag-monitor")

    async def _run(self) -> None:
        while True:
            before = time.perf_counter()
            await asyncio.sleep(SAMPLE_INTERVAL_SECONDS)
            self.record(max(0.0, time.perf_counter() - before - SAMPLE_INTERVAL_SECONDS))

    def record(self, lag: float) -> None:
        """Count one probe's lag (seconds), keep it in the window, and warn if it is long."""
        self.probes += 1
        self.max_lag = max(self.max_lag, lag)
        self.samples.append(lag)
        if lag > LAG_WARNING_SECONDS:
            log.warning("event loop was blocked for %.0f ms", lag * 1000)

    def summary(self) -> dict[str, float]:
        """Probes and max over the whole run, nearest-rank quantiles over the window, in milliseconds."""
        window = np.fromiter(self.samples, dtype=np.float64, count=len(self.samples))
        p50, p99 = np.quantile(window, QUANTILES, method=NEAREST_RANK) if window.size else (0.0, 0.0)
        return {
            "samples": self.probes,
            "window": int(window.size),
            "p50_ms": float(p50) * 1000,
            "p99_ms": float(p99) * 1000,
            "max_ms": self.max_lag * 1000,
        }

    async def stop(self) -> None:
        """Stop probing; write the summary if a report path was given."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        summary = self.summary()
        log.info("event loop lag: %s", summary)
        if self.report_path is not None:
            self.report_path.parent.mkdir(parents=True, exist_ok=True)
            self.report_path.write_text(json.dumps(summary))
