"""`.env.example` stays true: every setting it lists parses with the real settings readers and is read by the code."""

from __future__ import annotations

from pathlib import Path

from dotenv import dotenv_values

from bot.settings import BotSettings
from generator.pipeline import PerformanceOptions
from generator.worker import WorkerSettings

REPO_ROOT = Path(__file__).resolve().parent.parent
ENV_EXAMPLE = REPO_ROOT / ".env.example"
SOURCE_DIRS = ("bot", "generator", "jobs")


def _example() -> dict[str, str]:
    return {key: value or "" for key, value in dotenv_values(ENV_EXAMPLE).items()}


def test_every_example_setting_has_a_comment() -> None:
    lines = ENV_EXAMPLE.read_text().splitlines()
    for index, line in enumerate(lines):
        if line and not line.startswith("#"):
            assert index > 0 and lines[index - 1].startswith("#"), f"{line.split('=')[0]} has no comment line above it"


def test_the_example_parses_with_every_settings_reader() -> None:
    env = {**_example(), "DISCORD_TOKEN": "token-for-the-test"}
    bot = BotSettings.from_env(env, dotenv=False)
    worker = WorkerSettings.from_env(env)
    options = PerformanceOptions.from_env(env)
    assert bot.worker == "embedded" and bot.quota_max_pending == 2
    assert worker.database_url == env["DATABASE_URL"] and worker.lease_s == float(env["I2V_LEASE_SECONDS"])
    assert options.compile_unet is False and options.cpu_offload is False


def test_every_example_setting_is_read_by_the_code() -> None:
    source = "\n".join(path.read_text() for folder in SOURCE_DIRS for path in (REPO_ROOT / folder).rglob("*.py"))
    unread = [key for key in _example() if f'"{key}"' not in source]
    assert not unread, f".env.example lists settings no module reads: {unread}"
