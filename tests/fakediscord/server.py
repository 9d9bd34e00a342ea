"""FakeDiscord: an aiohttp server on 127.0.0.1 speaking enough of Discord's REST API v10, gateway and CDN
for the real discord.py client to log in, sync commands, receive interactions and messages, and answer them.

Shapes follow Discord's documented API (and what discord.py 2.7 reads). Every request is recorded with its
uploaded bytes; tests inject events, wait for requests, and switch faults on. See README.md for the API.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from aiohttp import WSMsgType, web

from . import payloads
from .faults import Fault
from .options import build_options
from .records import GatewayFrame, RecordedFile, RecordedRequest
from .state import FakeAttachment, FakeGuild, FakeInteraction, FakeMember

API_PREFIX = "/api/v10"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_TIMEOUT_SECONDS = 5.0
"""How long wait helpers and injections wait by default."""
POLL_SECONDS = 0.02
"""How often wait helpers re-check conditions the fake cannot observe (bot-side state)."""
HEARTBEAT_INTERVAL_MS = 41_250
"""What HELLO tells the client (Discord's usual value)."""
INTENT_GUILD_MESSAGES = 1 << 9
INTENT_DIRECT_MESSAGES = 1 << 12
INTENT_MESSAGE_CONTENT = 1 << 15
JSON_CONTENT_TYPE = "application/json"
"""discord.py only parses bodies whose Content-Type is exactly this (no charset)."""

# interaction types / callback types (Discord's numbers)
APPLICATION_COMMAND, MESSAGE_COMPONENT, AUTOCOMPLETE, MODAL_SUBMIT = 2, 3, 4, 5
CB_MESSAGE, CB_DEFER, CB_DEFER_UPDATE, CB_UPDATE, CB_AUTOCOMPLETE, CB_MODAL = 4, 5, 6, 7, 8, 9
_ALLOWED_CALLBACKS = {
    APPLICATION_COMMAND: {CB_MESSAGE, CB_DEFER, CB_MODAL},
    MESSAGE_COMPONENT: {CB_MESSAGE, CB_DEFER, CB_DEFER_UPDATE, CB_UPDATE, CB_MODAL},
    AUTOCOMPLETE: {CB_AUTOCOMPLETE},
    MODAL_SUBMIT: {CB_MESSAGE, CB_DEFER, CB_DEFER_UPDATE, CB_UPDATE},
}


class FakeTimeout(AssertionError):
    """A wait helper ran out of time; the message lists what the fake did see."""


class _HTTPError(Exception):
    """Raised by route handlers: answered as Discord's JSON error body."""

    def __init__(self, status: int, code: int, message: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(f"{status} {code} {message}")
        self.status, self.code, self.message = status, code, message
        self.headers = dict(headers or {})


@dataclasses.dataclass
class _Body:
    """A parsed request body: JSON (or ``payload_json``) plus uploaded files."""

    json: Any
    files: list[RecordedFile]


@dataclasses.dataclass
class _Session:
    """A gateway session: its id and every dispatch sent in it (replayed on RESUME)."""

    id: str
    seq: int = 0
    log: list[dict[str, Any]] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class _Connection:
    """One gateway websocket."""

    number: int
    ws: web.WebSocketResponse
    ready: bool = False


Handler = Callable[..., Any]


def _json_response(status: int, body: Any, headers: Mapping[str, str] | None = None) -> web.Response:
    all_headers = {"Content-Type": JSON_CONTENT_TYPE, **(headers or {})}
    return web.Response(status=status, body=json.dumps(body).encode(), headers=all_headers)


class FakeDiscord:
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
        self.host = host
        self.port = port
        self.bot_token = bot_token
        """When set, bot-authenticated REST calls with another token get 401 (login fails)."""
        self.application_id = application_id or payloads.snowflake()
        self.bot_user_id = self.application_id
        self.bot_name = bot_name
        self.requests: list[RecordedRequest] = []
        self.gateway_frames: list[GatewayFrame] = []
        self.faults: list[Fault] = []
        self.token_lifetime: float | None = None
        """Seconds after which interaction webhooks answer 401/50027 (None: never; Discord: 900)."""
        self.callback_deadline: float | None = None
        """Seconds after which an interaction callback answers 404/10062 (None: never; Discord: 3)."""
        self.intents: int | None = None
        """The intents of the last IDENTIFY."""
        self.guilds: dict[int, FakeGuild] = {}
        self.channels: dict[int, dict[str, Any]] = {}
        self.messages: dict[int, dict[str, Any]] = {}
        self.attachments: dict[int, FakeAttachment] = {}
        self.interactions: dict[int, FakeInteraction] = {}
        self.global_commands: list[dict[str, Any]] = []
        self.guild_commands: dict[int, list[dict[str, Any]]] = {}
        self.connections = 0
        """How many gateway websockets have been opened."""
        self.identify_count = 0
        self.resume_count = 0
        self._session: _Session | None = None
        self._live: _Connection | None = None
        self._open: list[_Connection] = []
        self._changed = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._routes: list[tuple[str, re.Pattern[str], Handler]] = []
        self._add_routes()
        self._seed_world()

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> FakeDiscord:
        """Bind (port 0 = any free port) and start serving."""
        if self._runner is not None:
            raise RuntimeError("FakeDiscord.start(): already started")
        app = web.Application(client_max_size=256 * 1024 * 1024)
        app.router.add_get("/gateway", self._gateway)
        app.router.add_get("/cdn/attachments/{attachment_id}/{filename}", self._cdn)
        app.router.add_route("*", API_PREFIX + "/{tail:.*}", self._rest)
        app.router.add_route("*", "/{tail:.*}", self._unknown)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        server = site._server
        assert server is not None and server.sockets, "aiohttp site did not bind"
        self.port = server.sockets[0].getsockname()[1]
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

    @property
    def cdn_base(self) -> str:
        """Where attachment bytes are served."""
        return self.base_url + "/cdn/attachments"

    # ------------------------------------------------------------------ world
    def _seed_world(self) -> None:
        guild = self.add_guild("Fake Guild")
        self.guild = guild
        self.channel_id = next(iter(guild.channels))
        self.bot_member = self.add_member(guild.id, self.bot_name, permissions=payloads.PERMS_ALL, bot=True,
                                          user_id=self.bot_user_id)
        self.member = self.add_member(guild.id, "alice")
        self.admin = self.add_member(guild.id, "root", permissions=payloads.PERMS_ALL)

    @property
    def bot_user(self) -> dict[str, Any]:
        """The bot's user object (``GET /users/@me``, READY)."""
        return payloads.user_payload(self.bot_user_id, self.bot_name, bot=True)

    def add_guild(self, name: str, *, premium_tier: int = 0, channel_name: str = "general") -> FakeGuild:
        """A guild with an @everyone role and one text channel."""
        if premium_tier not in payloads.PREMIUM_TIER_UPLOAD_LIMIT_BYTES:
            raise ValueError(f"add_guild(premium_tier={premium_tier!r}): must be 0..3")
        guild = FakeGuild(id=payloads.snowflake(), name=name, owner_id=0, premium_tier=premium_tier)
        guild.roles[guild.id] = payloads.role_payload(guild.id, "@everyone", payloads.PERMS_MEMBER)
        self.guilds[guild.id] = guild
        self.add_channel(guild.id, channel_name)
        return guild

    def add_channel(self, guild_id: int, name: str) -> dict[str, Any]:
        """A text channel in ``guild_id``."""
        guild = self._guild(guild_id)
        channel = payloads.text_channel_payload(payloads.snowflake(), guild.id, name, position=len(guild.channels))
        guild.channels[int(channel["id"])] = channel
        self.channels[int(channel["id"])] = channel
        return channel

    def add_role(self, guild_id: int, name: str, *, permissions: int = 0) -> int:
        """A role in ``guild_id``; returns its id."""
        guild = self._guild(guild_id)
        role_id = payloads.snowflake()
        guild.roles[role_id] = payloads.role_payload(role_id, name, permissions, position=len(guild.roles))
        return role_id

    def add_member(
        self, guild_id: int, username: str, *, permissions: int = payloads.PERMS_MEMBER, roles: Sequence[int] = (),
        flags: int = 0, bot: bool = False, user_id: int | None = None,
    ) -> FakeMember:
        """A member of ``guild_id``; ``permissions`` is what interactions report for them (0 is allowed)."""
        guild = self._guild(guild_id)
        for role in roles:
            if role not in guild.roles:
                raise ValueError(f"add_member(roles=...): role {role} is not in guild {guild_id}")
        member = FakeMember(guild_id=guild.id, user_id=user_id or payloads.snowflake(), username=username,
                            permissions=permissions, roles=list(roles), flags=flags, bot=bot)
        guild.members[member.user_id] = member
        if guild.owner_id == 0 and not bot:
            guild.owner_id = member.user_id
        return member

    def set_member_permissions(self, member: FakeMember, permissions: int) -> None:
        """Change what interactions report as ``member.permissions`` (e.g. 0 to test admin checks)."""
        if permissions < 0:
            raise ValueError(f"set_member_permissions(permissions={permissions}): must be >= 0")
        member.permissions = permissions

    def add_attachment(
        self, data: bytes, filename: str, *, content_type: str | None = None, width: int | None = None,
        height: int | None = None,
    ) -> FakeAttachment:
        """Register bytes on the CDN route; the returned attachment goes into options, messages, resolved data."""
        if not filename or "/" in filename:
            raise ValueError(f"add_attachment(filename={filename!r}): need a plain file name")
        attachment_id = payloads.snowflake()
        attachment = FakeAttachment(
            id=attachment_id, filename=filename, data=bytes(data),
            content_type=content_type or payloads.content_type_for(filename),
            url=f"{self.cdn_base}/{attachment_id}/{filename}", width=width, height=height,
        )
        self.attachments[attachment_id] = attachment
        return attachment

    def add_message(
        self, *, author: FakeMember | None = None, content: str = "", channel_id: int | None = None,
        attachments: Sequence[FakeAttachment] = (), embeds: Sequence[dict[str, Any]] = (),
    ) -> dict[str, Any]:
        """Store a message (from ``author``, default ``member``) without dispatching it; returns its payload."""
        author = author or self.member
        message = payloads.message_payload(
            message_id=payloads.snowflake(), channel_id=channel_id or self.channel_id, author=author.user,
            content=content, attachments=[a.payload() for a in attachments], embeds=list(embeds),
        )
        self.messages[int(message["id"])] = message
        return message

    def commands(self, guild_id: int | None = None) -> list[dict[str, Any]]:
        """The application commands the bot synced (global, or for ``guild_id``)."""
        return list(self.global_commands if guild_id is None else self.guild_commands.get(guild_id, []))

    def find_command(self, name: str, *, command_type: int = 1, guild_id: int | None = None) -> dict[str, Any] | None:
        """A synced command by name and type: the guild's first, then global."""
        pools = ([self.guild_commands.get(guild_id, [])] if guild_id is not None else []) + [self.global_commands]
        for pool in pools:
            for command in pool:
                if command["name"] == name and int(command.get("type", 1)) == command_type:
                    return command
        return None

    def channel_messages(self, channel_id: int | None = None) -> list[dict[str, Any]]:
        """Messages currently in a channel (default: the default channel), oldest first."""
        channel_id = channel_id or self.channel_id
        return sorted((m for m in self.messages.values() if int(m["channel_id"]) == channel_id),
                      key=lambda m: int(m["id"]))

    def _guild(self, guild_id: int) -> FakeGuild:
        try:
            return self.guilds[guild_id]
        except KeyError:
            raise ValueError(f"no guild {guild_id} in the fake (have {sorted(self.guilds)})") from None

    # ------------------------------------------------------------------ faults
    def add_fault(self, fault: Fault) -> Fault:
        """Install a fault rule (checked in order, before routing); returns it (``.hits`` counts uses)."""
        self.faults.append(fault)
        return fault

    def fail(self, *, status: int = 500, code: int = 0, message: str = "fake failure", method: str | None = None,
             path: str | None = None, times: int | None = 1) -> Fault:
        """Answer matching requests with ``status`` and Discord's JSON error body (5xx: discord.py retries)."""
        return self.add_fault(Fault("status", method=method, path=path, times=times, status=status, code=code,
                                    message=message))

    def rate_limit(self, *, retry_after: float = 0.2, is_global: bool = False, method: str | None = None,
                   path: str | None = None, times: int | None = 1) -> Fault:
        """Answer matching requests with 429, ``Retry-After``, ``X-RateLimit-*`` and ``Via`` (discord.py retries)."""
        return self.add_fault(Fault("rate_limit", method=method, path=path, times=times, status=429,
                                    retry_after=retry_after, is_global=is_global))

    def exhaust_bucket(self, *, reset_after: float = 0.5, method: str | None = None, path: str | None = None,
                       times: int | None = 1) -> Fault:
        """Answer normally but with ``X-RateLimit-Remaining: 0`` so discord.py waits before the next call."""
        return self.add_fault(Fault("exhaust", method=method, path=path, times=times, retry_after=reset_after))

    def slow(self, delay: float, *, method: str | None = None, path: str | None = None,
             times: int | None = 1) -> Fault:
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

    # ------------------------------------------------------------------ waiting
    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait_until(self, check: Callable[[], Any], timeout: float = DEFAULT_TIMEOUT_SECONDS,
                         what: Callable[[], str] | str = "condition") -> Any:
        """Until ``check()`` returns something other than None/False (returned); FakeTimeout naming ``what``.

        Re-checks on every change the fake sees and every ``POLL_SECONDS`` (for bot-side state).
        """
        deadline = time.monotonic() + timeout
        while True:
            result = check()
            if result is not None and result is not False:
                return result
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise FakeTimeout(what() if callable(what) else f"{what} not met within {timeout}s")
            event = self._changed
            try:
                await asyncio.wait_for(event.wait(), min(remaining, POLL_SECONDS))
            except asyncio.TimeoutError:
                pass

    async def wait_for(self, predicate: Callable[[RecordedRequest], bool], timeout: float = DEFAULT_TIMEOUT_SECONDS,
                       *, after: int = 0) -> RecordedRequest:
        """The first answered request (from index ``after``) matching ``predicate``; FakeTimeout otherwise."""
        def check() -> RecordedRequest | None:
            return next((r for r in self.requests[after:] if r.status and predicate(r)), None)

        def what() -> str:
            seen = "\n  ".join(r.describe() for r in self.requests[after:][-25:]) or "(none)"
            return f"no request matched within {timeout}s; requests seen:\n  {seen}"

        return await self.wait_until(check, timeout, what)

    wait_for_request = wait_for

    async def wait_for_gateway(self, predicate: Callable[[GatewayFrame], bool],
                               timeout: float = DEFAULT_TIMEOUT_SECONDS) -> GatewayFrame:
        """The first gateway frame from the client matching ``predicate``."""
        return await self.wait_until(
            lambda: next((f for f in self.gateway_frames if predicate(f)), None), timeout,
            lambda: f"no gateway frame matched within {timeout}s; ops seen: {[f.op for f in self.gateway_frames]}")

    @property
    def connected(self) -> bool:
        """Whether a bot is on the gateway now (identified or resumed on a live websocket)."""
        return self._live is not None and self._live.ready

    async def wait_until_connected(self, timeout: float = DEFAULT_TIMEOUT_SECONDS) -> None:
        """Until a client has identified (READY sent) or resumed on a live websocket."""
        await self.wait_until(lambda: self.connected, timeout,
                               lambda: f"no bot connected to the gateway within {timeout}s "
                                       f"(connections={self.connections}, identify={self.identify_count})")

    # ------------------------------------------------------------------ gateway
    async def dispatch(self, event: str, data: dict[str, Any], *, timeout: float = DEFAULT_TIMEOUT_SECONDS,
                       queue: bool = False) -> int:
        """Send a dispatch (op 0) to the connected bot, waiting up to ``timeout`` for one; returns its ``s``.

        With ``queue`` and a session but no live websocket (mid-reconnect), the event only goes into the session
        log, and the bot gets it replayed when it RESUMEs, as Discord does.
        """
        if not (queue and self._session is not None):
            await self.wait_until_connected(timeout)
        return await self._send_dispatch(event, data)

    async def _send_dispatch(self, event: str, data: dict[str, Any]) -> int:
        session = self._session
        assert session is not None
        session.seq += 1
        frame = {"op": 0, "t": event, "s": session.seq, "d": data}
        session.log.append(frame)
        conn = self._live
        if conn is not None and not conn.ws.closed:
            await conn.ws.send_str(json.dumps(frame))
        return session.seq

    async def gateway_reconnect(self, *, wait: bool = True, timeout: float = DEFAULT_TIMEOUT_SECONDS) -> None:
        """Send RECONNECT (op 7); with ``wait``, return once the bot has resumed on a new websocket."""
        await self._send_op(7, None, wait=wait, timeout=timeout)

    async def gateway_invalid_session(self, *, resumable: bool = False, wait: bool = True,
                                      timeout: float = 10.0) -> None:
        """Send INVALID_SESSION (op 9); the bot re-identifies (or resumes if ``resumable``).

        discord.py's ``before_identify_hook`` sleeps 5 s before a non-initial IDENTIFY; test bots may override it.
        """
        await self._send_op(9, resumable, wait=wait, timeout=timeout)

    async def gateway_drop(self, *, code: int = 4000, wait: bool = True,
                           timeout: float = DEFAULT_TIMEOUT_SECONDS) -> None:
        """Close the websocket from the server side; discord.py reconnects and resumes."""
        conn = await self._live_connection(timeout)
        before = self.connections
        self._live = None
        await conn.ws.close(code=code)
        if wait:
            await self._wait_reconnected(before, timeout)

    async def _live_connection(self, timeout: float) -> _Connection:
        await self.wait_until_connected(timeout)
        assert self._live is not None
        return self._live

    async def _send_op(self, op: int, data: Any, *, wait: bool, timeout: float) -> None:
        conn = await self._live_connection(timeout)
        before = self.connections
        self._live = None
        await conn.ws.send_str(json.dumps({"op": op, "d": data, "s": None, "t": None}))
        if wait:
            await self._wait_reconnected(before, timeout)

    async def _wait_reconnected(self, before: int, timeout: float) -> None:
        await self.wait_until(
            lambda: self._live is not None and self._live.ready and self._live.number > before, timeout,
            lambda: f"the bot did not reconnect within {timeout}s (connections={self.connections})")

    async def _gateway(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(autoping=True, max_msg_size=0)
        await ws.prepare(request)
        self.connections += 1
        conn = _Connection(number=self.connections, ws=ws)
        self._open.append(conn)
        await ws.send_str(json.dumps({"op": 10, "d": {"heartbeat_interval": HEARTBEAT_INTERVAL_MS},
                                      "s": None, "t": None}))
        try:
            async for msg in ws:
                if msg.type is not WSMsgType.TEXT:
                    continue
                frame = json.loads(msg.data)
                op, data = frame.get("op"), frame.get("d")
                self.gateway_frames.append(GatewayFrame(conn.number, op, data, time.monotonic()))
                await self._on_gateway_op(conn, op, data)
                self._notify()
        finally:
            if conn in self._open:
                self._open.remove(conn)
            if self._live is conn:
                self._live = None
            self._notify()
        return ws

    async def _on_gateway_op(self, conn: _Connection, op: int, data: Any) -> None:
        if op == 1:
            await conn.ws.send_str(json.dumps({"op": 11, "d": None, "s": None, "t": None}))
        elif op == 2:
            await self._identify(conn, data)
        elif op == 6:
            await self._resume(conn, data)
        elif op == 8:
            await self._members_chunk(conn, data)

    async def _identify(self, conn: _Connection, data: dict[str, Any]) -> None:
        if self.bot_token is not None and data.get("token") != self.bot_token:
            await conn.ws.close(code=4004, message=b"Authentication failed.")
            return
        self.identify_count += 1
        self.intents = int(data.get("intents", 0))
        self._session = _Session(id=secrets.token_hex(16))
        self._live = conn
        await self._send_dispatch("READY", {
            "v": 10,
            "user": self.bot_user,
            "guilds": [{"id": str(g), "unavailable": True} for g in self.guilds],
            "session_id": self._session.id,
            "resume_gateway_url": self.gateway_url,
            "shard": [0, 1],
            "application": {"id": str(self.application_id), "flags": 0},
            "private_channels": [],
            "relationships": [],
            "presences": [],
            "guild_join_requests": [],
            "geo_ordered_rtc_regions": [],
            "auth": {},
            "user_settings": {},
        })
        for guild in self.guilds.values():
            await self._send_dispatch("GUILD_CREATE", guild.payload())
        conn.ready = True

    async def _resume(self, conn: _Connection, data: dict[str, Any]) -> None:
        session = self._session
        if session is None or data.get("session_id") != session.id:
            await conn.ws.send_str(json.dumps({"op": 9, "d": False, "s": None, "t": None}))
            return
        self.resume_count += 1
        self._live = conn
        last = int(data.get("seq") or 0)
        for frame in [f for f in session.log if f["s"] > last]:
            await conn.ws.send_str(json.dumps(frame))
        await self._send_dispatch("RESUMED", {})
        conn.ready = True

    async def _members_chunk(self, conn: _Connection, data: dict[str, Any]) -> None:
        guild = self.guilds.get(int(data.get("guild_id", 0)))
        if guild is None:
            return
        await self._send_dispatch("GUILD_MEMBERS_CHUNK", {
            "guild_id": str(guild.id), "members": [m.payload(with_permissions=False) for m in guild.members.values()],
            "chunk_index": 0, "chunk_count": 1, "not_found": [], "nonce": data.get("nonce"),
        })

    # ------------------------------------------------------------------ injection
    def _interaction_base(
        self, interaction_type: int, *, member: FakeMember | None, channel_id: int | None, guild_id: int | None,
        app_permissions: int, attachment_size_limit: int | None, locale: str,
    ) -> FakeInteraction:
        member = member or self.member
        guild = self._guild(guild_id or member.guild_id)
        channel_id = channel_id or next(iter(guild.channels))
        channel = self.channels.get(channel_id)
        if channel is None:
            raise ValueError(f"no channel {channel_id} in the fake")
        interaction_id = payloads.snowflake()
        token = f"fake-interaction-{interaction_id}-{secrets.token_urlsafe(24)}"
        limit = attachment_size_limit if attachment_size_limit is not None else guild.upload_limit
        payload: dict[str, Any] = {
            "id": str(interaction_id),
            "application_id": str(self.application_id),
            "type": interaction_type,
            "token": token,
            "version": 1,
            "guild_id": str(guild.id),
            "guild": {"id": str(guild.id), "locale": "en-US", "features": []},
            "channel_id": str(channel_id),
            "channel": channel,
            "member": member.payload(with_permissions=True),
            "app_permissions": str(app_permissions),
            "locale": locale,
            "guild_locale": "en-US",
            "entitlements": [],
            "authorizing_integration_owners": {"0": str(guild.id)},
            "context": 0,
            "attachment_size_limit": limit,
        }
        return FakeInteraction(
            id=interaction_id, token=token, type=interaction_type, application_id=self.application_id,
            guild_id=guild.id, channel_id=channel_id, user_id=member.user_id, payload=payload, created_at=0.0,
            attachment_size_limit=limit,
        )

    async def _inject(self, interaction: FakeInteraction, timeout: float) -> FakeInteraction:
        await self.wait_until_connected(timeout)
        interaction.created_at = time.monotonic()
        self.interactions[interaction.id] = interaction
        await self._send_dispatch("INTERACTION_CREATE", interaction.payload)
        return interaction

    async def inject_slash(
        self, command: str, options: Mapping[str, Any] | None = None, *, member: FakeMember | None = None,
        channel_id: int | None = None, guild_id: int | None = None, app_permissions: int = payloads.PERMS_ALL,
        attachment_size_limit: int | None = None, locale: str = "en-US", timeout: float = DEFAULT_TIMEOUT_SECONDS,
    ) -> FakeInteraction:
        """Dispatch a slash command: ``command`` is ``"name"``, ``"name sub"`` or ``"name group sub"``.

        ``options`` maps option names to values (str/int/float/bool, FakeAttachment, FakeMember, or
        :class:`options.Option`); types come from the synced schema when there is one.
        """
        name, *path = command.split()
        interaction = self._interaction_base(APPLICATION_COMMAND, member=member, channel_id=channel_id,
                                             guild_id=guild_id, app_permissions=app_permissions,
                                             attachment_size_limit=attachment_size_limit, locale=locale)
        synced = self.find_command(name, command_type=1, guild_id=interaction.guild_id)
        built, resolved = build_options(synced, path, options or {}, guild_id=interaction.guild_id)
        data: dict[str, Any] = {
            "id": synced["id"] if synced else str(payloads.snowflake()), "name": name, "type": 1, "options": built,
        }
        if resolved:
            data["resolved"] = resolved
        if synced and synced.get("guild_id"):
            data["guild_id"] = synced["guild_id"]
        interaction.payload["data"] = data
        return await self._inject(interaction, timeout)

    async def inject_message_command(
        self, name: str, message: dict[str, Any], *, member: FakeMember | None = None, channel_id: int | None = None,
        app_permissions: int = payloads.PERMS_ALL, attachment_size_limit: int | None = None,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
    ) -> FakeInteraction:
        """Dispatch a message context-menu command (Apps -> ``name``) on ``message`` (from :meth:`add_message`)."""
        interaction = self._interaction_base(APPLICATION_COMMAND, member=member,
                                             channel_id=channel_id or int(message["channel_id"]), guild_id=None,
                                             app_permissions=app_permissions,
                                             attachment_size_limit=attachment_size_limit, locale="en-US")
        synced = self.find_command(name, command_type=3, guild_id=interaction.guild_id)
        data: dict[str, Any] = {
            "id": synced["id"] if synced else str(payloads.snowflake()), "name": name, "type": 3,
            "target_id": message["id"], "resolved": {"messages": {message["id"]: message}},
        }
        if synced and synced.get("guild_id"):
            data["guild_id"] = synced["guild_id"]
        interaction.payload["data"] = data
        return await self._inject(interaction, timeout)

    async def inject_component(
        self, custom_id: str, message: dict[str, Any] | int, *, component_type: int = 2,
        values: Sequence[str] | None = None, member: FakeMember | None = None,
        app_permissions: int = payloads.PERMS_ALL, attachment_size_limit: int | None = None,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
    ) -> FakeInteraction:
        """Dispatch a component click (button: type 2; selects take ``values``) on a message the bot sent.

        ``message`` is a message id or payload; its id must be the one the fake returned for the bot's message.
        """
        stored = self._message_for(message)
        interaction = self._interaction_base(MESSAGE_COMPONENT, member=member, channel_id=int(stored["channel_id"]),
                                             guild_id=None, app_permissions=app_permissions,
                                             attachment_size_limit=attachment_size_limit, locale="en-US")
        data: dict[str, Any] = {"custom_id": custom_id, "component_type": component_type}
        if values is not None:
            data["values"] = list(values)
        interaction.payload["data"] = data
        interaction.payload["message"] = stored
        interaction.message_id = int(stored["id"])
        return await self._inject(interaction, timeout)

    async def inject_modal_submit(
        self, custom_id: str, values: Mapping[str, str], *, member: FakeMember | None = None,
        message: dict[str, Any] | int | None = None, channel_id: int | None = None,
        app_permissions: int = payloads.PERMS_ALL, attachment_size_limit: int | None = None,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
    ) -> FakeInteraction:
        """Dispatch a modal submit: ``custom_id`` of the modal, ``values`` text-input custom_id -> value."""
        stored = self._message_for(message) if message is not None else None
        interaction = self._interaction_base(
            MODAL_SUBMIT, member=member, channel_id=int(stored["channel_id"]) if stored else channel_id,
            guild_id=None, app_permissions=app_permissions, attachment_size_limit=attachment_size_limit,
            locale="en-US")
        rows = [{"type": 1, "id": i + 1, "components": [{"type": 4, "id": 100 + i, "custom_id": k, "value": v}]}
                for i, (k, v) in enumerate(values.items())]
        interaction.payload["data"] = {"custom_id": custom_id, "components": rows}
        if stored is not None:
            interaction.payload["message"] = stored
            interaction.message_id = int(stored["id"])
        return await self._inject(interaction, timeout)

    async def inject_message(
        self, content: str, *, author: FakeMember | None = None, channel_id: int | None = None,
        attachments: Sequence[FakeAttachment] = (), mentions: Sequence[FakeMember] = (),
        reply_to: dict[str, Any] | int | None = None, embeds: Sequence[dict[str, Any]] = (),
        timeout: float = DEFAULT_TIMEOUT_SECONDS, queue: bool = False,
    ) -> dict[str, Any]:
        """Store and dispatch MESSAGE_CREATE; returns the full stored message.

        Without the MESSAGE_CONTENT intent the bot receives empty content/embeds/attachments/components unless
        the message mentions it (and a replied-to message is blanked the same way), as Discord does.
        """
        author = author or self.member
        channel_id = channel_id or self.channel_id
        reference = referenced = None
        if reply_to is not None:
            referenced = self._message_for(reply_to)
            reference = {"type": 0, "message_id": referenced["id"], "channel_id": referenced["channel_id"],
                         "guild_id": str(author.guild_id), "fail_if_not_exists": True}
        message = payloads.message_payload(
            message_id=payloads.snowflake(), channel_id=channel_id, author=author.user, content=content,
            attachments=[a.payload() for a in attachments], embeds=list(embeds),
            mentions=[m.user for m in mentions], message_type=19 if reply_to is not None else 0,
            message_reference=reference, referenced_message=referenced,
        )
        self.messages[int(message["id"])] = message
        await self.dispatch("MESSAGE_CREATE", self._gateway_message(message, author.guild_id), timeout=timeout,
                            queue=queue)
        return message

    def _gateway_message(self, message: dict[str, Any], guild_id: int | None) -> dict[str, Any]:
        event = self._visible(message)
        if event.get("referenced_message"):
            event["referenced_message"] = self._visible(event["referenced_message"])
        if guild_id is not None:
            event["guild_id"] = str(guild_id)
            member = self.guilds[guild_id].members.get(int(message["author"]["id"]))
            if member is not None:
                event["member"] = {k: v for k, v in member.payload(with_permissions=False).items() if k != "user"}
        return event

    def _visible(self, message: dict[str, Any]) -> dict[str, Any]:
        """What the bot may see of ``message`` given its intents (Discord blanks content without the intent)."""
        event = dict(message)
        intents = self.intents or 0
        channel = self.channels.get(int(message["channel_id"]), {})
        mentioned = any(int(u["id"]) == self.bot_user_id for u in message.get("mentions", []))
        own = int(message["author"]["id"]) == self.bot_user_id
        if not (intents & INTENT_MESSAGE_CONTENT or mentioned or own or channel.get("type") == 1):
            event.update(content="", embeds=[], attachments=[], components=[])
        return event

    def _message_for(self, message: dict[str, Any] | int) -> dict[str, Any]:
        message_id = int(message["id"]) if isinstance(message, dict) else int(message)
        try:
            return self.messages[message_id]
        except KeyError:
            raise ValueError(f"no message {message_id} in the fake (was it sent through the fake?)") from None

    # ------------------------------------------------------------------ HTTP plumbing
    def _add_routes(self) -> None:
        snowflake, token = r"(\d+)", r"([^/]+)"
        table: list[tuple[str, str, Handler]] = [
            ("GET", r"/users/@me", self._get_me),
            ("GET", rf"/users/{snowflake}", self._get_user),
            ("POST", r"/users/@me/channels", self._create_dm),
            ("GET", r"/gateway", self._get_gateway),
            ("GET", r"/gateway/bot", self._get_gateway_bot),
            ("GET", r"/oauth2/applications/@me", self._get_application),
            ("GET", r"/applications/@me", self._get_application),
            ("GET", rf"/applications/{snowflake}/commands", self._get_commands),
            ("PUT", rf"/applications/{snowflake}/commands", self._put_commands),
            ("POST", rf"/applications/{snowflake}/commands", self._post_command),
            ("DELETE", rf"/applications/{snowflake}/commands/{snowflake}", self._delete_command),
            ("GET", rf"/applications/{snowflake}/guilds/{snowflake}/commands", self._get_commands),
            ("PUT", rf"/applications/{snowflake}/guilds/{snowflake}/commands", self._put_commands),
            ("POST", rf"/applications/{snowflake}/guilds/{snowflake}/commands", self._post_command),
            ("DELETE", rf"/applications/{snowflake}/guilds/{snowflake}/commands/{snowflake}", self._delete_command),
            ("POST", rf"/interactions/{snowflake}/{token}/callback", self._callback),
            ("POST", rf"/webhooks/{snowflake}/{token}", self._webhook_execute),
            ("GET", rf"/webhooks/{snowflake}/{token}/messages/(@original|\d+)", self._webhook_get),
            ("PATCH", rf"/webhooks/{snowflake}/{token}/messages/(@original|\d+)", self._webhook_edit),
            ("DELETE", rf"/webhooks/{snowflake}/{token}/messages/(@original|\d+)", self._webhook_delete),
            ("GET", rf"/channels/{snowflake}", self._get_channel),
            ("GET", rf"/channels/{snowflake}/messages", self._list_messages),
            ("POST", rf"/channels/{snowflake}/messages", self._create_message),
            ("GET", rf"/channels/{snowflake}/messages/{snowflake}", self._get_message),
            ("PATCH", rf"/channels/{snowflake}/messages/{snowflake}", self._edit_message),
            ("DELETE", rf"/channels/{snowflake}/messages/{snowflake}", self._delete_message),
            ("PUT", rf"/channels/{snowflake}/messages/{snowflake}/reactions/([^/]+)/@me", self._add_reaction),
            ("DELETE", rf"/channels/{snowflake}/messages/{snowflake}/reactions/([^/]+)/@me", self._remove_reaction),
            ("POST", rf"/channels/{snowflake}/typing", self._typing),
            ("GET", rf"/guilds/{snowflake}", self._get_guild),
            ("GET", rf"/guilds/{snowflake}/roles", self._get_roles),
            ("GET", rf"/guilds/{snowflake}/members/{snowflake}", self._get_member),
        ]
        self._routes = [(method, re.compile(pattern + r"/?"), handler) for method, pattern, handler in table]

    async def _read_body(self, request: web.Request) -> _Body:
        content_type = request.headers.get("Content-Type", "")
        if content_type.startswith("multipart/"):
            body_json: Any = None
            files: list[RecordedFile] = []
            reader = await request.multipart()
            async for part in reader:
                if part.name == "payload_json":
                    body_json = json.loads(await part.text())
                elif part.filename is not None:
                    data = bytes(await part.read())
                    files.append(RecordedFile(field=part.name or "", filename=part.filename,
                                              content_type=part.headers.get("Content-Type", ""), data=data))
            return _Body(body_json, files)
        raw = await request.read()
        if not raw:
            return _Body(None, [])
        if content_type != JSON_CONTENT_TYPE:
            raise _HTTPError(400, 50035, f"fake discord: body sent with Content-Type {content_type!r}")
        return _Body(json.loads(raw), [])

    def _record(self, request: web.Request, path: str, body: _Body | None) -> RecordedRequest:
        record = RecordedRequest(
            method=request.method, path=path, query=dict(request.query), headers=dict(request.headers),
            json=body.json if body else None, files=body.files if body else [], time=time.monotonic(),
            wall_time=time.time(),
        )
        return record

    def _finish(self, record: RecordedRequest, response: web.Response) -> web.Response:
        record.status = response.status
        if response.body and response.content_type == JSON_CONTENT_TYPE:
            record.response = json.loads(response.body)  # type: ignore[arg-type]
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
                return _json_response(429, fault.rate_limit_body(), headers)
            return _json_response(fault.status, {"message": fault.message, "code": fault.code})
        return None

    def _exhaust_headers(self, record: RecordedRequest) -> dict[str, str]:
        for fault in self.faults:
            if fault.kind == "exhaust" and fault.matches(record.method, record.path):
                fault.hits += 1
                record.fault = "exhaust"
                return {"X-RateLimit-Limit": "5", "X-RateLimit-Remaining": "0",
                        "X-RateLimit-Reset": f"{time.time() + fault.retry_after:.3f}",
                        "X-RateLimit-Reset-After": f"{fault.retry_after:.3f}", "X-RateLimit-Bucket": "fake-bucket"}
        return {}

    async def _rest(self, request: web.Request) -> web.Response:
        path = "/" + request.match_info["tail"]
        try:
            body = await self._read_body(request)
        except _HTTPError as error:
            record = self._record(request, path, None)
            return self._finish(record, _json_response(error.status, {"message": error.message, "code": error.code}))
        record = self._record(request, path, body)
        faulted = await self._apply_faults(record)
        if faulted is not None:
            return self._finish(record, faulted)
        for method, pattern, handler in self._routes:
            match = pattern.fullmatch(path)
            if match is None or method != request.method:
                continue
            if self.bot_token is not None and record.has_bot_auth and \
                    record.headers["Authorization"] != f"Bot {self.bot_token}":
                return self._finish(record, _json_response(401, {"message": "401: Unauthorized", "code": 0}))
            try:
                status, result = await handler(record, body, *match.groups())
            except _HTTPError as error:
                return self._finish(record, _json_response(error.status, {"message": error.message,
                                                                          "code": error.code}, error.headers))
            headers = self._exhaust_headers(record)
            if status == 204:
                return self._finish(record, web.Response(status=204, headers=headers))
            return self._finish(record, _json_response(status, result, headers))
        message = f"fake discord: no route for {request.method} {API_PREFIX}{path}"
        return self._finish(record, _json_response(404, {"message": message, "code": 0}))

    async def _unknown(self, request: web.Request) -> web.Response:
        record = self._record(request, request.path, None)
        message = f"fake discord: no route for {request.method} {request.path}"
        return self._finish(record, _json_response(404, {"message": message, "code": 0}))

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

    # ------------------------------------------------------------------ messages
    def _attachments_from(self, body: _Body, existing: list[dict[str, Any]] | None, limit: int) -> list[dict[str, Any]]:
        """Attachment objects for a create/edit: kept existing ones (by id) plus uploaded ``files[n]``."""
        files = {f.field: f for f in body.files}
        for upload in body.files:
            if upload.size > limit:
                raise _HTTPError(413, 40005, f"Request entity too large: {upload.filename} is {upload.size} bytes, "
                                             f"limit {limit}")
        spec = (body.json or {}).get("attachments")
        if spec is None:
            spec = [{"id": i} for i in range(len(body.files))] if body.files else None
        if spec is None:
            return list(existing or [])
        kept = {a["id"]: a for a in existing or []}
        result: list[dict[str, Any]] = []
        for entry in spec:
            entry_id = str(entry.get("id"))
            upload = files.get(f"files[{entry_id}]")
            if upload is not None:
                stored = self.add_attachment(upload.data, entry.get("filename") or upload.filename)
                stored.description = entry.get("description")
                result.append(stored.payload())
            elif entry_id in kept:
                result.append(kept[entry_id])
            else:
                raise _HTTPError(400, 50035, f"Invalid Form Body: attachments[{entry_id}] names no file part "
                                             f"and no existing attachment")
        return result

    def _new_message(
        self, body: _Body, *, channel_id: int, author: dict[str, Any], limit: int, webhook: bool,
        flags: int = 0, reference: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        data = body.json or {}
        content = data.get("content") or ""
        if not (content or data.get("embeds") or body.files or data.get("components") or data.get("sticker_ids")
                or data.get("poll")):
            raise _HTTPError(400, 50006, "Cannot send an empty message")
        if len(content) > 2000:
            raise _HTTPError(400, 50035, f"Invalid Form Body: content is {len(content)} characters (max 2000)")
        referenced = None
        if reference is not None:
            referenced = self.messages.get(int(reference["message_id"]))
            if referenced is None and reference.get("fail_if_not_exists", True):
                raise _HTTPError(400, 50035, "Invalid Form Body: message_reference: Unknown message")
        message = payloads.message_payload(
            message_id=payloads.snowflake(), channel_id=channel_id, author=author, content=content,
            attachments=self._attachments_from(body, None, limit), embeds=data.get("embeds") or [],
            components=data.get("components") or [], flags=flags | int(data.get("flags") or 0),
            webhook_id=self.application_id if webhook else None,
            application_id=self.application_id if webhook else None, nonce=data.get("nonce"),
            message_reference=reference if referenced is not None else None, referenced_message=referenced,
            message_type=19 if referenced is not None else 0,
        )
        mentions = [int(m) for m in re.findall(r"<@!?(\d+)>", content)]
        message["mentions"] = [payloads.user_payload(m.user_id, m.username, bot=m.bot)
                               for g in self.guilds.values() for m in g.members.values() if m.user_id in mentions]
        self.messages[int(message["id"])] = message
        return message

    def _apply_edit(self, message: dict[str, Any], body: _Body, limit: int) -> dict[str, Any]:
        data = body.json or {}
        for key in ("content", "embeds", "components"):
            if key in data:
                message[key] = data[key] if data[key] is not None else ("" if key == "content" else [])
        if "flags" in data and data["flags"] is not None:
            message["flags"] = int(data["flags"]) | (message["flags"] & payloads.MESSAGE_FLAG_EPHEMERAL)
        message["attachments"] = self._attachments_from(body, message["attachments"], limit)
        message["flags"] &= ~payloads.MESSAGE_FLAG_LOADING
        message["edited_timestamp"] = payloads.iso_now()
        return message

    def _channel(self, channel_id: str) -> dict[str, Any]:
        channel = self.channels.get(int(channel_id))
        if channel is None:
            raise _HTTPError(404, 10003, "Unknown Channel")
        return channel

    def _channel_message(self, channel_id: str, message_id: str) -> dict[str, Any]:
        self._channel(channel_id)
        message = self.messages.get(int(message_id))
        if message is None or message["channel_id"] != channel_id:
            raise _HTTPError(404, 10008, "Unknown Message")
        return message

    def _channel_upload_limit(self, channel: dict[str, Any]) -> int:
        guild = self.guilds.get(int(channel.get("guild_id", 0)))
        return guild.upload_limit if guild else payloads.DEFAULT_ATTACHMENT_SIZE_LIMIT_BYTES

    async def _echo(self, event: str, message: dict[str, Any]) -> None:
        """Tell the bot about its own message changes, as Discord does for guild/DM message intents."""
        if self._session is None:
            return
        if event != "MESSAGE_DELETE" and message["flags"] & payloads.MESSAGE_FLAG_EPHEMERAL:
            return
        channel = self.channels.get(int(message["channel_id"]), {})
        needed = INTENT_DIRECT_MESSAGES if channel.get("type") == 1 else INTENT_GUILD_MESSAGES
        if not (self.intents or 0) & needed:
            return
        guild_id = int(channel["guild_id"]) if "guild_id" in channel else None
        if event == "MESSAGE_DELETE":
            data = {"id": message["id"], "channel_id": message["channel_id"]}
            if guild_id is not None:
                data["guild_id"] = str(guild_id)
            await self._send_dispatch(event, data)
        else:
            await self._send_dispatch(event, self._gateway_message(message, guild_id))

    # ------------------------------------------------------------------ REST handlers (return (status, json))
    async def _get_me(self, record: RecordedRequest, body: _Body) -> tuple[int, Any]:
        return 200, {**self.bot_user, "verified": True, "mfa_enabled": False, "locale": "en-US"}

    async def _get_user(self, record: RecordedRequest, body: _Body, user_id: str) -> tuple[int, Any]:
        for guild in self.guilds.values():
            member = guild.members.get(int(user_id))
            if member is not None:
                return 200, member.user
        raise _HTTPError(404, 10013, "Unknown User")

    async def _create_dm(self, record: RecordedRequest, body: _Body) -> tuple[int, Any]:
        recipient_id = int((body.json or {}).get("recipient_id", 0))
        status, user = await self._get_user(record, body, str(recipient_id))
        for channel in self.channels.values():
            if channel["type"] == 1 and channel["recipients"][0]["id"] == str(recipient_id):
                return 200, channel
        channel = payloads.dm_channel_payload(payloads.snowflake(), user)
        self.channels[int(channel["id"])] = channel
        return 200, channel

    async def _get_gateway(self, record: RecordedRequest, body: _Body) -> tuple[int, Any]:
        return 200, {"url": self.gateway_url}

    async def _get_gateway_bot(self, record: RecordedRequest, body: _Body) -> tuple[int, Any]:
        return 200, {"url": self.gateway_url, "shards": 1, "session_start_limit": {
            "total": 1000, "remaining": 999, "reset_after": 14_400_000, "max_concurrency": 1}}

    async def _get_application(self, record: RecordedRequest, body: _Body) -> tuple[int, Any]:
        owner = self.admin.user
        return 200, {
            "id": str(self.application_id), "name": self.bot_name, "icon": None, "description": "",
            "bot_public": False, "bot_require_code_grant": False, "owner": owner, "team": None,
            "verify_key": "0" * 64, "flags": 0, "summary": "", "bot": self.bot_user,
            "approximate_guild_count": len(self.guilds), "redirect_uris": [], "tags": [],
        }

    def _command_pool(self, application_id: str, guild_id: str | None) -> list[dict[str, Any]]:
        if int(application_id) != self.application_id:
            raise _HTTPError(403, 50001, f"Missing Access: application {application_id} is not this bot's")
        if guild_id is None:
            return self.global_commands
        if int(guild_id) not in self.guilds:
            raise _HTTPError(404, 10004, "Unknown Guild")
        return self.guild_commands.setdefault(int(guild_id), [])

    def _stored_command(self, data: dict[str, Any], guild_id: str | None,
                        previous: list[dict[str, Any]]) -> dict[str, Any]:
        name = data.get("name")
        if not isinstance(name, str) or not name:
            raise _HTTPError(400, 50035, f"Invalid Form Body: command name {name!r}")
        command_type = int(data.get("type", 1))
        if command_type == 1 and not data.get("description"):
            raise _HTTPError(400, 50035, f"Invalid Form Body: slash command {name!r} needs a description")
        old = next((c for c in previous if c["name"] == name and int(c["type"]) == command_type), None)
        stored = {
            **data,
            "id": old["id"] if old else str(payloads.snowflake()),
            "application_id": str(self.application_id),
            "type": command_type,
            "description": data.get("description") or "",
            "version": str(payloads.snowflake()),
            "default_member_permissions": data.get("default_member_permissions"),
            "nsfw": bool(data.get("nsfw", False)),
        }
        if guild_id is not None:
            stored["guild_id"] = guild_id
        return stored

    async def _get_commands(self, record: RecordedRequest, body: _Body, application_id: str,
                            guild_id: str | None = None) -> tuple[int, Any]:
        return 200, list(self._command_pool(application_id, guild_id))

    async def _put_commands(self, record: RecordedRequest, body: _Body, application_id: str,
                            guild_id: str | None = None) -> tuple[int, Any]:
        pool = self._command_pool(application_id, guild_id)
        if not isinstance(body.json, list):
            raise _HTTPError(400, 50035, "Invalid Form Body: expected a list of commands")
        new = [self._stored_command(c, guild_id, pool) for c in body.json]
        pool[:] = new
        return 200, new

    async def _post_command(self, record: RecordedRequest, body: _Body, application_id: str,
                            guild_id: str | None = None) -> tuple[int, Any]:
        pool = self._command_pool(application_id, guild_id)
        stored = self._stored_command(body.json or {}, guild_id, pool)
        pool[:] = [c for c in pool if c["id"] != stored["id"]] + [stored]
        return 200, stored

    async def _delete_command(self, record: RecordedRequest, body: _Body, application_id: str,
                              *ids: str) -> tuple[int, Any]:
        guild_id, command_id = (ids[0], ids[1]) if len(ids) == 2 else (None, ids[0])
        pool = self._command_pool(application_id, guild_id)
        if not any(c["id"] == command_id for c in pool):
            raise _HTTPError(404, 10063, "Unknown application command")
        pool[:] = [c for c in pool if c["id"] != command_id]
        return 204, None

    def _interaction(self, interaction_id: str, token: str) -> FakeInteraction:
        interaction = self.interactions.get(int(interaction_id))
        if interaction is None or interaction.token != token:
            raise _HTTPError(404, 10062, "Unknown interaction")
        return interaction

    async def _callback(self, record: RecordedRequest, body: _Body, interaction_id: str,
                        token: str) -> tuple[int, Any]:
        interaction = self._interaction(interaction_id, token)
        if self.callback_deadline is not None and time.monotonic() - interaction.created_at > self.callback_deadline:
            raise _HTTPError(404, 10062, "Unknown interaction")
        if interaction.acknowledged:
            raise _HTTPError(400, 40060, "Interaction has already been acknowledged.")
        data = body.json or {}
        callback_type = int(data.get("type", 0))
        if callback_type not in _ALLOWED_CALLBACKS.get(interaction.type, set()):
            raise _HTTPError(400, 50035, f"Invalid Form Body: callback type {callback_type} is not valid for "
                                         f"interaction type {interaction.type}")
        inner = data.get("data") or {}
        flags = int(inner.get("flags") or 0)
        author = self.bot_user
        resource: dict[str, Any] = {"type": callback_type}
        summary: dict[str, Any] = {"id": str(interaction.id), "type": interaction.type,
                                   "activity_instance_id": None, "response_message_id": None,
                                   "response_message_loading": False,
                                   "response_message_ephemeral": bool(flags & payloads.MESSAGE_FLAG_EPHEMERAL)}
        if callback_type in (CB_MESSAGE, CB_DEFER):
            if callback_type == CB_MESSAGE:
                message = self._new_message(_Body(inner, body.files), channel_id=interaction.channel_id,
                                            author=author, limit=interaction.attachment_size_limit, webhook=True)
            else:
                message = payloads.message_payload(
                    message_id=payloads.snowflake(), channel_id=interaction.channel_id, author=author,
                    flags=payloads.MESSAGE_FLAG_LOADING | (flags & payloads.MESSAGE_FLAG_EPHEMERAL),
                    webhook_id=self.application_id, application_id=self.application_id)
                self.messages[int(message["id"])] = message
                summary["response_message_loading"] = True
            message["interaction_metadata"] = {"id": str(interaction.id), "type": interaction.type,
                                               "user": interaction.payload["member"]["user"],
                                               "authorizing_integration_owners": {}}
            interaction.original_message_id = int(message["id"])
            summary["response_message_id"] = message["id"]
            if callback_type == CB_MESSAGE:
                resource["message"] = message
        elif callback_type in (CB_UPDATE, CB_DEFER_UPDATE):
            if interaction.message_id is None:
                raise _HTTPError(400, 50035, "Invalid Form Body: this interaction has no message to update")
            message = self.messages[interaction.message_id]
            interaction.original_message_id = interaction.message_id
            summary["response_message_id"] = message["id"]
            if callback_type == CB_UPDATE:
                self._apply_edit(message, _Body(inner, body.files), interaction.attachment_size_limit)
                resource["message"] = message
        elif callback_type == CB_MODAL:
            if not inner.get("custom_id") or not inner.get("title") or not inner.get("components"):
                raise _HTTPError(400, 50035, "Invalid Form Body: a modal needs custom_id, title and components")
            interaction.modal = inner
        interaction.response_type = callback_type
        if callback_type in (CB_MESSAGE, CB_DEFER):
            await self._echo("MESSAGE_CREATE", self.messages[interaction.original_message_id or 0])
        elif callback_type == CB_UPDATE:
            await self._echo("MESSAGE_UPDATE", self.messages[interaction.original_message_id or 0])
        return 200, {"interaction": summary, "resource": resource}

    def _webhook_interaction(self, application_id: str, token: str) -> FakeInteraction:
        if int(application_id) != self.application_id:
            raise _HTTPError(404, 10015, "Unknown Webhook")
        interaction = next((i for i in self.interactions.values() if i.token == token), None)
        if interaction is None:
            raise _HTTPError(401, 50027, "Invalid Webhook Token")
        age = time.monotonic() - interaction.created_at
        if interaction.expired or (self.token_lifetime is not None and age > self.token_lifetime):
            raise _HTTPError(401, 50027, "Invalid Webhook Token")
        if not interaction.acknowledged:
            raise _HTTPError(404, 10015, "Unknown Webhook")
        return interaction

    def _webhook_message(self, interaction: FakeInteraction, message_id: str) -> dict[str, Any]:
        wanted = interaction.original_message_id if message_id == "@original" else int(message_id)
        if wanted is None or (wanted != interaction.original_message_id and wanted not in interaction.followup_ids):
            raise _HTTPError(404, 10008, "Unknown Message")
        message = self.messages.get(wanted)
        if message is None:
            raise _HTTPError(404, 10008, "Unknown Message")
        return message

    async def _webhook_execute(self, record: RecordedRequest, body: _Body, application_id: str,
                               token: str) -> tuple[int, Any]:
        interaction = self._webhook_interaction(application_id, token)
        original = self.messages.get(interaction.original_message_id or 0)
        if original is not None and original["flags"] & payloads.MESSAGE_FLAG_LOADING and \
                interaction.response_type == CB_DEFER:
            # Discord: the first follow-up after a "thinking" defer replaces the loading message.
            message = self._apply_edit(original, body, interaction.attachment_size_limit)
            await self._echo("MESSAGE_UPDATE", message)
        else:
            message = self._new_message(body, channel_id=interaction.channel_id, author=self.bot_user,
                                        limit=interaction.attachment_size_limit, webhook=True)
            interaction.followup_ids.append(int(message["id"]))
            await self._echo("MESSAGE_CREATE", message)
        if record.query.get("wait") in ("0", "false"):
            return 204, None
        return 200, message

    async def _webhook_get(self, record: RecordedRequest, body: _Body, application_id: str, token: str,
                           message_id: str) -> tuple[int, Any]:
        interaction = self._webhook_interaction(application_id, token)
        return 200, self._webhook_message(interaction, message_id)

    async def _webhook_edit(self, record: RecordedRequest, body: _Body, application_id: str, token: str,
                            message_id: str) -> tuple[int, Any]:
        interaction = self._webhook_interaction(application_id, token)
        message = self._webhook_message(interaction, message_id)
        self._apply_edit(message, body, interaction.attachment_size_limit)
        await self._echo("MESSAGE_UPDATE", message)
        return 200, message

    async def _webhook_delete(self, record: RecordedRequest, body: _Body, application_id: str, token: str,
                              message_id: str) -> tuple[int, Any]:
        interaction = self._webhook_interaction(application_id, token)
        message = self._webhook_message(interaction, message_id)
        del self.messages[int(message["id"])]
        await self._echo("MESSAGE_DELETE", message)
        return 204, None

    async def _get_channel(self, record: RecordedRequest, body: _Body, channel_id: str) -> tuple[int, Any]:
        return 200, self._channel(channel_id)

    async def _list_messages(self, record: RecordedRequest, body: _Body, channel_id: str) -> tuple[int, Any]:
        self._channel(channel_id)
        limit = int(record.query.get("limit", 50))
        newest_first = list(reversed(self.channel_messages(int(channel_id))))
        return 200, [self._visible(m) for m in newest_first[:limit]]

    async def _create_message(self, record: RecordedRequest, body: _Body, channel_id: str) -> tuple[int, Any]:
        channel = self._channel(channel_id)
        reference = (body.json or {}).get("message_reference")
        if reference is not None:
            reference = {"type": 0, "channel_id": channel_id, **reference}
        message = self._new_message(body, channel_id=int(channel_id), author=self.bot_user,
                                    limit=self._channel_upload_limit(channel), webhook=False, reference=reference)
        await self._echo("MESSAGE_CREATE", message)
        return 200, message

    async def _get_message(self, record: RecordedRequest, body: _Body, channel_id: str,
                           message_id: str) -> tuple[int, Any]:
        return 200, self._visible(self._channel_message(channel_id, message_id))

    async def _edit_message(self, record: RecordedRequest, body: _Body, channel_id: str,
                            message_id: str) -> tuple[int, Any]:
        channel = self._channel(channel_id)
        message = self._channel_message(channel_id, message_id)
        if int(message["author"]["id"]) != self.bot_user_id:
            raise _HTTPError(403, 50005, "Cannot edit a message authored by another user")
        self._apply_edit(message, body, self._channel_upload_limit(channel))
        await self._echo("MESSAGE_UPDATE", message)
        return 200, message

    async def _delete_message(self, record: RecordedRequest, body: _Body, channel_id: str,
                              message_id: str) -> tuple[int, Any]:
        message = self._channel_message(channel_id, message_id)
        del self.messages[int(message_id)]
        await self._echo("MESSAGE_DELETE", message)
        return 204, None

    async def _add_reaction(self, record: RecordedRequest, body: _Body, channel_id: str, message_id: str,
                            emoji: str) -> tuple[int, Any]:
        message = self._channel_message(channel_id, message_id)
        reactions = message.setdefault("reactions", [])
        existing = next((r for r in reactions if r["emoji"]["name"] == emoji), None)
        if existing is None:
            reactions.append({"count": 1, "me": True, "emoji": {"id": None, "name": emoji}})
        elif not existing["me"]:
            existing["count"] += 1
            existing["me"] = True
        return 204, None

    async def _remove_reaction(self, record: RecordedRequest, body: _Body, channel_id: str, message_id: str,
                               emoji: str) -> tuple[int, Any]:
        message = self._channel_message(channel_id, message_id)
        for reaction in list(message.get("reactions", [])):
            if reaction["emoji"]["name"] == emoji and reaction["me"]:
                reaction["count"] -= 1
                reaction["me"] = False
                if reaction["count"] == 0:
                    message["reactions"].remove(reaction)
        return 204, None

    async def _typing(self, record: RecordedRequest, body: _Body, channel_id: str) -> tuple[int, Any]:
        self._channel(channel_id)
        return 204, None

    async def _get_guild(self, record: RecordedRequest, body: _Body, guild_id: str) -> tuple[int, Any]:
        guild = self.guilds.get(int(guild_id))
        if guild is None:
            raise _HTTPError(404, 10004, "Unknown Guild")
        data = guild.payload()
        for key in ("members", "channels", "threads", "presences", "voice_states", "joined_at", "large",
                    "member_count", "unavailable"):
            data.pop(key, None)
        return 200, data

    async def _get_roles(self, record: RecordedRequest, body: _Body, guild_id: str) -> tuple[int, Any]:
        guild = self.guilds.get(int(guild_id))
        if guild is None:
            raise _HTTPError(404, 10004, "Unknown Guild")
        return 200, list(guild.roles.values())

    async def _get_member(self, record: RecordedRequest, body: _Body, guild_id: str,
                          user_id: str) -> tuple[int, Any]:
        guild = self.guilds.get(int(guild_id))
        if guild is None:
            raise _HTTPError(404, 10004, "Unknown Guild")
        member = guild.members.get(int(user_id))
        if member is None:
            raise _HTTPError(404, 10007, "Unknown Member")
        return 200, member.payload(with_permissions=False)
