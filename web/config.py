"""What the web server needs to know, taken from the app's settings (:class:`WebSettings`: ``bot.settings.BotSettings``
has them), so this package reads no environment of its own."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from generator.model_spaces import DEFAULT_MODEL
from jobs.requests import input_byte_cap
from jobs.web_sessions import DEFAULT_LINK_TTL_SECONDS, DEFAULT_SESSION_TTL_SECONDS

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
WILDCARD_HOSTS = frozenset({"", "0.0.0.0", "::", "*"})
DEFAULT_OPERATOR_LINK_TTL_SECONDS = 3600.0
DEFAULT_ROLE_RECHECK_SECONDS = 1800.0

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a WEB_HOST value) accepts connections from this machine only."""
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def local_origin(host: str, port: int) -> str:
    """http://HOST:PORT of a page listening on ``host``; a wildcard address (0.0.0.0, ::) is reached on 127.0.0.1."""
    host = "127.0.0.1" if host in WILDCARD_HOSTS else host
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


class WebSettings(Protocol):
    """The app's settings the page reads (``bot.settings.BotSettings`` has them all)."""

    @property
    def web_host(self) -> str: ...
    @property
    def web_port(self) -> int: ...
    @property
    def web_public_url(self) -> str | None: ...
    @property
    def web_trusted_proxies(self) -> Sequence[IPNetwork]: ...
    @property
    def web_operator_link_ttl(self) -> float: ...
    @property
    def web_role_recheck(self) -> float: ...
    @property
    def operator_user_ids(self) -> AbstractSet[int]: ...
    @property
    def operator_role_ids(self) -> AbstractSet[int]: ...
    @property
    def quota_daily_gpu_seconds(self) -> float: ...
    @property
    def quota_max_pending(self) -> int: ...
    @property
    def queue_max_length(self) -> int: ...
    @property
    def max_download_bytes(self) -> int: ...
    @property
    def output_dir(self) -> Path: ...
    @property
    def save_output_copy(self) -> bool: ...
    @property
    def worker_dead_after(self) -> float: ...
    @property
    def prompt_blocklist(self) -> Sequence[str]: ...
    @property
    def models(self) -> Sequence[str]: ...


@dataclass(frozen=True, kw_only=True)
class WebConfig:
    """The web server's settings."""

    host: str
    port: int
    public_url: str | None  # WEB_PUBLIC_URL: the public origin (scheme://host[:port]) behind a reverse proxy
    operator_user_ids: frozenset[int]
    operator_role_ids: frozenset[int] = frozenset()  # a signed-in member with one of these is the operator too
    trusted_proxies: tuple[IPNetwork, ...] = ()  # whose X-Forwarded-For / Forwarded / X-Real-IP name the client
    quota_daily_gpu_seconds: float
    quota_max_pending: int
    queue_max_length: int
    upload_cap_bytes: int
    output_dir: Path
    save_output_copy: bool
    worker_dead_after: float
    session_ttl_seconds: float = DEFAULT_SESSION_TTL_SECONDS
    link_ttl_seconds: float = DEFAULT_LINK_TTL_SECONDS
    operator_link_ttl_seconds: float = DEFAULT_OPERATOR_LINK_TTL_SECONDS
    role_recheck_seconds: float = DEFAULT_ROLE_RECHECK_SECONDS  # the bot re-reads members' roles this often
    prompt_blocklist: tuple[str, ...] = ()  # PROMPT_BLOCKLIST, normalised (jobs.safety.parse_blocklist)
    models: tuple[str, ...] = (DEFAULT_MODEL,)  # I2V_MODELS as resolved: the page's model choices, default first

    @property
    def roles_valid_seconds(self) -> float:
        """Roles read from Discord longer ago than this lapse (two re-check periods: one missed read is fine)."""
        return 2.0 * self.role_recheck_seconds

    @property
    def secure_cookies(self) -> bool:
        """The page is reached over TLS (WEB_PUBLIC_URL is https): cookies are sent over TLS only."""
        return (self.public_url or "").startswith("https://")

    def base_url(self, port: int | None = None) -> str:
        """The page's address for links: WEB_PUBLIC_URL, else http://HOST:PORT (127.0.0.1 for a wildcard host)."""
        if self.public_url:
            return self.public_url
        return local_origin(self.host, port if port is not None else self.port)

    @classmethod
    def from_settings(cls, settings: WebSettings) -> WebConfig:
        """From the app's settings object."""
        return cls(
            host=settings.web_host,
            port=settings.web_port,
            public_url=settings.web_public_url,
            operator_user_ids=frozenset(settings.operator_user_ids),
            operator_role_ids=frozenset(settings.operator_role_ids),
            trusted_proxies=tuple(settings.web_trusted_proxies),
            quota_daily_gpu_seconds=settings.quota_daily_gpu_seconds,
            quota_max_pending=settings.quota_max_pending,
            queue_max_length=settings.queue_max_length,
            upload_cap_bytes=input_byte_cap(settings.max_download_bytes),
            output_dir=Path(settings.output_dir),
            save_output_copy=settings.save_output_copy,
            worker_dead_after=settings.worker_dead_after,
            operator_link_ttl_seconds=settings.web_operator_link_ttl,
            role_recheck_seconds=settings.web_role_recheck,
            prompt_blocklist=tuple(settings.prompt_blocklist),
            models=tuple(settings.models),
        )
