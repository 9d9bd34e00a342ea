"""``bot.requests.download_image`` against two local HTTP servers: the allowed origin (standing in for Discord's
attachment host, as ``DISCORD_API_BASE`` makes it) and another host that must never be reached."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web

from bot.errors import UserFacingError
from bot.image_origin import NOT_DISCORD_MESSAGE, REDIRECT_MESSAGE
from bot.requests import DOWNLOAD_FAILED_MESSAGE, download_image
from generator.images import ImageError
from tests.fakediscord.probe import ProbeHost

CAP_BYTES = 1000  # MAX_DOWNLOAD_BYTES for these tests
IMAGE = b"\x89PNG" + b"x" * 500


@dataclass
class Servers:
    origin: str
    probe: ProbeHost
    bot: Any
    hits: list[str]


@pytest_asyncio.fixture
async def servers() -> AsyncIterator[Servers]:
    hits: list[str] = []
    async with ProbeHost(IMAGE) as probe:

        async def image(request: web.Request) -> web.Response:
            hits.append(request.path)
            return web.Response(body=IMAGE, content_type="image/png")

        async def redirect_same(request: web.Request) -> web.Response:
            hits.append(request.path)
            raise web.HTTPFound("/image.png")

        async def redirect_away(request: web.Request) -> web.Response:
            hits.append(request.path)
            raise web.HTTPFound(probe.url("/internal"))

        async def declared_big(request: web.Request) -> web.Response:
            hits.append(request.path)
            return web.Response(body=b"x" * (CAP_BYTES + 1), content_type="image/png")

        async def streamed_big(request: web.Request) -> web.StreamResponse:
            hits.append(request.path)
            response = web.StreamResponse()  # chunked: no Content-Length to refuse on
            await response.prepare(request)
            for _ in range(CAP_BYTES // 100 + 2):
                await response.write(b"x" * 100)
            await response.write_eof()
            return response

        async def secret_error(request: web.Request) -> web.Response:
            hits.append(request.path)
            return web.Response(status=418, text="internal build server v1.2.3")

        app = web.Application()
        app.router.add_get("/image.png", image)
        app.router.add_get("/same", redirect_same)
        app.router.add_get("/away", redirect_away)
        app.router.add_get("/declared-big", declared_big)
        app.router.add_get("/streamed-big", streamed_big)
        app.router.add_get("/error", secret_error)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        origin = f"http://127.0.0.1:{runner.addresses[0][1]}"
        async with aiohttp.ClientSession() as session:
            bot = SimpleNamespace(
                settings=SimpleNamespace(api_base=origin + "/api/v10", max_download_bytes=CAP_BYTES), web=session
            )
            try:
                yield Servers(origin, probe, bot, hits)
            finally:
                await runner.cleanup()


async def test_same_origin_download_and_redirect(servers: Servers) -> None:
    assert await download_image(servers.bot, servers.origin + "/image.png") == IMAGE
    assert await download_image(servers.bot, servers.origin + "/same") == IMAGE
    assert servers.hits == ["/image.png", "/same", "/image.png"]


async def test_other_hosts_and_cross_origin_redirects_are_never_fetched(servers: Servers) -> None:
    with pytest.raises(UserFacingError) as refused:
        await download_image(servers.bot, servers.probe.url("/image.png"))
    assert refused.value.message == NOT_DISCORD_MESSAGE
    with pytest.raises(UserFacingError) as redirected:
        await download_image(servers.bot, servers.origin + "/away")
    assert redirected.value.message == REDIRECT_MESSAGE
    assert servers.probe.requests == []


async def test_size_is_checked_declared_from_the_header_and_while_streaming(servers: Servers) -> None:
    with pytest.raises(ImageError, match="too large"):
        await download_image(servers.bot, servers.origin + "/image.png", declared_size=CAP_BYTES + 1)
    assert servers.hits == []  # refused before any request
    with pytest.raises(ImageError, match=f"{CAP_BYTES + 1:,} bytes"):
        await download_image(servers.bot, servers.origin + "/declared-big")
    with pytest.raises(ImageError, match="too large"):
        await download_image(servers.bot, servers.origin + "/streamed-big")
    assert servers.hits == ["/declared-big", "/streamed-big"]


async def test_a_failed_fetch_is_not_echoed(servers: Servers) -> None:
    with pytest.raises(UserFacingError) as failed:
        await download_image(servers.bot, servers.origin + "/error")
    assert failed.value.message == DOWNLOAD_FAILED_MESSAGE
    assert "418" not in failed.value.message and "build server" not in failed.value.message
