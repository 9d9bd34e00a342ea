"""A second HTTP server on 127.0.0.1, another origin than the fake: it stands for any host outside Discord (an
internal service, a link preview's site) and records every request it gets, so a test can show the bot never
fetched from it. Every path answers 200 with the PNG it was given."""

from __future__ import annotations

import dataclasses

from aiohttp import web

PROBE_HOST = "127.0.0.1"


@dataclasses.dataclass
class ProbeRequest:
    """One request the probe host got."""

    method: str
    path: str
    headers: dict[str, str]


class ProbeHost:
    """``async with ProbeHost(png) as probe:`` ... ``probe.url("/x.png")`` ... ``probe.requests``."""

    def __init__(self, body: bytes, *, content_type: str = "image/png") -> None:
        self.body = body
        self.content_type = content_type
        self.requests: list[ProbeRequest] = []
        self.port = 0
        self._runner: web.AppRunner | None = None

    async def start(self) -> ProbeHost:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._any)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, PROBE_HOST, 0)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> ProbeHost:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def url(self, path: str) -> str:
        """An absolute URL on the probe host."""
        return f"http://{PROBE_HOST}:{self.port}/{path.lstrip('/')}"

    async def _any(self, request: web.Request) -> web.Response:
        self.requests.append(ProbeRequest(request.method, request.path, dict(request.headers)))
        return web.Response(body=self.body, content_type=self.content_type)
