"""config: one declaration, one reader. The same boolean words and the same one-line error in every process, and
``.env`` read by the bot, the worker, the supervisor and the generator's command line alike."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bot.settings import BotSettings
from config.catalog import BOOL, CHOICE, FLOAT, INT, PORT, PROCESSES, SETTINGS
from config.reader import FALSE_WORDS, TRUE_WORDS, SettingsError, parse
from generator.performance import PerformanceOptionError, PerformanceOptions
from generator.worker_settings import WorkerSettings

REPO_ROOT = Path(__file__).resolve().parent.parent
BOOLEANS = [s for s in SETTINGS if s.kind == BOOL]


def test_every_declaration_is_complete_and_its_default_is_valid() -> None:
    assert len({s.name for s in SETTINGS}) == len(SETTINGS)
    for setting in SETTINGS:
        assert setting.help and setting.readers and setting.readers <= set(PROCESSES), setting.name
        assert parse(setting, None) == setting.default and parse(setting, "  ") == setting.default
        if setting.kind in (INT, FLOAT, PORT) and setting.default is not None:
            assert parse(setting, str(setting.default)) == setting.default, setting.name  # within its own limits
        if setting.kind == CHOICE and setting.default is not None:
            assert setting.default in setting.choices, setting.name


@pytest.mark.parametrize("setting", BOOLEANS, ids=lambda s: s.name)
def test_one_set_of_boolean_words_for_every_switch(setting) -> None:
    for word in TRUE_WORDS:
        assert parse(setting, word.upper()) is True
    for word in FALSE_WORDS:
        assert parse(setting, f" {word} ") is False
    with pytest.raises(SettingsError) as error:
        parse(setting, "maybe")
    assert str(error.value) == f"{setting.name}='maybe' is not a boolean (use true or false)"


def test_bot_worker_and_performance_options_agree_on_words_and_errors() -> None:
    env = {
        "DISCORD_TOKEN": "t",
        "MESSAGE_CONTENT_INTENT": "yes",
        "SAVE_OUTPUT_COPY": "off",
        "I2V_COMPILE": "on",
        "I2V_VAE_TILING": "no",
    }
    bot = BotSettings.from_env(env)
    options = PerformanceOptions.from_env(env)
    assert (bot.message_content_intent, bot.save_output_copy, options.compile_unet, options.vae_tiling) == (
        True,
        False,
        True,
        False,
    )
    bad = "WORKER_DEAD_AFTER='soon' is not a number"
    with pytest.raises(SettingsError, match=f"^{bad}$"):
        BotSettings.from_env({"DISCORD_TOKEN": "t", "WORKER_DEAD_AFTER": "soon"})
    with pytest.raises(SettingsError, match=f"^{bad}$"):
        WorkerSettings.from_env({"WORKER_DEAD_AFTER": "soon"})
    with pytest.raises(PerformanceOptionError, match="^I2V_DECODE_CHUNK_SIZE='0' must be at least 1 frames$"):
        PerformanceOptions.from_env({"I2V_DECODE_CHUNK_SIZE": "0"})


def _run(args: list[str], cwd: Path, dotenv: str, **env: str) -> subprocess.CompletedProcess[str]:
    (cwd / ".env").write_text(dotenv)
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("I2V_", "DISCORD_", "LOG_", "WORKER"))}
    clean.update({"PYTHONPATH": str(REPO_ROOT), **env})
    return subprocess.run([sys.executable, *args], cwd=cwd, env=clean, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(
    ("args", "dotenv", "line"),
    [
        (["-m", "bot"], "QUOTA_MAX_PENDING=two\n", "i2v-bot: QUOTA_MAX_PENDING='two' is not a whole number"),
        (
            ["-m", "generator.worker"],
            "I2V_LEASE_SECONDS=forever\n",
            "i2v-worker: I2V_LEASE_SECONDS='forever' is not a number",
        ),
        (
            ["-m", "generator.supervisor"],
            "LOG_FORMAT=xml\n",
            "i2v-supervisor: LOG_FORMAT='xml' is not one of text, json",
        ),
        (
            ["-m", "generator", "generator/assets/sample.png", "waves"],
            "I2V_DTYPE=fp64\n",
            "i2v-generate: I2V_DTYPE='fp64' is not one of fp16, bf16, fp32",
        ),
    ],
    ids=["bot", "worker", "supervisor", "cli"],
)
def test_every_process_reads_dotenv_and_refuses_a_bad_value_with_one_line_and_status_2(
    tmp_path: Path, args: list[str], dotenv: str, line: str
) -> None:
    if args[-1] == "waves":
        args = [*args[:-2], str(REPO_ROOT / args[-2]), "waves"]
    result = _run(args, tmp_path, dotenv)
    assert (result.returncode, result.stderr) == (2, line + "\n"), result.stderr


def test_the_environment_wins_over_dotenv(tmp_path: Path) -> None:
    code = "from generator.worker_settings import WorkerSettings as W; print(W.from_env().lease_s, W.from_env().model)"
    result = _run(["-c", code], tmp_path, "I2V_LEASE_SECONDS=forever\nI2V_MODEL=from-dotenv\n", I2V_LEASE_SECONDS="12")
    assert result.stdout.split() == ["12.0", "from-dotenv"], result.stderr


def test_the_public_origin_and_the_trusted_proxies_are_checked_when_read() -> None:
    from config.catalog import setting

    origin, proxies = setting("WEB_PUBLIC_URL"), setting("WEB_TRUSTED_PROXIES")
    assert parse(origin, "https://I2V.example.org/") == "https://i2v.example.org"
    assert parse(origin, "http://127.0.0.1:8080") == "http://127.0.0.1:8080"
    for bad in ("i2v.example.org", "ftp://x", "https://x/i2v", "https://x?a=1", "https://u:p@x", "http://x:99999"):
        with pytest.raises(SettingsError, match="WEB_PUBLIC_URL"):
            parse(origin, bad)
    networks = parse(proxies, "127.0.0.1, 10.0.0.0/8,::1")
    assert isinstance(networks, tuple)
    assert [str(n) for n in networks] == ["127.0.0.1/32", "10.0.0.0/8", "::1/128"]
    assert parse(proxies, "") == ()
    with pytest.raises(SettingsError, match="WEB_TRUSTED_PROXIES.*nginx"):
        parse(proxies, "127.0.0.1,nginx")
