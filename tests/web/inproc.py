"""The web server in the test's own event loop (aiohttp's test server on 127.0.0.1, a real migrated SQLite store,
no worker): for the page's bounds and answers, where a whole ``python -m bot`` adds only start-up time.

``page(sqlite_url)`` yields a ``Page``: its ``client`` (``aiohttp.test_utils.TestClient``), the ``server``
(``web.server.WebServer``) and ``sign_in(user_id)`` for a signed-in client of that user, through the real sign-in
route with a link made as ``/web`` makes it.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import event

from jobs.db import make_engine, make_sessionmaker
from jobs.web_sessions import create_link
from tests.web.webharness import SAMPLE_IMAGE
from web.config import WebConfig
from web.server import WebServer

OPERATOR_ID = 9001


def web_config(tmp: Path, **overrides: Any) -> WebConfig:
    values: dict[str, Any] = dict(
        host="127.0.0.1",
        port=0,
        public_url=None,
        operator_user_ids=frozenset({OPERATOR_ID}),
        quota_daily_gpu_seconds=100000.0,
        quota_max_pending=5,
        queue_max_length=100,
        upload_cap_bytes=8 * 1024 * 1024,
        output_dir=tmp / "outputs",
        save_output_copy=False,
        worker_dead_after=15.0,
    )
    values.update(overrides)
    return WebConfig(**values)


@dataclass
class Signed:
    """A signed-in user's client: requests carry the session cookie, POSTs the CSRF token."""

    http: TestClient
    cookie: str
    csrf: str
    user_id: int

    def headers(self, post: bool = False, **extra: str) -> dict[str, str]:
        return {"Cookie": self.cookie, **({"X-CSRF-Token": self.csrf} if post else {}), **extra}

    async def get(self, path: str, **headers: str) -> aiohttp.ClientResponse:
        return await self.http.get(path, headers=self.headers(post=False, **headers))

    async def post(self, path: str, data: Any = None, **headers: str) -> aiohttp.ClientResponse:
        return await self.http.post(path, data=data, headers=self.headers(post=True, **headers))

    async def create_job(self, *, image: bool = True, **fields: str) -> tuple[int, Any]:
        form = aiohttp.FormData(default_to_multipart=True)
        if image:
            form.add_field("image", SAMPLE_IMAGE.read_bytes(), filename="s.png", content_type="image/png")
        for name, value in {"prompt": "a boat", "preset": "quick", "resolution": "256p", **fields}.items():
            form.add_field(name, value)
        response = await self.post("/api/jobs", data=form)
        return response.status, await response.json()


@dataclass
class Page:
    client: TestClient
    server: WebServer
    statements: list[str] = field(default_factory=list)  # every SQL statement the page's reader engine ran

    async def sign_in(self, user_id: int, **link: Any) -> Signed:
        async with self.server.sessions.begin() as session:
            token = await create_link(session, user_id, **link)
        response = await self.client.post("/signin", data={"token": token}, allow_redirects=False)
        assert response.status == 303, (response.status, await response.text())
        cookie = response.headers["Set-Cookie"].split(";", 1)[0]
        me = await self.client.get("/api/me", headers={"Cookie": cookie})
        assert me.status == 200, await me.text()
        return Signed(self.client, cookie, json.loads(await me.text())["csrf_token"], user_id)


@asynccontextmanager
async def page(sqlite_url: str, tmp: Path, **config: Any) -> AsyncIterator[Page]:
    engine, read_engine = make_engine(sqlite_url), make_engine(sqlite_url, read_only=True)
    statements: list[str] = []
    event.listen(
        read_engine.sync_engine,
        "before_cursor_execute",
        lambda conn, cursor, statement, *args: statements.append(statement),
    )
    server = WebServer(
        web_config(tmp, **config), sessions=make_sessionmaker(engine), readers=make_sessionmaker(read_engine)
    )
    client = TestClient(TestServer(server.make_app()), cookie_jar=aiohttp.DummyCookieJar())
    await client.start_server()
    try:
        yield Page(client, server, statements)
    finally:
        await client.close()
        await engine.dispose()
        await read_engine.dispose()
