"""BotSettings from the environment, and ``python -m bot``'s exit code 2 with one clear line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bot.settings import BotSettings
from config.reader import SettingsError

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_defaults_and_parsing() -> None:
    settings = BotSettings.from_env(
        {
            "DISCORD_TOKEN": "secret-token-value",
            "ADMIN_USER_IDS": "12, 34",
            "ADMIN_ROLE_IDS": "56",
            "QUOTA_DAILY_GPU_SECONDS": "120.5",
            "QUOTA_MAX_PENDING": "3",
            "WORKER": "external",
            "MESSAGE_CONTENT_INTENT": "true",
            "STATUS_EDIT_INTERVAL_SECONDS": "0.5",
        }
    )
    assert settings.operator_user_ids == settings.admin_user_ids == {12, 34}  # the older names still work
    assert settings.operator_role_ids == settings.admin_role_ids == {56}
    both = BotSettings.from_env(
        {"DISCORD_TOKEN": "t", "OPERATOR_USER_IDS": "7", "ADMIN_USER_IDS": "8", "OPERATOR_ROLE_IDS": "9"}
    )
    assert (both.operator_user_ids, both.operator_role_ids) == ({7, 8}, {9})
    assert settings.quota_daily_gpu_seconds == 120.5
    assert settings.quota_max_pending == 3
    assert settings.worker == "external"
    assert settings.message_content_intent is True
    assert settings.status_edit_interval == 0.5
    assert settings.database_url == "sqlite+aiosqlite:///data/i2v.sqlite3"
    assert "secret-token-value" not in repr(settings)
    with_password = BotSettings.from_env({"DISCORD_TOKEN": "t", "DATABASE_URL": "postgresql://u:hunter2@db/i2v"})
    assert with_password.database_url == "postgresql+asyncpg://u:hunter2@db/i2v"
    assert "hunter2" not in repr(with_password)


def test_message_content_intent_is_off_by_default() -> None:
    settings = BotSettings.from_env({"DISCORD_TOKEN": "t"})
    assert settings.message_content_intent is False
    assert settings.worker == "embedded"


@pytest.mark.parametrize(
    ("env", "names"),
    [
        ({}, "DISCORD_TOKEN"),
        ({"DISCORD_TOKEN": "t", "WORKER": "cloud"}, "WORKER"),
        ({"DISCORD_TOKEN": "t", "QUOTA_MAX_PENDING": "two"}, "QUOTA_MAX_PENDING"),
        ({"DISCORD_TOKEN": "t", "QUOTA_MAX_PENDING": "0"}, "QUOTA_MAX_PENDING"),
        ({"DISCORD_TOKEN": "t", "QUOTA_DAILY_GPU_SECONDS": "-1"}, "QUOTA_DAILY_GPU_SECONDS"),
        ({"DISCORD_TOKEN": "t", "ADMIN_USER_IDS": "12,bob"}, "ADMIN_USER_IDS"),
        ({"DISCORD_TOKEN": "t", "MESSAGE_CONTENT_INTENT": "maybe"}, "MESSAGE_CONTENT_INTENT"),
        ({"DISCORD_TOKEN": "t", "LOG_LEVEL": "LOUD"}, "LOG_LEVEL"),
        ({"DISCORD_TOKEN": "t", "DATABASE_URL": "mysql://db/i2v"}, "DATABASE_URL"),
        ({"DISCORD_TOKEN": "t", "DATABASE_URL": "not a url"}, "DATABASE_URL"),
    ],
)
def test_bad_settings_name_the_variable(env: dict[str, str], names: str) -> None:
    with pytest.raises(SettingsError, match=names):
        BotSettings.from_env(env)


def _run_bot(env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("DISCORD_")}
    clean.update(env)
    return subprocess.run(
        [sys.executable, "-m", "bot"], cwd=tmp_path, env=clean, capture_output=True, text=True, timeout=60
    )


def test_without_a_token_only_the_web_page_runs(tmp_path: Path) -> None:
    """No DISCORD_TOKEN: no Discord login; the page (and its /healthz) answers; SIGTERM stops it with status 0."""
    import json
    import signal
    import time
    import urllib.error
    import urllib.request

    from tests.web.webharness import free_port

    port = free_port()
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DISCORD_", "WEB_"))}
    clean.update({"PYTHONPATH": str(REPO_ROOT), "WORKER": "external", "WEB_PORT": str(port)})
    proc = subprocess.Popen(
        [sys.executable, "-m", "bot"],
        cwd=tmp_path,
        env=clean,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, proc.communicate()[0]
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5)
            except urllib.error.HTTPError as error:
                code, body = error.code, json.loads(error.read())
                break
            except OSError:
                assert time.monotonic() < deadline, "the page never answered"
                time.sleep(0.3)
                continue
            raise AssertionError("/healthz answered 200 with no worker")
        assert code == 503 and "no worker" in body["reason"]
    finally:
        proc.send_signal(signal.SIGTERM)
        output = proc.communicate(timeout=30)[0]
    assert proc.returncode == 0, output
    assert "running without Discord" in output and "Traceback" not in output


def test_a_bad_web_port_exits_2(tmp_path: Path) -> None:
    result = _run_bot({"PYTHONPATH": str(REPO_ROOT), "WEB_PORT": "99999"}, tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "WEB_PORT" in result.stderr


def test_bad_setting_exits_2_without_leaking_the_token(tmp_path: Path) -> None:
    result = _run_bot({"PYTHONPATH": str(REPO_ROOT), "DISCORD_TOKEN": "very-secret-token", "WORKER": "cloud"}, tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "WORKER" in result.stderr
    assert "very-secret-token" not in result.stderr + result.stdout


def test_bad_api_base_exits_2(tmp_path: Path) -> None:
    result = _run_bot(
        {"PYTHONPATH": str(REPO_ROOT), "DISCORD_TOKEN": "t", "DISCORD_API_BASE": "ftp://nowhere"}, tmp_path
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().count("\n") == 0 and "DISCORD_API_BASE" in result.stderr
