"""FakeDiscord: an aiohttp server on 127.0.0.1 speaking enough of Discord's REST API v10, gateway and CDN
for the real discord.py client to log in, sync commands, receive interactions and messages, and answer them.

Shapes follow Discord's documented API (and what discord.py 2.7 reads). Every request is recorded with its
uploaded bytes; tests inject events, wait for requests, and switch faults on. See README.md for the API.
The parts live in world.py (state, records, waiting), gateway.py, inject.py and rest.py; this module adds the
HTTP server, request recording and fault injection.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from aiohttp import BodyPartReader, web

from bot.discord_limits import INVALID_FORM_BODY

from .faults import Fault
from .records import RecordedFile, RecordedRequest
from .rest import JSON_CONTENT_TYPE, Body, FakeRest, HTTPError, json_response
from .state import FakeInteraction

API_PREFIX = "/api/v10"
DEFAULT_HOST = "127.0.0.1"
MAX_REQUEST_BYTES = 256 * 1024 * 1024
"""Largest request body the server accepts (uploads above Discord's limits still reach the 413 check)."""


class FakeDiscord(FakeRest):
    """A fake Discord on 127.0.0.1. ``await start()`` / ``await stop()``, or ``async with FakeDiscord() as fake``.

    A default guild (``guild``) with a text channel (``channel_id``), the bot's member, an ordinary member
    (``member``, permissions :data:`payloads.PERMS_MEMBER`) and an administrator (``admin``) exist from the start.
    """

    def __init__(
        self,
        *,
        host: str = DEFAULT_HOST,
        port: int = 0,
        bot_token: str | None = None,
        application_id: int | None = None,
        bot_name: str = "i2v-bot",
    ) -> None:
        super().__init__(bot_token=bot_token, application_id=application_id, bot_name=bot_name)
        self.host = host
        self.port = port
        self.faults: list[Fault] = []
        self._runner: web.AppRunner | None = None

    async def start(self) -> FakeDiscord:
        """Bind (port 0 = any free port) and start serving."""
        if self._runner is not None:
            raise RuntimeError("FakeDiscord.start(): already started")
        app = web.Application(client_max_size=MAX_REQUEST_BYTES)
        app.router.add_get("/gateway", self._gateway)
        app.router.add_get("/cdn/attachments/{attachment_id}/{filename}", self._cdn)
        app.router.add_route("*", API_PREFIX + "/{tail:.*}", self._rest)
        app.router.add_route("*", "/{tail:.*}", self._unknown)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        self._changed = asyncio.Event()
        return self

    async def stop(self) -> None:
        """Close gateway sockets and stop serving (close the bot first, or it will try to reconnect)."""
        for conn in list(self._open):
            await conn.ws.close(code=1001)
        self._open.clear()
        self._live = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeDiscord:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://{self.host}:{self.port}"

    @property
    def api_base(self) -> str:
        """The REST base for ``DISCORD_API_BASE`` / ``discord.http.Route.BASE``."""
        return self.base_url + API_PREFIX

    @property
    def gateway_url(self) -> str:
        """The websocket URL for ``DISCORD_GATEWAY_URL``."""
        return f"ws://{self.host}:{self.port}/gateway"

    def add_fault(self, fault: Fault) -> Fault:
        """Install a fault rule (checked in order, before routing); returns it (``.hits`` counts uses)."""
        self.faults.append(fault)
        return fault

    def fail(
        self,
        *,
        status: int = 500,
        code: int = 0,
        message: str = "fake failure",
        method: str | None = None,
        path: str | None = None,
        times: int | None = 1,
        errors: dict[str, Any] | None = None,
    ) -> Fault:
        """Answer matching requests with ``status`` and Discord's JSON error body (5xx: discord.py retries);
        ``errors`` goes into the body as Discord's field errors of a 400 / 50035."""
        return self.add_fault(
            Fault(
                "status",
                method=method,
                path=path,
                times=times,
                status=status,
                code=code,
                message=message,
                errors=errors,
            )
        )

    def refused_bodies(self) -> list[RecordedRequest]:
        """The requests the fake answered 400 / 50035 by its limits (not by a fault rule): each is a body Discord
        would refuse too."""
        return [
            r
            for r in self.requests
            if r.status == 400
            and r.fault is None
            and isinstance(r.response, dict)
            and r.response.get("code") == INVALID_FORM_BODY
        ]

    def rate_limit(
        self,
        *,
        retry_after: float = 0.2,
        is_global: bool = False,
        method: str | None = None,
        path: str | None = None,
        times: int | None = 1,
    ) -> Fault:
        """Answer matching requests with 429, ``Retry-After``, ``X-RateLimit-*`` and ``Via`` (discord.py retries)."""
        return self.add_fault(
            Fault(
                "rate_limit",
                method=method,
                path=path,
                times=times,
                status=429,
                retry_after=retry_after,
                is_global=is_global,
            )
        )

    def exhaust_bucket(
        self, *, reset_after: float = 0.5, method: str | None = None, path: str | None = None, times: int | None = 1
    ) -> Fault:
        """Answer normally but with ``X-RateLimit-Remaining: 0`` so discord.py waits before the next call."""
        return self.add_fault(Fault("exhaust", method=method, path=path, times=times, retry_after=reset_after))

    def slow(self, delay: float, *, method: str | None = None, path: str | None = None, times: int | None = 1) -> Fault:
        """Answer matching requests normally, ``delay`` seconds late."""
        return self.add_fault(Fault("slow", method=method, path=path, times=times, delay=delay))

    def expire_tokens_after(self, seconds: float | None) -> None:
        """Interaction webhook calls more than ``seconds`` after the interaction get 401 code 50027."""
        if seconds is not None and seconds < 0:
            raise ValueError(f"expire_tokens_after(seconds={seconds}): must be >= 0 or None")
        self.token_lifetime = seconds

    def expire_token(self, interaction: FakeInteraction) -> None:
        """Expire one interaction's token now."""
        interaction.expired = True

    async def _read_body(self, request: web.Request) -> Body:
        content_type = request.headers.get("Content-Type", "")
        if content_type.startswith("multipart/"):
            body_json: Any = None
            files: list[RecordedFile] = []
            reader = await request.multipart()
            async for part in reader:
                if not isinstance(part, BodyPartReader):  # Discord sends no nested multipart
                    continue
                if part.name == "payload_json":
                    body_json = json.loads(await part.text())
                elif part.filename is not None:
                    data = bytes(await part.read())
                    files.append(
                        RecordedFile(
                            field=part.name or "",
                            filename=part.filename,
                            content_type=part.headers.get("Content-Type", ""),
                            data=data,
                        )
                    )
            return Body(body_json, files)
        raw = await request.read()
        if not raw:
            return Body(None, [])
        if content_type != JSON_CONTENT_TYPE:
            raise HTTPError(400, 50035, f"fake discord: body sent with Content-Type {content_type!r}")
        return Body(json.loads(raw), [])

    def _record(self, request: web.Request, path: str, body: Body | None) -> RecordedRequest:
        record = RecordedRequest(
            method=request.method,
            path=path,
            query=dict(request.query),
            headers=dict(request.headers),
            json=body.json if body else None,
            files=body.files if body else [],
            time=time.monotonic(),
            wall_time=time.time(),
        )
        return record

    def _finish(self, record: RecordedRequest, response: web.Response) -> web.Response:
        record.status = response.status
        body = response.body  # bytes for the answers this server builds; a streamed Payload is not recorded
        if isinstance(body, (bytes, bytearray)) and body and response.content_type == JSON_CONTENT_TYPE:
            record.response = json.loads(body)
        self.requests.append(record)
        self._notify()
        return response

    async def _apply_faults(self, record: RecordedRequest) -> web.Response | None:
        """Answer from a fault rule, or sleep for a ``slow`` one; None when the request proceeds normally."""
        for fault in self.faults:
            if not fault.matches(record.method, record.path) or fault.kind == "exhaust":
                continue
            fault.hits += 1
            if fault.kind == "slow":
                await asyncio.sleep(fault.delay)
                return None
            record.fault = fault.kind
            if fault.kind == "rate_limit":
                headers = {
                    "Retry-After": str(max(1, round(fault.retry_after))),
                    "X-RateLimit-Limit": "5",
                    "X-RateLimit-Remaining": "0",
                    "X-RateLimit-Reset": f"{time.time() + fault.retry_after:.3f}",
                    "X-RateLimit-Reset-After": f"{fault.retry_after:.3f}",
                    "X-RateLimit-Bucket": "fake-bucket",
                    "X-RateLimit-Scope": "global" if fault.is_global else "user",
                    "Via": "1.1 google",
                }
                if fault.is_global:
                    headers["X-RateLimit-Global"] = "true"
                return json_response(429, fault.rate_limit_body(), headers)
            return json_response(fault.status, fault.error_body())
        return None

    def _exhaust_headers(self, record: RecordedRequest) -> dict[str, str]:
        for fault in self.faults:
            if fault.kind == "exhaust" and fault.matches(record.method, record.path):
                fault.hits += 1
                record.fault = "exhaust"
                return {
                    "X-RateLimit-Limit": "5",
                    "X-RateLimit-Remaining": "0",
                    "X-RateLimit-Reset": f"{time.time() + fault.retry_after:.3f}",
                    "X-RateLimit-Reset-After": f"{fault.retry_after:.3f}",
                    "X-RateLimit-Bucket": "fake-bucket",
                }
        return {}

    async def _rest(self, request: web.Request) -> web.Response:
        path = "/" + request.match_info["tail"]
        try:
            body = await self._read_body(request)
        except HTTPError as error:
            record = self._record(request, path, None)
            return self._finish(record, json_response(error.status, error.body()))
        record = self._record(request, path, body)
        faulted = await self._apply_faults(record)
        if faulted is not None:
            return self._finish(record, faulted)
        for method, pattern, handler in self._routes:
            match = pattern.fullmatch(path)
            if match is None or method != request.method:
                continue
            if (
                self.bot_token is not None
                and record.has_bot_auth
                and record.headers["Authorization"] != f"Bot {self.bot_token}"
            ):
                return self._finish(record, json_response(401, {"message": "401: Unauthorized", "code": 0}))
            try:
                status, result = await handler(record, body, *match.groups())
            except HTTPError as error:
                return self._finish(record, json_response(error.status, error.body(), error.headers))
            headers = self._exhaust_headers(record)
            if status == 204:
                return self._finish(record, web.Response(status=204, headers=headers))
            return self._finish(record, json_response(status, result, headers))
        message = f"fake discord: no route for {request.method} {API_PREFIX}{path}"
        return self._finish(record, json_response(404, {"message": message, "code": 0}))

    async def _unknown(self, request: web.Request) -> web.Response:
        record = self._record(request, request.path, None)
        message = f"fake discord: no route for {request.method} {request.path}"
        return self._finish(record, json_response(404, {"message": message, "code": 0}))

    async def _cdn(self, request: web.Request) -> web.Response:
        record = self._record(request, request.path, None)
        faulted = await self._apply_faults(record)
        if faulted is not None:
            return self._finish(record, faulted)
        attachment = self.attachments.get(int(request.match_info["attachment_id"]))
        if attachment is None or attachment.filename != request.match_info["filename"]:
            return self._finish(record, web.Response(status=404, text="fake discord: no such attachment"))
        record.status = 200
        self.requests.append(record)
        self._notify()
        return web.Response(body=attachment.data, headers={"Content-Type": attachment.content_type})
