"""Run a real discord.py client against a FakeDiscord for the length of an ``async with`` block."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import TypeVar

import discord
import discord.gateway
import discord.http

from bot.endpoints import apply_discord_endpoints

from .server import FakeDiscord
from .world import DEFAULT_TIMEOUT_SECONDS

ClientT = TypeVar("ClientT", bound=discord.Client)

FAKE_BOT_TOKEN = "fake-bot-token"


@contextlib.asynccontextmanager
async def running_client(
    client: ClientT,
    fake: FakeDiscord,
    *,
    token: str = FAKE_BOT_TOKEN,
    timeout: float = DEFAULT_TIMEOUT_SECONDS,
) -> AsyncIterator[ClientT]:
    """Point discord.py at ``fake``, start ``client`` and yield once it is ready; close it (then restore the
    endpoints) on exit. If the client dies while starting, its exception is raised here.

    Build the client with ``guild_ready_timeout`` small (e.g. 0.05) and ``chunk_guilds_at_startup=False``,
    or ``on_ready`` waits 2 s or more.
    """
    saved_base, saved_gateway = discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY
    apply_discord_endpoints(fake.api_base, fake.gateway_url)
    task = asyncio.create_task(client.start(token), name="fake-discord-client")
    try:
        ready = asyncio.create_task(client.wait_until_ready())
        done, _ = await asyncio.wait({task, ready}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        if task in done:
            ready.cancel()
            task.result()
            raise RuntimeError("the discord.py client stopped before it was ready")
        if ready not in done:
            ready.cancel()
            raise TimeoutError(
                f"the discord.py client was not ready within {timeout}s "
                f"(fake saw {len(fake.requests)} requests, {fake.identify_count} IDENTIFY)"
            )
        yield client
    finally:
        await client.close()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, timeout)
        discord.http.Route.BASE = saved_base
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = saved_gateway
