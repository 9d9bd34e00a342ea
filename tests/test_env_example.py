"""`.env.example` stays true: it lists exactly the declared settings (config.catalog), each parses with the real
settings readers, and each is read by the code."""

from __future__ import annotations

from pathlib import Path

from dotenv import dotenv_values

from bot.settings import BotSettings
from config.catalog import SETTINGS
from generator.performance import PerformanceOptions
from generator.worker_settings import WorkerSettings

REPO_ROOT = Path(__file__).resolve().parent.parent
ENV_EXAMPLE = REPO_ROOT / ".env.example"
SOURCE_DIRS = ("bot", "config", "generator", "jobs", "web")
DECLARATION = REPO_ROOT / "config" / "catalog.py"  # naming a setting there is not reading it


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


def test_the_example_lists_exactly_the_declared_settings() -> None:
    declared = [s.name for s in SETTINGS if not s.internal and s.older_name_of is None]
    listed = list(_example())
    assert sorted(declared) == sorted(listed), (
        f"declared but not in .env.example: {sorted(set(declared) - set(listed))}; "
        f"in .env.example but not declared: {sorted(set(listed) - set(declared))}"
    )


def test_every_example_setting_is_read_by_the_code() -> None:
    source = "\n".join(
        path.read_text() for folder in SOURCE_DIRS for path in (REPO_ROOT / folder).rglob("*.py") if path != DECLARATION
    )
    unread = [key for key in _example() if f'"{key}"' not in source]
    assert not unread, f".env.example lists settings no module reads: {unread}"
