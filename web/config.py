"""What the web server needs to know, taken from the app's settings (``bot.settings.BotSettings`` or anything
with the same attribute names), so this package reads no environment of its own."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jobs.requests import input_byte_cap
from jobs.web_sessions import DEFAULT_LINK_TTL_SECONDS, DEFAULT_SESSION_TTL_SECONDS

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a WEB_HOST value) accepts connections from this machine only."""
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True, kw_only=True)
class WebConfig:
    """The web server's settings."""

    host: str
    port: int
    public_url: str | None
    web_user_id: int  # who a loopback-only page acts as (the bot's operator)
    operator_user_ids: frozenset[int]
    operator_role_ids: frozenset[int] = frozenset()  # a signed-in member with one of these is the operator too
    quota_daily_gpu_seconds: float
    quota_max_pending: int
    queue_max_length: int
    upload_cap_bytes: int
    output_dir: Path
    save_output_copy: bool
    worker_dead_after: float
    session_ttl_seconds: float = DEFAULT_SESSION_TTL_SECONDS
    link_ttl_seconds: float = DEFAULT_LINK_TTL_SECONDS
    prompt_blocklist: tuple[str, ...] = ()  # PROMPT_BLOCKLIST, normalised (jobs.safety.parse_blocklist)

    @property
    def sign_in_required(self) -> bool:
        """Listening beyond loopback: every user signs in with a link from the bot."""
        return not is_loopback(self.host)

    def base_url(self, port: int | None = None) -> str:
        """The page's address for links: WEB_PUBLIC_URL, else http://host:port."""
        if self.public_url:
            return self.public_url
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{port if port is not None else self.port}"

    @classmethod
    def from_settings(cls, settings: Any) -> WebConfig:
        """From the app's settings object."""
        return cls(
            host=settings.web_host,
            port=settings.web_port,
            public_url=settings.web_public_url,
            web_user_id=settings.web_user_id,
            operator_user_ids=frozenset(settings.operator_user_ids),
            operator_role_ids=frozenset(settings.operator_role_ids),
            quota_daily_gpu_seconds=settings.quota_daily_gpu_seconds,
            quota_max_pending=settings.quota_max_pending,
            queue_max_length=settings.queue_max_length,
            upload_cap_bytes=input_byte_cap(settings.max_download_bytes),
            output_dir=Path(settings.output_dir),
            save_output_copy=settings.save_output_copy,
            worker_dead_after=settings.worker_dead_after,
            prompt_blocklist=tuple(settings.prompt_blocklist),
        )
