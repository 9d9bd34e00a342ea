"""Point discord.py at Discord's API and gateway, or at a stand-in such as the test fake.

discord.py has no constructor option for either URL; two class attributes are the hooks:
``discord.http.Route.BASE`` (every REST call, including interaction callbacks and webhook follow-ups, which
build their URL from it when each ``Route`` is created) and ``discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY``
(the first gateway connection, and the one after an INVALID_SESSION). Both are process-wide, so call
:func:`apply_discord_endpoints` once, before ``login()``. Plain ``http://`` and ``ws://`` work.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import discord.gateway
import discord.http
import yarl

DISCORD_API_BASE: str = "https://discord.com/api/v10"
"""Discord's own REST base (``DISCORD_API_BASE`` when unset)."""
DISCORD_GATEWAY_URL: str = "wss://gateway.discord.gg/"
"""Discord's own gateway (``DISCORD_GATEWAY_URL`` when unset)."""

_API_SCHEMES = ("http", "https")
_GATEWAY_SCHEMES = ("ws", "wss")


def _checked(name: str, value: str, schemes: tuple[str, ...]) -> str:
    """Return ``value`` without a trailing slash, or raise ValueError naming ``name`` and what is wrong."""
    parts = urlsplit(value)
    if parts.scheme not in schemes or not parts.netloc:
        raise ValueError(f"{name} must be an absolute {' or '.join(s + '://' for s in schemes)} URL, got {value!r}")
    if parts.query or parts.fragment:
        raise ValueError(f"{name} must not carry a query or fragment, got {value!r}")
    return value.rstrip("/")


def apply_discord_endpoints(api_base: str | None, gateway_url: str | None) -> None:
    """Set discord.py's REST base and gateway URL; ``None`` or ``""`` means Discord's own.

    ``api_base`` is the versioned REST root, e.g. ``http://127.0.0.1:8080/api/v10``; ``gateway_url`` is the
    websocket URL, e.g. ``ws://127.0.0.1:8080/gateway`` (discord.py appends ``?v=10&encoding=json&compress=…``).
    Raises ValueError naming the argument when a URL has the wrong scheme, no host, or a query.
    """
    base = _checked("DISCORD_API_BASE", api_base, _API_SCHEMES) if api_base else DISCORD_API_BASE
    gateway = _checked("DISCORD_GATEWAY_URL", gateway_url, _GATEWAY_SCHEMES) if gateway_url else DISCORD_GATEWAY_URL
    discord.http.Route.BASE = base
    # discord.py joins nothing onto the gateway URL's path, only a query; keep Discord's trailing "/" form.
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(gateway if gateway_url else DISCORD_GATEWAY_URL)
