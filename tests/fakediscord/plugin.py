"""pytest plugin: the ``fake_discord`` fixture (load it with ``pytest_plugins = ["tests.fakediscord.plugin"]``)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest_asyncio

from .server import FakeDiscord


@pytest_asyncio.fixture
async def fake_discord() -> AsyncIterator[FakeDiscord]:
    """A started FakeDiscord on 127.0.0.1 (function scope); stopped after the test.

    Point discord.py at it with ``bot.endpoints.apply_discord_endpoints(fake.api_base, fake.gateway_url)`` and close
    the bot before the test ends (the fixture stops the server afterwards).
    """
    fake = FakeDiscord()
    await fake.start()
    try:
        yield fake
    finally:
        await fake.stop()
