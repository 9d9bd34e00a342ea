"""Where the bot may fetch an input image from: Discord's attachment and media-proxy hosts, nothing else.

A message's embed (set by a webhook or a link preview) can name any URL, and a fetch from the bot's host would
probe the network the bot runs in. So an image is fetched only from

- ``https`` on Discord's CDN (``cdn.discordapp.com``) or media proxy (``media.discordapp.net``,
  ``images-ext-<n>.discordapp.net``), default port; or
- when ``DISCORD_API_BASE`` points at another server than Discord's (a stand-in such as the test fake, which
  serves attachments beside its API), exactly that server's scheme, host and port instead, and nothing else.

Redirects are followed only within the origin of the URL asked for (:func:`same_origin`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from bot.errors import UserFacingError

DISCORD_IMAGE_HOSTS = frozenset({"cdn.discordapp.com", "media.discordapp.net"})
DISCORD_PROXY_HOST = re.compile(r"images-ext-[0-9]{1,3}\.discordapp\.net")
DISCORD_API_HOSTS = frozenset({"discord.com", "discordapp.com", "canary.discord.com", "ptb.discord.com"})
DEFAULT_PORTS = {"http": 80, "https": 443}

NOT_DISCORD_MESSAGE = (
    "I only fetch images from Discord's own attachment servers, and that image is elsewhere. "
    "Upload the picture to Discord (attach it) and try again."
)
REDIRECT_MESSAGE = "That image link leads away from Discord's attachment servers, so I did not fetch it."


class ImageOriginError(UserFacingError):
    """An image URL the bot refuses to fetch; the message says why without any detail of a fetch."""


@dataclass(frozen=True)
class UrlOrigin:
    """A URL's scheme, lower-case host and port (the default port filled in)."""

    scheme: str
    host: str
    port: int

    @classmethod
    def of(cls, url: str) -> UrlOrigin | None:
        """The origin of ``url``, or None when it has no usable scheme or host (or a malformed port)."""
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError:
            return None
        scheme = parts.scheme.lower()
        host = (parts.hostname or "").lower()
        if scheme not in DEFAULT_PORTS or not host:
            return None
        return cls(scheme, host, port if port is not None else DEFAULT_PORTS[scheme])


def stand_in_origin(api_base: str | None) -> UrlOrigin | None:
    """The one allowed origin when ``DISCORD_API_BASE`` names a server other than Discord's, else None."""
    if not api_base:
        return None
    origin = UrlOrigin.of(api_base)
    if origin is None or origin.host in DISCORD_API_HOSTS:
        return None
    return origin


def is_allowed(url: str, api_base: str | None) -> bool:
    """Whether the bot may fetch ``url`` (see the module docstring)."""
    origin = UrlOrigin.of(url)
    if origin is None:
        return False
    stand_in = stand_in_origin(api_base)
    if stand_in is not None:
        return origin == stand_in
    if origin.scheme != "https" or origin.port != DEFAULT_PORTS["https"]:
        return False
    return origin.host in DISCORD_IMAGE_HOSTS or DISCORD_PROXY_HOST.fullmatch(origin.host) is not None


def check_image_url(url: str, api_base: str | None) -> None:
    """Raise :class:`ImageOriginError` unless :func:`is_allowed`."""
    if not is_allowed(url, api_base):
        raise ImageOriginError(NOT_DISCORD_MESSAGE)


def same_origin(a: str, b: str) -> bool:
    """Whether two absolute URLs share scheme, host and port."""
    first, second = UrlOrigin.of(a), UrlOrigin.of(b)
    return first is not None and first == second
