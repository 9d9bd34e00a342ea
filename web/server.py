"""The web server: one aiohttp application in the app process, serving the page, its API, the operator console,
``/healthz`` and ``/metrics`` on WEB_HOST:WEB_PORT (default 127.0.0.1:7860).

Both ways the app runs (with Discord: ``bot.app.I2VBot``; without: ``web.standalone``) start the page through
:func:`start_web_page`, which binds it and prints the operator's sign-in link. The app tells what only it knows
through :class:`~web.context.AppFacts` (why its worker cannot start; Discord's gateway latency; deleting a message
the bot posted); the handlers get a :class:`~web.context.PageContext`.
"""

from __future__ import annotations

import asyncio
import logging
from importlib.resources import files
from pathlib import Path

from aiohttp import web
from aiohttp.typedefs import Handler

from jobs.requests import too_large
from web.access import access_log
from web.auth import Auth, error, operator_link
from web.config import WebConfig, WebSettings
from web.console import Console
from web.context import AppFacts, NoAppFacts, PageContext, Sessions
from web.delivery import delivery_loop
from web.health import Health
from web.limits import BODY_TOO_LARGE, UPLOAD_PATHS, BadRequest, PageLimits, body_cap
from web.metrics import LoopLag, metrics_handler
from web.pages import FORM_OVERHEAD_BYTES, Pages

log = logging.getLogger(__name__)

STATIC_DIR = Path(str(files("web") / "static"))
SHUTDOWN_TIMEOUT_SECONDS = 3.0  # open event streams are closed after this on stop


class WebServer:
    """The page and the operations endpoints, over the job store's sessions."""

    def __init__(
        self, config: WebConfig, *, sessions: Sessions, readers: Sessions, facts: AppFacts | None = None
    ) -> None:
        self.config = config
        self.sessions = sessions
        self.readers = readers
        self.facts: AppFacts = facts if facts is not None else NoAppFacts()
        self.limits = PageLimits()
        self.context = PageContext(
            config=config, sessions=sessions, readers=readers, facts=self.facts, limits=self.limits
        )
        self.auth = Auth(config, sessions, readers)
        self.loop_lag = LoopLag()
        self.port: int | None = None
        self._runner: web.AppRunner | None = None
        self._delivery: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        """The page's address (WEB_PUBLIC_URL, else http://host:port of the bound port)."""
        return self.config.base_url(self.port)

    def make_app(self) -> web.Application:
        """The aiohttp application with every route."""
        app = web.Application(
            middlewares=[access_log(self.config.trusted_proxies), self.bounds, self.auth.middleware],
            client_max_size=self.config.upload_cap_bytes + FORM_OVERHEAD_BYTES,
        )
        pages, console = Pages(self.context), Console(self.context)
        health = Health(
            self.readers,
            dead_after=self.config.worker_dead_after,
            worker_problem=self.facts.worker_problem,
            is_operator=self.auth.is_operator,
        )
        r = app.router
        r.add_get("/healthz", health.handler)
        r.add_get(
            "/metrics",
            metrics_handler(self.readers, gateway_latency=self.facts.gateway_latency, loop_lag=self.loop_lag),
        )
        r.add_get("/", _file("index.html"))
        r.add_get("/console", _file("console.html"))
        r.add_get("/signin", self.auth.sign_in_page)
        r.add_post("/signin", self.auth.sign_in)
        r.add_post("/api/signout", self.auth.sign_out)
        r.add_get("/api/me", pages.me)
        r.add_get("/api/options", pages.options)
        r.add_get("/api/quota", pages.quota)
        r.add_get("/api/gallery", pages.gallery)
        r.add_post("/api/images/check", pages.check)
        r.add_post("/api/jobs", pages.create)
        r.add_get("/api/jobs/{job_id}", pages.job)
        r.add_get("/api/jobs/{job_id}/events", pages.events)
        r.add_get("/api/jobs/{job_id}/video.mp4", pages.video)
        r.add_get("/api/jobs/{job_id}/input", pages.input_image)
        r.add_post("/api/jobs/{job_id}/again", pages.again)
        r.add_post("/api/jobs/{job_id}/cancel", pages.cancel)
        r.add_post("/api/jobs/{job_id}/delete", pages.delete)
        r.add_get("/api/console", console.overview)
        r.add_post("/api/console/pause", console.pause)
        r.add_post("/api/console/resume", console.resume)
        r.add_post("/api/console/jobs/{job_id}/cancel", console.cancel)
        r.add_post("/api/console/sessions/{session_id}/end", console.end_session)
        r.add_get("/api/console/users/{user_id}", console.user)
        r.add_post("/api/console/users/{user_id}/limits", console.set_limits)
        r.add_post("/api/console/users/{user_id}/ban", console.ban)
        r.add_post("/api/console/users/{user_id}/unban", console.unban)
        r.add_post("/api/console/reports/{job_id}/{action}", console.report_action)
        r.add_static("/static/", STATIC_DIR, show_index=False)
        return app

    @web.middleware
    async def bounds(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """A body longer than its route accepts is refused before it is read (413); a malformed request that
        the page never sends is a 400 with its reason, never a 500."""
        cap = body_cap(request.method, request.path, self.config.upload_cap_bytes, FORM_OVERHEAD_BYTES)
        if request.content_length is not None and request.content_length > cap:
            if request.path in UPLOAD_PATHS:  # the image is what is too large: say so as Discord does
                return error(
                    413, str(too_large(request.content_length - FORM_OVERHEAD_BYTES, self.config.upload_cap_bytes))
                )
            return error(413, BODY_TOO_LARGE)
        try:
            return await handler(request)
        except BadRequest as exc:
            log.info("refused %s %s: %s", request.method, request.path[:200], exc)
            return error(400, str(exc))

    async def start(self) -> None:
        """Bind and serve; raises OSError when the address cannot be bound."""
        self._runner = web.AppRunner(self.make_app(), access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT_SECONDS)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.config.host, self.config.port)
        try:
            await site.start()
        except OSError:
            await self._runner.cleanup()
            self._runner = None
            raise
        server = site._server  # the bound socket tells the port when WEB_PORT is 0
        sockets = getattr(server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1] if sockets else self.config.port
        self.loop_lag.start()
        self._delivery = asyncio.create_task(
            delivery_loop(self.config, self.sessions, self.readers), name="web-delivery"
        )
        log.info("web page on %s (listening on %s:%s; every visitor signs in)", self.url, self.config.host, self.port)
        await self.print_operator_link()

    async def print_operator_link(self) -> None:
        """The operator's single-use sign-in link: one line on stdout and in the log (``docker compose logs``
        shows it), as Jupyter prints its token URL."""
        link, who = await operator_link(self.sessions, self.config, self.port)
        line = f"Operator sign-in: {link}"
        print(line, flush=True)
        log.info(
            "%s (acts as %s user %s; works once, within %d minutes)",
            line,
            who.source,
            who.user_id,
            self.config.operator_link_ttl_seconds // 60,
        )

    async def stop(self) -> None:
        """Stop serving (open event streams are cut) and the background tasks."""
        if self._delivery is not None:
            self._delivery.cancel()
            await asyncio.gather(self._delivery, return_exceptions=True)
        await self.loop_lag.stop()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


async def start_web_page(settings: WebSettings, *, sessions: Sessions, readers: Sessions, facts: AppFacts) -> WebServer:
    """The one way the app starts its page, with Discord or without: bind WEB_HOST:WEB_PORT, serve, and print the
    operator's sign-in link. Raises OSError when the address cannot be bound."""
    server = WebServer(WebConfig.from_settings(settings), sessions=sessions, readers=readers, facts=facts)
    await server.start()
    return server


def _file(name: str) -> Handler:
    path = STATIC_DIR / name

    async def serve(request: web.Request) -> web.FileResponse:
        return web.FileResponse(
            path, headers={"Cache-Control": "no-store", "X-Frame-Options": "DENY", "Content-Security-Policy": CSP}
        )

    return serve


CSP = (
    "default-src 'self'; img-src 'self' blob: data:; media-src 'self' blob:; style-src 'self'; "
    "script-src 'self'; connect-src 'self'; frame-ancestors 'none'; form-action 'self'"
)
