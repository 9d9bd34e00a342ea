"""config.logs: LOG_FORMAT=json lines, LOG_FILE with rotation, secrets masked, bad values refused; and a full
/animate flow at DEBUG with LOG_FILE set, after which the bot token is nowhere: not in the output, the log files,
the database or the output folder."""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from config.logs import MASK, log_file_for, setup_logging
from config.reader import SettingsError
from tests.bot.harness import SMALL, BotProcess, followup_text, job_id_from, png_bytes, running_bot, wait_result
from tests.fakediscord.server import FakeDiscord

CANARY_TOKEN = "i2v-canary-token.Zq7Xw3Lm9Pd2Rt8Kv5Nb"  # distinctive: a grep for it finds only a leak


@pytest.fixture
def restored_logging() -> Iterator[None]:
    """setup_logging replaces the root handlers: give pytest's back afterwards."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    with warnings.catch_warnings():
        yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)
    logging.captureWarnings(False)
    for name in ("alembic", "discord", "aiosqlite", "asyncio"):
        logging.getLogger(name).setLevel(logging.NOTSET)


def test_json_lines_carry_time_level_logger_message_and_exc(tmp_path: Path, restored_logging: None) -> None:
    path = tmp_path / "logs" / "bot.log"
    setup_logging({"LOG_FORMAT": "json", "LOG_FILE": str(path), "LOG_LEVEL": "DEBUG"}, process="bot")
    log = logging.getLogger("bot.test")
    log.debug("first %s", "line")
    try:
        raise ValueError("broken\nacross lines")
    except ValueError:
        log.exception("it failed")
    logging.shutdown()
    lines = path.read_text().splitlines()
    assert len(lines) == 2, lines  # one object per line, the traceback inside its record
    first, second = (json.loads(line) for line in lines)
    assert {k: first[k] for k in ("level", "logger", "message")} == {
        "level": "DEBUG",
        "logger": "bot.test",
        "message": "first line",
    }
    assert first["time"].endswith("+00:00") and "exc" not in first
    assert second["level"] == "ERROR" and second["message"] == "it failed"
    assert second["exc"].startswith("Traceback") and "ValueError: broken\nacross lines" in second["exc"]


@pytest.mark.parametrize("level", ["INFO", "DEBUG"])
def test_model_library_noise_is_one_debug_line(tmp_path: Path, restored_logging: None, level: str) -> None:
    from diffusers.utils import logging as diffusers_logging

    from generator.model_source import route_library_logs

    verbosity = diffusers_logging.get_verbosity()  # the generator CLI, run in-process by other tests, sets ERROR
    diffusers_logging.set_verbosity_warning()
    path = tmp_path / "worker.log"
    setup_logging({"LOG_FILE": str(path), "LOG_LEVEL": level}, process="worker")
    route_library_logs()  # diffusers and transformers print through handlers of their own until then
    hub = diffusers_logging.get_logger("diffusers.pipelines.pipeline_utils")
    for _attempt in range(3):  # a worker that retries its load while the hub is unreachable
        hub.warning("Couldn't connect to the Hub: (MaxRetryError('...')).\nWill try to load from local cache.")
    hub.warning("a real problem %d", 7)
    logging.shutdown()
    diffusers_logging.set_verbosity(verbosity)
    lines = path.read_text().splitlines()
    noise = [line for line in lines if "Couldn't connect to the Hub" in line]
    assert noise == ([] if level == "INFO" else [noise[0]]), lines
    if noise:
        assert " DEBUG worker[" in noise[0] and "diffusers.pipelines.pipeline_utils" in noise[0]
    assert [line for line in lines if line.endswith("a real problem 7")][0].split()[2] == "WARNING"


def test_log_file_rotates_at_its_size_and_keeps_its_backups(tmp_path: Path, restored_logging: None) -> None:
    path = tmp_path / "bot.log"
    setup_logging(
        {"LOG_FILE": str(path), "LOG_FILE_MAX_BYTES": "500", "LOG_FILE_BACKUPS": "2", "LOG_LEVEL": "WARNING"},
        process="bot",
    )
    log = logging.getLogger("bot.test")
    for n in range(60):
        log.warning("line %03d %s", n, "x" * 40)
    log.info("below the level: not written")
    logging.shutdown()
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["bot.log", "bot.log.1", "bot.log.2"]
    assert all(p.stat().st_size <= 500 for p in tmp_path.iterdir())
    text = "".join((tmp_path / f).read_text() for f in files)
    assert "line 059" in path.read_text() and "below the level" not in text and "line 000" not in text


def test_supervised_worker_writes_its_own_file() -> None:
    assert log_file_for(Path("/var/log/i2v/bot.log"), "worker") == Path("/var/log/i2v/bot.worker.log")
    assert log_file_for(Path("/var/log/i2v/bot.log"), None) == Path("/var/log/i2v/bot.log")


def test_the_token_is_masked_in_messages_arguments_and_tracebacks(tmp_path: Path, restored_logging: None) -> None:
    path = tmp_path / "bot.log"
    setup_logging(
        {
            "LOG_FILE": str(path),
            "DISCORD_TOKEN": CANARY_TOKEN,
            "DATABASE_URL": "postgresql+asyncpg://i2v:pg-password-77@db/i2v",
        },
        process="bot",
    )
    log = logging.getLogger("bot.test")
    log.info("headers: Authorization: Bot %s", CANARY_TOKEN)
    log.warning("connecting with pg-password-77")
    try:
        raise RuntimeError(f"request with {CANARY_TOKEN} failed")
    except RuntimeError:
        log.exception("request failed")
    logging.shutdown()
    text = path.read_text()
    assert CANARY_TOKEN not in text and "pg-password-77" not in text and text.count(MASK) == 3, text


@pytest.mark.parametrize(
    ("env", "name"),
    [
        ({"LOG_FORMAT": "xml"}, "LOG_FORMAT"),
        ({"LOG_LEVEL": "LOUD"}, "LOG_LEVEL"),
        ({"LOG_FILE_MAX_BYTES": "-1"}, "LOG_FILE_MAX_BYTES"),
        ({"LOG_FILE": "/proc/i2v/bot.log"}, "LOG_FILE"),
    ],
)
def test_bad_log_settings_are_refused_by_name(env: dict[str, str], name: str, restored_logging: None) -> None:
    with pytest.raises(SettingsError, match=f"^{name}="):
        setup_logging(env, process="bot")


@pytest.mark.slow
@pytest.mark.timeout(240)
async def test_the_token_is_nowhere_after_a_full_flow_at_debug(tmp_path: Path) -> None:
    fake = FakeDiscord(bot_token=CANARY_TOKEN)
    await fake.start()
    logs = tmp_path / "logs" / "i2v.log"
    bot = BotProcess(
        fake, tmp_path / "bot", extra_env={"DISCORD_TOKEN": CANARY_TOKEN, "LOG_LEVEL": "DEBUG", "LOG_FILE": str(logs)}
    )
    async with running_bot(fake, bot):
        member = fake.add_member(fake.guild.id, "canary-user")
        attachment = fake.add_attachment(png_bytes(), "cat.png")
        interaction = await fake.inject_slash(
            "animate", {"image": attachment, "prompt": "a cat blinks", **SMALL}, member=member
        )
        job_id = job_id_from(await followup_text(fake, interaction))
        result = await wait_result(fake, job_id)
        assert result.files and result.files[0].data[4:8] == b"ftyp"
        await bot.wait_job(job_id, lambda j: j.delivered_at is not None, timeout=10)
    assert any(r.has_bot_auth for r in fake.requests)  # the token was really used
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert logs in written and logs.with_name("i2v.worker.log") in written  # bot and its worker, both at DEBUG
    assert any(p.suffix == ".mp4" for p in written) and any(p.name == "i2v.sqlite3" for p in written)
    debug_lines = [line for line in logs.read_text().splitlines() if " DEBUG " in line]
    assert debug_lines, "LOG_LEVEL=DEBUG wrote no debug line"
    leaks = [str(p) for p in written if CANARY_TOKEN.encode() in p.read_bytes()]
    assert not leaks, f"the token is in {leaks}"
