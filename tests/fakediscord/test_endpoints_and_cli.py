"""bot/endpoints.py against discord.py's hooks, and ``python -m tests.fakediscord`` on its own."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import discord.gateway
import discord.http
import pytest
import yarl

from bot.endpoints import DISCORD_API_BASE, DISCORD_GATEWAY_URL, apply_discord_endpoints

REPO_ROOT = Path(__file__).resolve().parents[2]
CLI_START_TIMEOUT_SECONDS = 20


@pytest.fixture
def restore_endpoints() -> Iterator[None]:
    """Put discord.py's class attributes back after the test."""
    saved = discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY
    yield
    discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = saved


def test_points_discord_py_at_plain_http_and_ws(restore_endpoints: None) -> None:
    apply_discord_endpoints("http://127.0.0.1:8123/api/v10/", "ws://127.0.0.1:8123/gateway")
    assert discord.http.Route.BASE == "http://127.0.0.1:8123/api/v10"
    assert discord.http.Route("GET", "/users/@me").url == "http://127.0.0.1:8123/api/v10/users/@me"
    assert yarl.URL("ws://127.0.0.1:8123/gateway") == discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY


@pytest.mark.parametrize("api_base, gateway_url", [(None, None), ("", "")])
def test_defaults_are_discords_own(restore_endpoints: None, api_base: str | None, gateway_url: str | None) -> None:
    apply_discord_endpoints("http://x:1/api/v10", "ws://x:1/gateway")
    apply_discord_endpoints(api_base, gateway_url)
    assert discord.http.Route.BASE == DISCORD_API_BASE == "https://discord.com/api/v10"
    assert yarl.URL(DISCORD_GATEWAY_URL) == discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY
    assert DISCORD_GATEWAY_URL == "wss://gateway.discord.gg/"


@pytest.mark.parametrize(
    "api_base, gateway_url, named",
    [
        ("ws://127.0.0.1:1/api/v10", None, "DISCORD_API_BASE"),
        ("127.0.0.1:1/api/v10", None, "DISCORD_API_BASE"),
        ("http://127.0.0.1:1/api/v10?x=1", None, "DISCORD_API_BASE"),
        (None, "http://127.0.0.1:1/gateway", "DISCORD_GATEWAY_URL"),
        (None, "ws:///gateway", "DISCORD_GATEWAY_URL"),
    ],
)
def test_bad_urls_are_refused_naming_the_setting(
    restore_endpoints: None, api_base: str | None, gateway_url: str | None, named: str
) -> None:
    before = discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY
    with pytest.raises(ValueError, match=named):
        apply_discord_endpoints(api_base, gateway_url)
    assert before == (discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY)


def test_cli_prints_its_urls_and_serves() -> None:
    with subprocess.Popen(
        [sys.executable, "-m", "tests.fakediscord"],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    ) as process:
        _check_cli(process)


def _check_cli(process: subprocess.Popen[str]) -> None:
    try:
        assert process.stdout is not None
        lines = dict(process.stdout.readline().strip().split("=", 1) for _ in range(3))
        assert lines["DISCORD_API_BASE"].startswith("http://127.0.0.1:")
        assert lines["DISCORD_GATEWAY_URL"].startswith("ws://127.0.0.1:")
        with urllib.request.urlopen(lines["DISCORD_API_BASE"] + "/gateway", timeout=CLI_START_TIMEOUT_SECONDS) as r:
            assert r.headers["Content-Type"] == "application/json"
            assert r.read().decode() == f'{{"url": "{lines["DISCORD_GATEWAY_URL"]}"}}'
    finally:
        process.terminate()
        process.wait(timeout=CLI_START_TIMEOUT_SECONDS)
