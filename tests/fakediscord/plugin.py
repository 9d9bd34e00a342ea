"""pytest plugin: the ``fake_discord`` fixture (load it with ``pytest_plugins = ["tests.fakediscord.plugin"]``)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest_asyncio

from .server import FakeDiscord


@contextlib.asynccontextmanager
async def fake_discord_server(**options: Any) -> AsyncIterator[FakeDiscord]:
    """A started FakeDiscord (``options`` go to its constructor), stopped on exit; what the fixture uses."""
    fake = FakeDiscord(**options)
    await fake.start()
    try:
        yield fake
    finally:
        await fake.stop()


@pytest_asyncio.fixture
async def fake_discord() -> AsyncIterator[FakeDiscord]:
    """A started FakeDiscord on 127.0.0.1 (function scope); stopped after the test.

    Point discord.py at it with ``tests.fakediscord.client.running_client(bot, fake)`` (in-process), or
    DISCORD_API_BASE / DISCORD_GATEWAY_URL for a subprocess; close the bot before the test ends.
    """
    async with fake_discord_server() as fake:
        yield fake
