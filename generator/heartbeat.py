"""The worker's heartbeat, stamped from a thread of its own.

The worker's event loop runs the claim loop and the job's progress writes; a long GPU call runs on another thread,
and anything that holds the event loop up (a slow write, a blocked database) must not make a live worker look dead.
So the heartbeat has its own thread, its own event loop and its own database engine: every ``interval_s`` it stamps
the worker's registry row with the state and job the worker last reported (``jobs.workers.heartbeat``). Rescuers
requeue the running job of a worker whose stamp is older than ``WORKER_DEAD_AFTER``.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable

log = logging.getLogger("generator.worker")

STOP_JOIN_S = 5.0  # seconds stop() waits for the thread's last write


class HeartbeatThread:
    """Stamps ``worker_id``'s row every ``interval_s`` seconds until ``stop()``; ``status()`` gives the
    (state, current job id) to write, read on the heartbeat thread (keep it a cheap, thread-safe read)."""

    def __init__(
        self,
        database_url: str,
        worker_id: str,
        pid: int,
        interval_s: float,
        status: Callable[[], tuple[str, int | None]],
    ) -> None:
        if interval_s <= 0:
            raise ValueError(f"interval_s must be > 0, got {interval_s!r}")
        self.database_url = database_url
        self.worker_id = worker_id
        self.pid = pid
        self.interval_s = interval_s
        self.status = status
        self.beats = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._main, name="worker-heartbeat", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop stamping (the last stamp stays); waits briefly for a write in progress."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(STOP_JOIN_S)

    def _main(self) -> None:
        asyncio.run(self._loop())

    async def _loop(self) -> None:
        from jobs.db import make_engine, make_sessionmaker
        from jobs.workers import heartbeat

        engine = make_engine(self.database_url)
        sessions = make_sessionmaker(engine)
        try:
            while not self._stop.is_set():
                state, job_id = self.status()
                try:
                    async with sessions() as session, session.begin():
                        mine = await heartbeat(
                            session, self.worker_id, pid=self.pid, state=state, current_job_id=job_id
                        )
                    self.beats += 1
                    if not mine:
                        log.warning(
                            "worker row %s belongs to another process now; heartbeat not written", self.worker_id
                        )
                except Exception:
                    log.exception("heartbeat write failed")
                self._stop.wait(self.interval_s)  # this loop has nothing else to do meanwhile
        finally:
            await engine.dispose()
