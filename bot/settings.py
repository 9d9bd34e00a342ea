"""The bot's settings, read once from the environment (or a `.env` file) into a frozen :class:`BotSettings`.

Every setting is one environment variable, declared (with its default and unit) in :mod:`config.catalog` and read
by :mod:`config.reader`. A missing token or a malformed value raises :class:`SettingsError` whose message is one
line naming the variable and the bad value; ``python -m bot`` prints it and exits with 2.
The token is kept out of ``repr()`` so it cannot reach a log by accident.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Network, IPv6Network
from pathlib import Path
from typing import Any

from config.catalog import BOT, default_float, default_int, default_text, read_by, setting
from config.reader import SettingsError, as_read, derived, environment, read
from generator.model_spaces import DEFAULT_MODEL as DEFAULT_MODEL_KEY
from generator.model_spaces import enabled_models
from jobs.safety import UnsafePolicy, parse_blocklist

DEFAULT_OUTPUT_DIR = default_text("OUTPUT_DIR")
DEFAULT_DATA_DIR = default_text("DATA_DIR")
DEFAULT_MODEL = default_text("I2V_MODEL")
DEFAULT_QUOTA_DAILY_GPU_SECONDS = default_float("QUOTA_DAILY_GPU_SECONDS")
DEFAULT_QUOTA_MAX_PENDING = default_int("QUOTA_MAX_PENDING")
DEFAULT_QUEUE_MAX_LENGTH = default_int("QUEUE_MAX_LENGTH")
DEFAULT_STATUS_EDIT_INTERVAL_SECONDS = default_float("STATUS_EDIT_INTERVAL_SECONDS")
DEFAULT_POLL_INTERVAL_SECONDS = default_float("POLL_INTERVAL_SECONDS")
DEFAULT_GUILD_READY_TIMEOUT_SECONDS = default_float("GUILD_READY_TIMEOUT_SECONDS")
DEFAULT_UPLOAD_TIMEOUT_SECONDS = default_float("UPLOAD_TIMEOUT_SECONDS")
DEFAULT_MAX_DOWNLOAD_BYTES = default_int("MAX_DOWNLOAD_BYTES")
DEFAULT_RETENTION_DAYS = default_float("RETENTION_DAYS")
DEFAULT_RETENTION_INTERVAL_SECONDS = default_float("RETENTION_INTERVAL_SECONDS")
DEFAULT_WORKER_DEAD_AFTER_SECONDS = default_float("WORKER_DEAD_AFTER")
DEFAULT_GRACE_SECONDS = default_float("I2V_GRACE_SECONDS")
DEFAULT_RESTART_BACKOFF_SECONDS = default_float("I2V_RESTART_BACKOFF_SECONDS")
DEFAULT_RESTART_BACKOFF_MAX_SECONDS = default_float("I2V_RESTART_BACKOFF_MAX_SECONDS")
DEFAULT_UNAVAILABLE_AFTER_FAILURES = default_int("I2V_UNAVAILABLE_AFTER_FAILURES")
DEFAULT_UNAVAILABLE_RETRY_SECONDS = default_float("I2V_UNAVAILABLE_RETRY_SECONDS")
DEFAULT_CONNECT_TIMEOUT_SECONDS = default_float("DISCORD_CONNECT_TIMEOUT_SECONDS")
DEFAULT_RETRY_MAX_SECONDS = default_float("DISCORD_RETRY_MAX_SECONDS")
DEFAULT_WEB_HOST = default_text("WEB_HOST")
DEFAULT_WEB_PORT = default_int("WEB_PORT")  # the seed's port
DEFAULT_OPERATOR_LINK_TTL_SECONDS = default_float("WEB_OPERATOR_LINK_TTL_SECONDS")
DEFAULT_ROLE_RECHECK_SECONDS = default_float("WEB_ROLE_RECHECK_SECONDS")
LOG_LEVELS = setting("LOG_LEVEL").choices
BOT_SETTINGS = tuple(s.name for s in read_by(BOT))

# BotSettings field -> the setting it is, as read (the fields computed from settings are in from_env)
AS_READ = {
    "connect_timeout": "DISCORD_CONNECT_TIMEOUT_SECONDS",
    "retry_max": "DISCORD_RETRY_MAX_SECONDS",
    "database_url": "DATABASE_URL",
    "model": "I2V_MODEL",
    "quota_daily_gpu_seconds": "QUOTA_DAILY_GPU_SECONDS",
    "quota_max_pending": "QUOTA_MAX_PENDING",
    "queue_max_length": "QUEUE_MAX_LENGTH",
    "worker": "WORKER",
    "message_content_intent": "MESSAGE_CONTENT_INTENT",
    "status_edit_interval": "STATUS_EDIT_INTERVAL_SECONDS",
    "poll_interval": "POLL_INTERVAL_SECONDS",
    "guild_ready_timeout": "GUILD_READY_TIMEOUT_SECONDS",
    "max_download_bytes": "MAX_DOWNLOAD_BYTES",
    "upload_timeout": "UPLOAD_TIMEOUT_SECONDS",
    "log_level": "LOG_LEVEL",
    "loop_lag_report": "LOOP_LAG_REPORT",
    "retention_days": "RETENTION_DAYS",
    "retention_interval": "RETENTION_INTERVAL_SECONDS",
    "save_output_copy": "SAVE_OUTPUT_COPY",
    "worker_dead_after": "WORKER_DEAD_AFTER",
    "web_host": "WEB_HOST",
    "web_port": "WEB_PORT",
    "web_trusted_proxies": "WEB_TRUSTED_PROXIES",
    "web_operator_link_ttl": "WEB_OPERATOR_LINK_TTL_SECONDS",
    "web_role_recheck": "WEB_ROLE_RECHECK_SECONDS",
    "grace_seconds": "I2V_GRACE_SECONDS",
    "restart_backoff": "I2V_RESTART_BACKOFF_SECONDS",
    "restart_backoff_max": "I2V_RESTART_BACKOFF_MAX_SECONDS",
    "unavailable_after": "I2V_UNAVAILABLE_AFTER_FAILURES",
    "unavailable_retry": "I2V_UNAVAILABLE_RETRY_SECONDS",
}


@dataclass(frozen=True, kw_only=True)
class BotSettings:
    """Everything the bot process reads from its environment."""

    token: str = field(repr=False)
    api_base: str | None = None
    gateway_url: str | None = None
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT_SECONDS  # one login attempt, seconds
    retry_max: float = DEFAULT_RETRY_MAX_SECONDS  # longest wait between two attempts to reach Discord, seconds
    database_url: str = field(repr=False)  # may carry a password
    model: str = DEFAULT_MODEL
    models: tuple[str, ...] = (DEFAULT_MODEL_KEY,)  # I2V_MODELS as resolved: the models users may choose, default first
    output_dir: Path = Path(DEFAULT_OUTPUT_DIR)
    data_dir: Path = Path(DEFAULT_DATA_DIR)
    operator_user_ids: frozenset[int] = frozenset()  # OPERATOR_USER_IDS (or the older ADMIN_USER_IDS)
    operator_role_ids: frozenset[int] = frozenset()  # OPERATOR_ROLE_IDS (or the older ADMIN_ROLE_IDS)
    quota_daily_gpu_seconds: float = DEFAULT_QUOTA_DAILY_GPU_SECONDS
    quota_max_pending: int = DEFAULT_QUOTA_MAX_PENDING
    queue_max_length: int = DEFAULT_QUEUE_MAX_LENGTH
    worker: str = "embedded"
    message_content_intent: bool = False
    status_edit_interval: float = DEFAULT_STATUS_EDIT_INTERVAL_SECONDS
    poll_interval: float = DEFAULT_POLL_INTERVAL_SECONDS
    guild_ready_timeout: float = DEFAULT_GUILD_READY_TIMEOUT_SECONDS
    max_download_bytes: int = DEFAULT_MAX_DOWNLOAD_BYTES
    upload_timeout: float = DEFAULT_UPLOAD_TIMEOUT_SECONDS
    log_level: str = "INFO"
    loop_lag_report: Path | None = None
    retention_days: float = DEFAULT_RETENTION_DAYS
    retention_interval: float = DEFAULT_RETENTION_INTERVAL_SECONDS
    save_output_copy: bool = True
    worker_dead_after: float = DEFAULT_WORKER_DEAD_AFTER_SECONDS
    web_host: str = DEFAULT_WEB_HOST
    web_port: int = DEFAULT_WEB_PORT  # 0: any free port (logged)
    web_public_url: str | None = None  # the page's address as users reach it (sign-in links); default http://host:port
    # WEB_TRUSTED_PROXIES: whose forwarded headers are believed
    web_trusted_proxies: tuple[IPv4Network | IPv6Network, ...] = ()
    web_operator_link_ttl: float = DEFAULT_OPERATOR_LINK_TTL_SECONDS  # the printed operator link works this long
    web_role_recheck: float = DEFAULT_ROLE_RECHECK_SECONDS  # a signed-in member's roles are re-read this often
    grace_seconds: float = DEFAULT_GRACE_SECONDS  # I2V_GRACE_SECONDS, for the embedded worker and the bot's close
    restart_backoff: float = DEFAULT_RESTART_BACKOFF_SECONDS  # I2V_RESTART_BACKOFF_SECONDS
    restart_backoff_max: float = DEFAULT_RESTART_BACKOFF_MAX_SECONDS  # I2V_RESTART_BACKOFF_MAX_SECONDS
    unavailable_after: int = DEFAULT_UNAVAILABLE_AFTER_FAILURES  # I2V_UNAVAILABLE_AFTER_FAILURES
    unavailable_retry: float = DEFAULT_UNAVAILABLE_RETRY_SECONDS  # I2V_UNAVAILABLE_RETRY_SECONDS
    prompt_blocklist: tuple[str, ...] = ()  # PROMPT_BLOCKLIST, normalised (jobs.safety.parse_blocklist)
    unsafe_videos: UnsafePolicy = UnsafePolicy.AGE_RESTRICTED  # UNSAFE_VIDEOS: the operator's default policy

    @property
    def admin_user_ids(self) -> frozenset[int]:
        """The older name of :attr:`operator_user_ids`."""
        return self.operator_user_ids

    @property
    def admin_role_ids(self) -> frozenset[int]:
        """The older name of :attr:`operator_role_ids`."""
        return self.operator_role_ids

    @classmethod
    def from_env(
        cls, env: Mapping[str, str] | None = None, *, dotenv: bool = True, require_token: bool = True
    ) -> BotSettings:
        """Read the settings from ``env`` (default: ``os.environ``, after loading ``./.env`` if present; variables
        already in the environment win) through :mod:`config.reader`.

        Raises
        ------
        SettingsError
            A required variable is missing or a value does not parse; the message names it. Without
            ``require_token`` a missing DISCORD_TOKEN is an empty ``token`` (the web page runs alone).
        """
        env = environment(env, dotenv=dotenv)
        v: dict[str, Any] = read(env, BOT_SETTINGS)
        token = v["DISCORD_TOKEN"]
        if not token and require_token:
            raise SettingsError(
                "DISCORD_TOKEN is not set: put the bot token in the environment or in .env", "DISCORD_TOKEN"
            )
        return cls(
            token=token,
            prompt_blocklist=derived(
                "PROMPT_BLOCKLIST",
                lambda: parse_blocklist(v["PROMPT_BLOCKLIST"]),
                prefix="PROMPT_BLOCKLIST has a bad item ",
            ),
            models=derived(
                "I2V_MODELS", lambda: enabled_models(v["I2V_MODELS"], v["I2V_MODEL"]), prefix="I2V_MODELS: "
            ),
            api_base=v["DISCORD_API_BASE"] or None,
            gateway_url=v["DISCORD_GATEWAY_URL"] or None,
            web_public_url=v["WEB_PUBLIC_URL"] or None,
            output_dir=Path(v["OUTPUT_DIR"]),
            data_dir=Path(v["DATA_DIR"]),
            # The bot's operator: both names are read (the ADMIN_* ones are the older spelling) and merged.
            operator_user_ids=v["OPERATOR_USER_IDS"] | v["ADMIN_USER_IDS"],
            operator_role_ids=v["OPERATOR_ROLE_IDS"] | v["ADMIN_ROLE_IDS"],
            unsafe_videos=UnsafePolicy(v["UNSAFE_VIDEOS"]),
            **as_read(v, AS_READ),
        )
