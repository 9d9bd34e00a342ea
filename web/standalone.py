"""The app without Discord: the web page and one embedded worker (``python -m bot`` when DISCORD_TOKEN is not set).

Does what ``bot.app.I2VBot.setup_hook`` does for the store and the worker, minus Discord: migrate, open the
engines, start the worker supervisor (``WORKER=embedded``; it requeues the jobs of this host's dead worker
processes as it starts), serve the page, and run the store's maintenance (``jobs.maintenance.Maintenance``, as the
bot's job monitor does when Discord runs). ``settings`` is a ``bot.settings.BotSettings``.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from jobs.db import make_engine, make_sessionmaker, migrate
from jobs.maintenance import RESCUE_INTERVAL_S, Maintenance
from web.server import WebServer, start_web_page

log = logging.getLogger(__name__)


def embedded_supervisor(settings: Any) -> Any:
    """The ``generator.supervisor.WorkerSupervisor`` of the app's embedded worker, from a ``BotSettings``: its
    grace period (I2V_GRACE_SECONDS) and restart timings."""
    from generator.supervisor import WorkerSupervisor
    from generator.supervisor_state import RestartPolicy

    policy = RestartPolicy(
        backoff_initial_s=settings.restart_backoff,
        backoff_max_s=settings.restart_backoff_max,
        unavailable_after=settings.unavailable_after,
        unavailable_retry_s=settings.unavailable_retry,
    )
    return WorkerSupervisor(
        database_url=settings.database_url,
        model=settings.model,
        output_dir=str(settings.output_dir),
        stop_grace_s=settings.grace_seconds,
        policy=policy,
    )


def supervisor_problem(supervisor: Any) -> str | None:
    """Why the embedded worker cannot run, from the supervisor (``failure_reason`` when it records one)."""
    return getattr(supervisor, "failure_reason", None) if supervisor is not None else None


class PageOnlyFacts:
    """What the app without Discord knows (``web.context.AppFacts``): its embedded worker's supervisor, once it
    started; no gateway."""

    def __init__(self) -> None:
        self.supervisor: Any = None

    def worker_problem(self) -> str | None:
        return supervisor_problem(self.supervisor)

    def gateway_latency(self) -> float | None:
        return None

    async def delete_message(self, channel_id: int, guild_id: int | None, message_id: int) -> None:
        log.info("no Discord client in this process: message %s in channel %s stays", message_id, channel_id)


async def _maintain(settings: Any, sessions: Any) -> None:
    maintenance = Maintenance(
        sessions,
        dead_after_s=settings.worker_dead_after,
        retention_days=settings.retention_days,
        retention_interval_s=settings.retention_interval,
        output_dir=settings.output_dir,
    )
    while True:
        try:
            await maintenance.run_due()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("maintenance pass failed; continuing")
        await asyncio.sleep(RESCUE_INTERVAL_S)


async def serve_page_only(settings: Any, stop: asyncio.Event) -> None:
    """Serve the page (and run the embedded worker) until ``stop`` is set. Raises OSError when WEB_HOST:WEB_PORT
    cannot be bound."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    settings.output_dir.mkdir(parents=True, exist_ok=True)
    await migrate(settings.database_url)
    engine = make_engine(settings.database_url)
    read_engine = make_engine(settings.database_url, read_only=True)
    sessions, readers = make_sessionmaker(engine), make_sessionmaker(read_engine)
    facts = PageOnlyFacts()
    supervisor: Any = None
    server: WebServer | None = None
    maintenance: asyncio.Task[None] | None = None
    try:
        server = await start_web_page(settings, sessions=sessions, readers=readers, facts=facts)
        if settings.worker == "embedded":
            supervisor = facts.supervisor = embedded_supervisor(settings)
            await supervisor.start()
        maintenance = asyncio.create_task(_maintain(settings, sessions), name="web-only-maintenance")
        log.info(
            "running without Discord (no DISCORD_TOKEN): the web page and %s worker",
            "the embedded" if supervisor is not None else "external",
        )
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
