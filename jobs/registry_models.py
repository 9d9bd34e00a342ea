"""The worker registry's table: one row per worker process (``jobs.workers`` reads and writes it)."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import JSON, BigInteger, Float, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from jobs.columns import Base, UtcDateTime, str_enum, utcnow


class WorkerState(str, enum.Enum):
    """What a worker reports about itself in the registry."""

    STARTING = "starting"
    LOADING = "loading"
    IDLE = "idle"
    BUSY = "busy"
    STOPPING = "stopping"
    STOPPED = "stopped"
    CRASHED = "crashed"


class Worker(Base):
    """Registry row of each worker process (``jobs.workers``): host, pid, state, model, GPU, current job and the
    heartbeat its own thread stamps every few seconds. Rescuers requeue the running jobs of a worker whose heartbeat
    is older than ``WORKER_DEAD_AFTER`` or whose row says it stopped or crashed (``jobs.rescue``). A worker that
    cannot start records why (``failure_reason``); video generation counts as unavailable while no worker is alive
    and one says why (``jobs.stats.unavailable_reason``)."""

    __tablename__ = "workers"

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    state: Mapped[WorkerState] = mapped_column(str_enum(WorkerState, "worker_state"))
    model: Mapped[str | None] = mapped_column(String(255))  # where the loaded model came from (hub id or folder)
    loadable_models: Mapped[list[str]] = mapped_column(JSON, default=list, server_default="[]")
    """The model keys this worker may load (``I2V_MODELS`` narrowed by ``WORKER_MODELS``), in its order."""
    loaded_model: Mapped[str | None] = mapped_column(String(32))
    """The model key it holds on its GPU now; None while it holds none (starting, or between an unload and a load)."""
    switches: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    """Model switches (unload one, load another) since the row was made."""
    switch_seconds: Mapped[float] = mapped_column(Float, default=0.0, server_default="0")
    """Seconds spent in those switches, in all."""
    gpu_name: Mapped[str | None] = mapped_column(String(255))
    gpu_memory_bytes: Mapped[int | None] = mapped_column(BigInteger)
    current_job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"))
    restarts: Mapped[int] = mapped_column(Integer, default=0)
    started_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    last_heartbeat_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    jobs_done: Mapped[int] = mapped_column(Integer, default=0)
    failure_reason: Mapped[str | None] = mapped_column(Text)
    """One line: why this worker's last start failed (the exception's message); cleared once it is idle."""
    unavailable_since: Mapped[datetime | None] = mapped_column(UtcDateTime())
    """Set by its supervisor after repeated start failures (it then retries slowly); cleared once it is idle."""
