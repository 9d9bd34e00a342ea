"""The gateway websocket: HELLO, IDENTIFY -> READY + GUILD_CREATE, heartbeat ACKs, RESUME with replay, member
chunks; dispatching events; and the RECONNECT / INVALID_SESSION / server-close faults."""

from __future__ import annotations

import dataclasses
import json
import secrets
import time
from typing import Any

from aiohttp import WSMsgType, web

from .records import GatewayFrame
from .world import DEFAULT_TIMEOUT_SECONDS, FakeWorld

HEARTBEAT_INTERVAL_MS = 41_250
"""What HELLO tells the client (Discord's usual value)."""


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


class FakeGateway(FakeWorld):
    """Gateway side of the fake."""

    def __init__(self, *, bot_token: str | None, application_id: int | None, bot_name: str) -> None:
        super().__init__(bot_token=bot_token, application_id=application_id, bot_name=bot_name)
        self.connections = 0
        """How many gateway websockets have been opened."""
        self.identify_count = 0
        self.resume_count = 0
        self._session: _Session | None = None
        self._live: _Connection | None = None
        self._open: list[_Connection] = []

    @property
    def gateway_url(self) -> str:
        """The websocket URL for ``DISCORD_GATEWAY_URL`` (defined by the server)."""
        raise NotImplementedError

    @property
    def connected(self) -> bool:
        """Whether a bot is on the gateway now (identified or resumed on a live websocket)."""
        return self._live is not None and self._live.ready

    async def wait_until_connected(self, timeout: float = DEFAULT_TIMEOUT_SECONDS) -> None:
        """Until a client has identified (READY sent) or resumed on a live websocket."""
        await self.wait_until(
            lambda: self.connected,
            timeout,
            lambda: (
                f"no bot connected to the gateway within {timeout}s "
                f"(connections={self.connections}, identify={self.identify_count})"
            ),
        )

    async def dispatch(
        self, event: str, data: dict[str, Any], *, timeout: float = DEFAULT_TIMEOUT_SECONDS, queue: bool = False
    ) -> int:
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

    async def gateway_invalid_session(
        self, *, resumable: bool = False, wait: bool = True, timeout: float = 10.0
    ) -> None:
        """Send INVALID_SESSION (op 9); the bot re-identifies (or resumes if ``resumable``).

        discord.py's ``before_identify_hook`` sleeps 5 s before a non-initial IDENTIFY; test bots may override it.
        """
        await self._send_op(9, resumable, wait=wait, timeout=timeout)

    async def gateway_drop(
        self, *, code: int = 4000, wait: bool = True, timeout: float = DEFAULT_TIMEOUT_SECONDS
    ) -> None:
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
            lambda: self._live is not None and self._live.ready and self._live.number > before,
            timeout,
            lambda: f"the bot did not reconnect within {timeout}s (connections={self.connections})",
        )

    async def _gateway(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(autoping=True, max_msg_size=0)
        await ws.prepare(request)
        self.connections += 1
        conn = _Connection(number=self.connections, ws=ws)
        self._open.append(conn)
        await ws.send_str(
            json.dumps({"op": 10, "d": {"heartbeat_interval": HEARTBEAT_INTERVAL_MS}, "s": None, "t": None})
        )
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
        await self._send_dispatch(
            "READY",
            {
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
            },
        )
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
        await self._send_dispatch(
            "GUILD_MEMBERS_CHUNK",
            {
                "guild_id": str(guild.id),
                "members": [m.payload() for m in guild.members.values()],
                "chunk_index": 0,
                "chunk_count": 1,
                "not_found": [],
                "nonce": data.get("nonce"),
            },
        )
