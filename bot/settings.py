"""The bot's settings, read once from the environment (or a `.env` file) into a frozen :class:`BotSettings`.

Every setting is one environment variable. A missing token or a malformed value raises :class:`SettingsError`
whose message is one line naming the variable and the bad value; ``python -m bot`` prints it and exits with 2.
The token is kept out of ``repr()`` so it cannot reach a log by accident.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

#: Variables with their defaults (strings, parsed below). DATABASE_URL's default comes from jobs.db.
DEFAULT_OUTPUT_DIR = "outputs"
DEFAULT_DATA_DIR = "data"
DEFAULT_MODEL = "ali-vilab/i2vgen-xl"
DEFAULT_QUOTA_DAILY_GPU_SECONDS = 600.0  # GPU-seconds per rolling 24 h per user
DEFAULT_QUOTA_MAX_PENDING = 2  # queued + running jobs per user
DEFAULT_QUEUE_MAX_LENGTH = 100  # queued jobs, everyone's together
DEFAULT_STATUS_EDIT_INTERVAL_SECONDS = 5.0  # minimum time between two edits of one status message
DEFAULT_POLL_INTERVAL_SECONDS = 1.0  # how often the status/delivery loop reads the job table
DEFAULT_GUILD_READY_TIMEOUT_SECONDS = 2.0  # discord.py's wait for GUILD_CREATEs before on_ready
DEFAULT_UPLOAD_TIMEOUT_SECONDS = 120.0  # one result upload attempt, end to end
DEFAULT_MAX_DOWNLOAD_BYTES = 20 * 1024 * 1024  # input image download cap, bytes
DEFAULT_RETENTION_DAYS = 30.0  # days a finished job's stored image and video are kept (0 = forever)
DEFAULT_RETENTION_INTERVAL_SECONDS = 3600.0  # seconds between two retention passes
DEFAULT_WORKER_DEAD_AFTER_SECONDS = 15.0  # seconds without a worker heartbeat before its running job is requeued
DEFAULT_GRACE_SECONDS = 30.0  # I2V_GRACE_SECONDS: on shutdown a running job may still take this long, then given back
DEFAULT_RESTART_BACKOFF_SECONDS = 1.0  # first wait before the embedded worker is restarted, doubling
DEFAULT_RESTART_BACKOFF_MAX_SECONDS = 60.0  # longest wait between restarts while the worker still starts
DEFAULT_UNAVAILABLE_AFTER_FAILURES = 3  # failed starts in a row after which the worker is "unavailable"
DEFAULT_UNAVAILABLE_RETRY_SECONDS = 600.0  # longest wait between two tries while unavailable
DEFAULT_WEB_HOST = "127.0.0.1"  # the web page, /healthz and /metrics listen here (loopback: no sign-in)
DEFAULT_WEB_PORT = 7860  # the seed's port
LOCAL_WEB_USER_ID = 1  # the user a loopback-only page acts as when no operator id is configured
WORKER_MODES = ("embedded", "external")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
FALSE_WORDS = frozenset({"0", "false", "no", "off", ""})


class SettingsError(ValueError):
    """A missing or malformed setting; ``str()`` is one line naming the variable."""


@dataclass(frozen=True, kw_only=True)
class BotSettings:
    """Everything the bot process reads from its environment."""

    token: str = field(repr=False)
    api_base: str | None = None
    gateway_url: str | None = None
    database_url: str = field(repr=False)  # may carry a password
    model: str = DEFAULT_MODEL
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
    web_user_id: int = LOCAL_WEB_USER_ID  # WEB_USER_ID: who the loopback-only page acts as (default: first operator)
    grace_seconds: float = DEFAULT_GRACE_SECONDS  # I2V_GRACE_SECONDS, for the embedded worker and the bot's close
    restart_backoff: float = DEFAULT_RESTART_BACKOFF_SECONDS  # I2V_RESTART_BACKOFF_SECONDS
    restart_backoff_max: float = DEFAULT_RESTART_BACKOFF_MAX_SECONDS  # I2V_RESTART_BACKOFF_MAX_SECONDS
    unavailable_after: int = DEFAULT_UNAVAILABLE_AFTER_FAILURES  # I2V_UNAVAILABLE_AFTER_FAILURES
    unavailable_retry: float = DEFAULT_UNAVAILABLE_RETRY_SECONDS  # I2V_UNAVAILABLE_RETRY_SECONDS

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
        already in the environment win).

        Raises
        ------
        SettingsError
            A required variable is missing or a value does not parse; the message names it. Without
            ``require_token`` a missing DISCORD_TOKEN is an empty ``token`` (the web page runs alone).
        """
        if env is None:
            if dotenv:
                from dotenv import find_dotenv, load_dotenv  # only when reading the real environment

                load_dotenv(find_dotenv(usecwd=True), override=False)  # the .env of the working directory
            env = os.environ
        token = env.get("DISCORD_TOKEN", "").strip()
        if not token and require_token:
            raise SettingsError("DISCORD_TOKEN is not set: put the bot token in the environment or in .env")
        worker = env.get("WORKER", "embedded").strip().lower() or "embedded"
        if worker not in WORKER_MODES:
            raise SettingsError(f"WORKER={worker!r} is not one of {', '.join(WORKER_MODES)}")
        operator_user_ids = _id_set(env, "OPERATOR_USER_IDS") | _id_set(env, "ADMIN_USER_IDS")
        web_user = _number(env, "WEB_USER_ID", 0, integer=True)
        return cls(
            token=token,
            api_base=_optional(env, "DISCORD_API_BASE"),
            gateway_url=_optional(env, "DISCORD_GATEWAY_URL"),
            database_url=_database_url(env),
            model=_optional(env, "I2V_MODEL") or DEFAULT_MODEL,
            output_dir=Path(_optional(env, "OUTPUT_DIR") or DEFAULT_OUTPUT_DIR),
            data_dir=Path(_optional(env, "DATA_DIR") or DEFAULT_DATA_DIR),
            # The bot's operator: both names are read (the ADMIN_* ones are the older spelling) and merged.
            operator_user_ids=operator_user_ids,
            operator_role_ids=_id_set(env, "OPERATOR_ROLE_IDS") | _id_set(env, "ADMIN_ROLE_IDS"),
            quota_daily_gpu_seconds=_number(env, "QUOTA_DAILY_GPU_SECONDS", DEFAULT_QUOTA_DAILY_GPU_SECONDS),
            quota_max_pending=int(
                _number(env, "QUOTA_MAX_PENDING", DEFAULT_QUOTA_MAX_PENDING, integer=True, positive=True)
            ),
            queue_max_length=int(
                _number(env, "QUEUE_MAX_LENGTH", DEFAULT_QUEUE_MAX_LENGTH, integer=True, positive=True)
            ),
            worker=worker,
            message_content_intent=_flag(env, "MESSAGE_CONTENT_INTENT"),
            status_edit_interval=_number(
                env, "STATUS_EDIT_INTERVAL_SECONDS", DEFAULT_STATUS_EDIT_INTERVAL_SECONDS, positive=True
            ),
            poll_interval=_number(env, "POLL_INTERVAL_SECONDS", DEFAULT_POLL_INTERVAL_SECONDS, positive=True),
            guild_ready_timeout=_number(env, "GUILD_READY_TIMEOUT_SECONDS", DEFAULT_GUILD_READY_TIMEOUT_SECONDS),
            max_download_bytes=int(
                _number(env, "MAX_DOWNLOAD_BYTES", DEFAULT_MAX_DOWNLOAD_BYTES, integer=True, positive=True)
            ),
            upload_timeout=_number(env, "UPLOAD_TIMEOUT_SECONDS", DEFAULT_UPLOAD_TIMEOUT_SECONDS, positive=True),
            log_level=_log_level(env),
            loop_lag_report=Path(p) if (p := _optional(env, "LOOP_LAG_REPORT")) else None,
            retention_days=_number(env, "RETENTION_DAYS", DEFAULT_RETENTION_DAYS),
            retention_interval=_number(env, "RETENTION_INTERVAL_SECONDS", DEFAULT_RETENTION_INTERVAL_SECONDS,
                                       positive=True),
            save_output_copy=_flag(env, "SAVE_OUTPUT_COPY") if env.get("SAVE_OUTPUT_COPY", "").strip() else True,
            worker_dead_after=_number(env, "WORKER_DEAD_AFTER", DEFAULT_WORKER_DEAD_AFTER_SECONDS, positive=True),
            web_host=_optional(env, "WEB_HOST") or DEFAULT_WEB_HOST,
            web_port=_port(env, "WEB_PORT", DEFAULT_WEB_PORT),
            web_public_url=(_optional(env, "WEB_PUBLIC_URL") or "").rstrip("/") or None,
            web_user_id=int(web_user) or min(operator_user_ids, default=LOCAL_WEB_USER_ID),
            grace_seconds=_number(env, "I2V_GRACE_SECONDS", DEFAULT_GRACE_SECONDS),
            restart_backoff=_number(env, "I2V_RESTART_BACKOFF_SECONDS", DEFAULT_RESTART_BACKOFF_SECONDS),
            restart_backoff_max=_number(env, "I2V_RESTART_BACKOFF_MAX_SECONDS", DEFAULT_RESTART_BACKOFF_MAX_SECONDS),
            unavailable_after=int(_number(env, "I2V_UNAVAILABLE_AFTER_FAILURES", DEFAULT_UNAVAILABLE_AFTER_FAILURES,
                                          integer=True, positive=True)),
            unavailable_retry=_number(env, "I2V_UNAVAILABLE_RETRY_SECONDS", DEFAULT_UNAVAILABLE_RETRY_SECONDS),
        )


def _log_level(env: Mapping[str, str]) -> str:
    level = (_optional(env, "LOG_LEVEL") or "INFO").upper()
    if level not in LOG_LEVELS:
        raise SettingsError(f"LOG_LEVEL={level!r} is not one of {', '.join(LOG_LEVELS)}")
    return level


def _database_url(env: Mapping[str, str]) -> str:
    from jobs.db import DEFAULT_DATABASE_URL, normalize_url

    raw = _optional(env, "DATABASE_URL")
    if raw is None:
        return DEFAULT_DATABASE_URL
    try:
        return normalize_url(raw)
    except Exception as error:  # SQLAlchemy's URL parser raises several kinds
        raise SettingsError(f"DATABASE_URL is not usable: {error}") from None


def _optional(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name, "").strip()
    return value or None


def _flag(env: Mapping[str, str], name: str) -> bool:
    raw = env.get(name, "").strip().lower()
    if raw in TRUE_WORDS:
        return True
    if raw in FALSE_WORDS:
        return False
    raise SettingsError(f"{name}={raw!r} is not a boolean (use true or false)")


def _number(
    env: Mapping[str, str], name: str, default: float, *, integer: bool = False, positive: bool = False
) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw) if integer else float(raw)
    except ValueError:
        kind = "an integer" if integer else "a number"
        raise SettingsError(f"{name}={raw!r} is not {kind}") from None
    if value < 0 or (positive and value == 0):
        raise SettingsError(f"{name}={raw!r} must be {'positive' if positive else 'zero or more'}")
    return value


def _port(env: Mapping[str, str], name: str, default: int) -> int:
    port = int(_number(env, name, default, integer=True))
    if port > 65535:
        raise SettingsError(f"{name}={port!r} is not a TCP port (0-65535)")
    return port


def _id_set(env: Mapping[str, str], name: str) -> frozenset[int]:
    raw = env.get(name, "").strip()
    ids: set[int] = set()
    for part in raw.replace(";", ",").split(","):
        part = part.strip()
        if not part:
            continue
        if not part.isdigit():
            raise SettingsError(f"{name} has {part!r}, which is not a Discord id (comma-separated numbers)")
        ids.add(int(part))
    return frozenset(ids)
