"""``python -m bot`` against a closed port, an unknown host, a socket that never answers, a fake Discord that
rejects the token and one that lets it in: one line per failure, retried with back-off, an exit status of its own
(3, EXIT_LOGIN_REFUSED) only for the token,
SIGTERM/SIGINT at any moment a clean exit 0, and no traceback anywhere."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from bot.connect import EXIT_LOGIN_REFUSED
from tests.fakediscord.server import FakeDiscord

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parents[2]
WAIT_S = 60.0  # for a line to appear (a loaded two-core machine)
RETRY_MAX = "0.2"  # DISCORD_RETRY_MAX_SECONDS in these tests
CONNECT_TIMEOUT = "0.5"  # DISCORD_CONNECT_TIMEOUT_SECONDS in these tests
LOG_LINE = re.compile(
    r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (?P<level>[A-Z]+) bot\[\d+\] (?P<logger>[\w.]+): "
    r"(?P<message>.*)$"
)


class BotRun:
    """``python -m bot`` with its stdout and stderr read line by line as they come."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.lines: list[str] = []
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        async for raw in self.proc.stdout:
            self.lines.append(raw.decode(errors="replace").rstrip("\n"))

    def messages(self, logger: str = "bot.connect") -> list[str]:
        found = [LOG_LINE.match(line) for line in self.lines]
        return [m["message"] for m in found if m and m["logger"] == logger]

    async def wait_for(self, check: Callable[[list[str]], bool], what: str) -> None:
        deadline = time.monotonic() + WAIT_S
        while not check(self.messages()):
            assert self.proc.returncode is None, f"bot exited with {self.proc.returncode}:\n" + "\n".join(self.lines)
            assert time.monotonic() < deadline, f"never saw {what}:\n" + "\n".join(self.lines)
            await asyncio.sleep(0.05)

    async def finish(self, sig: int | None = None) -> int:
        if sig is not None and self.proc.returncode is None:
            self.proc.send_signal(sig)
        code = await asyncio.wait_for(self.proc.wait(), WAIT_S)
        await self._reader
        output = "\n".join(self.lines)
        assert "Traceback" not in output, output
        return code


async def start_bot(tmp_path: Path, **settings: str) -> BotRun:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DISCORD_", "I2V_", "LOG_", "WEB_", "WORKER"))}
    env.update(
        {
            "PYTHONPATH": str(REPO_ROOT),
            "DISCORD_TOKEN": "connect-test-token-0123456789",
            "WORKER": "external",
            "WEB_PORT": "0",
            "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'i2v.sqlite3'}",
            "I2V_MODEL": "tiny",
            "OUTPUT_DIR": str(tmp_path / "outputs"),
            "DATA_DIR": str(tmp_path / "data"),
            "PYTHONUNBUFFERED": "1",
            "DISCORD_RETRY_MAX_SECONDS": RETRY_MAX,
            "DISCORD_CONNECT_TIMEOUT_SECONDS": CONNECT_TIMEOUT,
            "GUILD_READY_TIMEOUT_SECONDS": "0.05",
        }
    )
    env.update(settings)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        cwd=tmp_path,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    return BotRun(proc)


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


async def test_refused_connection_is_one_line_per_attempt_and_sigterm_exits_0(tmp_path: Path) -> None:
    port = closed_port()
    run = await start_bot(tmp_path, DISCORD_API_BASE=f"http://127.0.0.1:{port}/api/v10")
    await run.wait_for(lambda m: len(m) >= 3, "three attempts")
    assert await run.finish(signal.SIGTERM) == 0
    messages = run.messages()
    expected = f"cannot reach Discord at http://127.0.0.1:{port}: Connection refused; retrying in {RETRY_MAX} s"
    assert messages[:-1] == [expected] * (len(messages) - 1) and messages[-1] == "signal received; shutting down"


async def test_unknown_host_is_one_line_per_attempt_and_ctrl_c_exits_0(tmp_path: Path) -> None:
    run = await start_bot(tmp_path, DISCORD_API_BASE="http://discord-host.invalid/api/v10")
    await run.wait_for(lambda m: len(m) >= 2, "two attempts")
    assert await run.finish(signal.SIGINT) == 0
    attempts = run.messages()[:-1]
    assert len(set(attempts)) == 1, attempts
    assert re.fullmatch(
        r"cannot reach Discord at http://discord-host\.invalid: "
        r"(Name or service not known|Temporary failure in name resolution|.*not known.*); "
        rf"retrying in {RETRY_MAX} s",
        attempts[0],
    ), attempts[0]


async def test_a_server_that_never_answers_times_out_each_attempt_and_ctrl_c_during_login_exits_0(
    tmp_path: Path,
) -> None:
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)  # the kernel accepts the connection; nobody ever reads or answers
    port = silent.getsockname()[1]
    try:
        run = await start_bot(tmp_path, DISCORD_API_BASE=f"http://127.0.0.1:{port}/api/v10")
        await run.wait_for(lambda m: len(m) >= 2, "two timed-out attempts")
        await asyncio.sleep(0.2)  # inside the next attempt's login
        assert await run.finish(signal.SIGINT) == 0
    finally:
        silent.close()
    attempts = run.messages()[:-1]
    assert attempts == [
        f"Discord at http://127.0.0.1:{port} did not answer within {CONNECT_TIMEOUT} s; retrying in {RETRY_MAX} s"
    ] * len(attempts)


async def test_an_unreachable_gateway_after_login_is_one_line_per_attempt(tmp_path: Path) -> None:
    port = closed_port()
    async with FakeDiscord() as fake:
        run = await start_bot(tmp_path, DISCORD_API_BASE=fake.api_base, DISCORD_GATEWAY_URL=f"ws://127.0.0.1:{port}/gw")
        await run.wait_for(lambda m: len(m) >= 2, "two gateway attempts")
        assert await run.finish(signal.SIGTERM) == 0
    attempts = run.messages()[:-1]
    assert attempts == [
        f"cannot reach the Discord gateway at ws://127.0.0.1:{port}/gw: Connection refused; retrying in {RETRY_MAX} s"
    ] * len(attempts)
    assert not run.messages("discord.client")  # discord.py's own traceback-carrying note is not shown


async def test_a_rejected_token_is_one_line_and_an_exit_status_of_its_own(tmp_path: Path) -> None:
    async with FakeDiscord(bot_token="the-right-token") as fake:
        run = await start_bot(tmp_path, DISCORD_API_BASE=fake.api_base, DISCORD_GATEWAY_URL=fake.gateway_url)
        assert await run.finish() == EXIT_LOGIN_REFUSED == 3  # the unit files do not restart on it
    assert run.messages() == ["Discord rejected DISCORD_TOKEN (login failed): check the token in .env"]
    assert len([r for r in fake.requests if r.path == "/users/@me"]) == 1  # not retried


async def test_online_line_quiet_start_and_sigterm_while_running(tmp_path: Path) -> None:
    async with FakeDiscord() as fake:
        run = await start_bot(tmp_path, DISCORD_API_BASE=fake.api_base, DISCORD_GATEWAY_URL=fake.gateway_url)
        await run.wait_for(lambda m: any(x.startswith("online as ") for x in m), "the online line")
        assert await run.finish(signal.SIGTERM) == 0
    (online,) = [m for m in run.messages() if m.startswith("online as ")]
    assert online == (
        f"online as {fake.bot_name} (id {fake.bot_user_id}) in 1 server; "
        "worker: external workers (python -m generator.worker); "
        f"operators: maker ({fake.app_owner.user_id}, the application's owner); "
        f"invite: https://discord.com/oauth2/authorize?client_id={fake.application_id}"
        "&scope=bot+applications.commands&permissions=274878008320"
    )
    output = "\n".join(run.lines)
    for noise in ("alembic", "PyNaCl", "davey", "DeprecationWarning", "FutureWarning", "voice"):
        assert noise not in output, output
    # nothing but log lines (no stray warnings), and the operator's sign-in link printed on stdout as well
    stray = [line for line in run.lines if not LOG_LINE.match(line)]
    assert len(stray) == 1 and stray[0].startswith("Operator sign-in: http://127.0.0.1:"), output


@pytest.mark.parametrize("delay_s", [0.5, 1.5, 3.0])
async def test_sigterm_at_any_moment_of_start_up_exits_0_without_a_traceback(tmp_path: Path, delay_s: float) -> None:
    """From the first line of bot/__main__.py on (the interpreter's own start, ~0.1-0.3 s here, ends by the default
    action of the signal: silently, status -15)."""
    async with FakeDiscord() as fake:
        run = await start_bot(tmp_path, DISCORD_API_BASE=fake.api_base, DISCORD_GATEWAY_URL=fake.gateway_url)
        await asyncio.sleep(delay_s)  # during the imports, the login or the start-up (migrations, extensions)
        assert await run.finish(signal.SIGTERM) == 0
