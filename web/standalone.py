"""The app without Discord: the web page and one embedded worker (``python -m bot`` when DISCORD_TOKEN is not set).

Does what ``bot.app.I2VBot.setup_hook`` does for the store and the worker, minus Discord: migrate, open the
engines, requeue the jobs of this host's dead worker processes, start the worker supervisor (``WORKER=embedded``),
serve the page, and keep rescuing dead workers' jobs and pruning old bytes (the bot's job monitor does that when
Discord runs). ``settings`` is a ``bot.settings.BotSettings``.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from datetime import timedelta
from typing import Any

from jobs.db import make_engine, make_sessionmaker, migrate
from jobs.models import utcnow
from jobs.rescue import rescue_dead_workers, rescue_expired
from jobs.retention import prune_finished
from jobs.workers import pid_alive, rescue_dead_on_host
from web.config import WebConfig
from web.server import WebServer

log = logging.getLogger(__name__)

RESCUE_INTERVAL_SECONDS = 2.0  # as the bot's job monitor
SECONDS_PER_DAY = 86400.0


def embedded_supervisor(settings: Any) -> Any:
    """The ``generator.supervisor.WorkerSupervisor`` of the app's embedded worker, from a ``BotSettings``: its
    grace period (I2V_GRACE_SECONDS) and restart timings."""
    from generator.supervisor import RestartPolicy, WorkerSupervisor

    policy = RestartPolicy(backoff_initial_s=settings.restart_backoff, backoff_max_s=settings.restart_backoff_max,
                           unavailable_after=settings.unavailable_after,
                           unavailable_retry_s=settings.unavailable_retry)
    return WorkerSupervisor(database_url=settings.database_url, model=settings.model,
                            output_dir=str(settings.output_dir), stop_grace_s=settings.grace_seconds, policy=policy)


def supervisor_problem(supervisor: Any) -> str | None:
    """Why the embedded worker cannot run, from the supervisor (``failure_reason`` when it records one)."""
    return getattr(supervisor, "failure_reason", None) if supervisor is not None else None


async def _maintain(settings: Any, sessions: Any) -> None:
    pruned_at: float | None = None
    loop = asyncio.get_running_loop()
    while True:
        try:
            async with sessions.begin() as session:
                dead = await rescue_dead_workers(session, dead_after_s=settings.worker_dead_after)
                expired = await rescue_expired(session)
            if dead or expired:
                log.warning("requeued jobs of dead workers %s and of expired leases %s", dead, expired)
            if settings.retention_days > 0 and (pruned_at is None or
                                                loop.time() - pruned_at >= settings.retention_interval):
                pruned_at = loop.time()
                cutoff = utcnow() - timedelta(seconds=settings.retention_days * SECONDS_PER_DAY)
                async with sessions.begin() as session:
                    ids = await prune_finished(session, finished_before=cutoff)
                for job_id in ids:
                    for path in settings.output_dir.glob(f"video_*_{job_id}.mp4"):
                        path.unlink(missing_ok=True)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("maintenance pass failed; continuing")
        await asyncio.sleep(RESCUE_INTERVAL_SECONDS)


async def run_web_only(settings: Any, stop: asyncio.Event) -> None:
    """Serve the page (and run the embedded worker) until ``stop`` is set. Raises OSError when WEB_HOST:WEB_PORT
    cannot be bound."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    settings.output_dir.mkdir(parents=True, exist_ok=True)
    await migrate(settings.database_url)
    engine = make_engine(settings.database_url)
    read_engine = make_engine(settings.database_url, read_only=True)
    sessions, readers = make_sessionmaker(engine), make_sessionmaker(read_engine)
    supervisor: Any = None
    server: WebServer | None = None
    maintenance: asyncio.Task[None] | None = None
    try:
        async with sessions.begin() as session:
            rescued = await rescue_dead_on_host(session, socket.gethostname(), alive=pid_alive)
        if rescued:
            log.warning("requeued jobs of this host's dead worker processes: %s", rescued)
        server = WebServer(WebConfig.from_settings(settings), sessions=sessions, readers=readers,
                           worker_problem=lambda: supervisor_problem(supervisor))
        await server.start()
        if settings.worker == "embedded":
            supervisor = embedded_supervisor(settings)
            await supervisor.start()
        maintenance = asyncio.create_task(_maintain(settings, sessions), name="web-only-maintenance")
        log.info("running without Discord (no DISCORD_TOKEN): the web page and %s worker",
                 "the embedded" if supervisor is not None else "external")
        await stop.wait()
    finally:
        if maintenance is not None:
            maintenance.cancel()
            await asyncio.gather(maintenance, return_exceptions=True)
        if server is not None:
            await server.stop()
        if supervisor is not None:
            try:
                await supervisor.stop(settings.grace_seconds)
            except Exception:
                log.exception("stopping the worker supervisor failed")
        await engine.dispose()
        await read_engine.dispose()
