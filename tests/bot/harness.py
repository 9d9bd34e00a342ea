"""Test harness for the bot: run the real ``python -m bot`` (with its embedded worker on the tiny model) against
the project's fake Discord, and read what it did from the fake's recorded requests and the job database."""

from __future__ import annotations

import asyncio
import io
import os
import re
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from sqlalchemy import delete, select

from jobs.db import make_engine, make_sessionmaker
from jobs.models import InputImage, Job, Worker
from tests.fakediscord import payloads
from tests.fakediscord.records import RecordedRequest
from tests.fakediscord.server import FakeDiscord
from tests.fakediscord.state import FakeInteraction

REPO_ROOT = Path(__file__).resolve().parents[2]
BOT_START_TIMEOUT_S = 60.0  # interpreter start + migrations + login + gateway
BOT_STOP_TIMEOUT_S = 30.0
RESULT_TIMEOUT_S = 90.0  # one tiny-model job end to end, with a cold worker
SMALL = {"resolution": "256p", "frames": 8, "steps": 10}  # the cheapest valid parameters
TOKEN = "test-bot-token"
JOB_ID_IN_TEXT = re.compile(r"job #(\d+)", re.IGNORECASE)
ANSWER_TIMEOUT_S = 20.0  # the bot's visible answer to one interaction


def png_bytes(width: int = 320, height: int = 256, *, seed: int = 0) -> bytes:
    """A real PNG with a gradient (distinct per seed)."""
    y, x = np.mgrid[0:height, 0:width]
    red = (x * 255 // width + seed * 37) % 256
    green = (y * 255 // height) % 256
    blue = np.full_like(x, (seed * 91) % 256)
    image = Image.fromarray(np.dstack([red, green, blue]).astype(np.uint8), "RGB")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _pythonpath() -> str:
    """PYTHONPATH for a child process: this checkout first, so a child started in another working directory runs
    the code under test, not whatever copy of the package is installed."""
    rest = os.environ.get("PYTHONPATH", "")
    return os.pathsep.join([str(REPO_ROOT), *([rest] if rest else [])])


def worker_process_env(bot: BotProcess, root: Path, worker_id: str, **extra: str) -> dict[str, str]:
    """The environment of a ``python -m generator.worker`` for ``bot``'s database, with its own DATA_DIR and
    OUTPUT_DIR under ``root`` (its working directory) and no Discord settings."""
    env = {k: v for k, v in bot.env().items() if not k.startswith("DISCORD_")}
    env.update({"WORKER_ID": worker_id, "DATA_DIR": str(root / "data"), "OUTPUT_DIR": str(root / "outputs")})
    env.update(extra)
    return env


async def start_worker_process(bot: BotProcess, root: Path, worker_id: str, **extra: str) -> asyncio.subprocess.Process:
    """Start a worker in its own working directory ``root`` (created), logging to ``root/worker.log``."""
    root.mkdir(parents=True, exist_ok=True)
    log = open(root / "worker.log", "ab")  # noqa: SIM115 - handed to the child
    try:
        return await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "generator.worker",
            env=worker_process_env(bot, root, worker_id, **extra),
            cwd=str(root),
            stdout=log,
            stderr=log,
            stdin=asyncio.subprocess.DEVNULL,
        )
    finally:
        log.close()


async def stop_process(proc: asyncio.subprocess.Process | None, timeout: float = 30.0) -> None:
    """SIGTERM, then SIGKILL after ``timeout`` seconds; nothing if it already ended."""
    if proc is None or proc.returncode is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(proc.wait(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()


@dataclass
class BotProcess:
    """One ``python -m bot`` subprocess pointed at ``fake``, with its state under ``root``."""

    fake: FakeDiscord
    root: Path
    extra_env: dict[str, str] = field(default_factory=dict)
    db_url: str | None = None
    """DATABASE_URL; default: an SQLite file under ``root``."""
    proc: asyncio.subprocess.Process | None = None
    starts: int = 0
    cwd: Path | None = None
    """The bot's working directory; default the repository root. The code under test is found through PYTHONPATH."""

    @property
    def database_url(self) -> str:
        return self.db_url or f"sqlite+aiosqlite:///{self.root / 'i2v.sqlite3'}"

    @property
    def log_path(self) -> Path:
        return self.root / "bot.log"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DISCORD_", "I2V_FAULT_"))}
        env.update(
            {
                "DISCORD_TOKEN": TOKEN,
                "DISCORD_API_BASE": self.fake.api_base,
                "DISCORD_GATEWAY_URL": self.fake.gateway_url,
                "DATABASE_URL": self.database_url,
                "I2V_MODEL": "tiny",
                "I2V_DEVICE": "cpu",
                "OUTPUT_DIR": str(self.root / "outputs"),
                "DATA_DIR": str(self.root / "data"),
                "WORKER": "embedded",
                "GUILD_READY_TIMEOUT_SECONDS": "0.05",
                "STATUS_EDIT_INTERVAL_SECONDS": "0.5",
                "POLL_INTERVAL_SECONDS": "0.2",
                "I2V_POLL_INTERVAL_S": "0.1",
                "I2V_PROGRESS_INTERVAL_S": "0.2",
                "I2V_LEASE_SECONDS": "4",
                "I2V_RESCUE_INTERVAL_S": "0.5",
                "I2V_GRACE_SECONDS": "10",  # a job running at stop() finishes or is given back well within it
                "QUOTA_DAILY_GPU_SECONDS": "100000",
                "QUOTA_MAX_PENDING": "5",
                "MESSAGE_CONTENT_INTENT": "true",
                "LOG_LEVEL": "INFO",
                "PYTHONUNBUFFERED": "1",
                "OMP_NUM_THREADS": "1",
                "PYTHONPATH": _pythonpath(),
                "WEB_PORT": "0",  # the web page on a free port: bots of parallel tests never collide
            }
        )
        env.update(self.extra_env)
        return env

    async def start(self) -> None:
        """Start the bot and wait until it has identified on the fake's gateway."""
        self.root.mkdir(parents=True, exist_ok=True)
        before = self.fake.identify_count
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bot",
            env=self.env(),
            cwd=str(self.cwd or REPO_ROOT),
            stdout=log,
            stderr=log,
            stdin=asyncio.subprocess.DEVNULL,
        )
        log.close()
        self.starts += 1
        deadline = time.monotonic() + BOT_START_TIMEOUT_S
        while self.fake.identify_count <= before or not (self.fake._live and self.fake._live.ready):
            if self.proc.returncode is not None:
                raise AssertionError(f"bot exited with {self.proc.returncode}:\n{self.tail()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"bot did not connect within {BOT_START_TIMEOUT_S}s:\n{self.tail()}")
            await asyncio.sleep(0.05)

    async def stop(self) -> int | None:
        """SIGTERM and wait (the bot stops its worker gracefully)."""
        if self.proc is None or self.proc.returncode is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return await asyncio.wait_for(self.proc.wait(), BOT_STOP_TIMEOUT_S)
        except TimeoutError:
            self.proc.kill()
            return await self.proc.wait()

    async def kill(self) -> None:
        """SIGKILL the bot process (its worker notices and stops itself)."""
        assert self.proc is not None
        self.proc.kill()
        await self.proc.wait()

    def tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    # -- database ----------------------------------------------------------------------------------------------

    async def read(self, fn: Callable[[Any], Any]) -> Any:
        """``await fn(session)`` on a read-only session of the bot's database (its own engine, disposed after)."""
        engine = make_engine(self.database_url, read_only=True)
        try:
            async with make_sessionmaker(engine)() as session:
                return await fn(session)
        finally:
            await engine.dispose()

    async def select_all(self, stmt: Any) -> list[Any]:
        """Every object (or first column) ``stmt`` selects from the bot's database."""

        async def run(session: Any) -> list[Any]:
            return list((await session.scalars(stmt)).all())

        return await self.read(run)

    async def jobs(self, *where: Any) -> list[Job]:
        return await self.select_all(select(Job).where(*where).order_by(Job.id))

    async def drop_input(self, sha256: str) -> None:
        """Remove a stored input image behind the bot's back (a lost input, for fault tests)."""
        engine = make_engine(self.database_url)
        try:
            async with make_sessionmaker(engine)() as session, session.begin():
                await session.execute(delete(InputImage).where(InputImage.sha256 == sha256))
        finally:
            await engine.dispose()

    async def kept_bytes(self, user_id: int) -> tuple[int, int]:
        """(input images, videos) the store keeps for ``user_id``'s jobs."""
        from tests.store_reads import kept_bytes_of_user

        return await self.read(lambda session: kept_bytes_of_user(session, user_id))

    async def job(self, job_id: int) -> Job:
        (job,) = await self.jobs(Job.id == job_id)
        return job

    async def workers(self) -> list[Worker]:
        return await self.select_all(select(Worker).order_by(Worker.id))

    async def worker_pids(self) -> list[int]:
        return [w.pid for w in await self.workers()]

    async def wait_job(self, job_id: int, check: Callable[[Job], bool], timeout: float = RESULT_TIMEOUT_S) -> Job:
        deadline = time.monotonic() + timeout
        while True:
            job = await self.job(job_id)
            if check(job):
                return job
            if time.monotonic() > deadline:
                raise AssertionError(f"job {job_id} never matched; last {job!r} phase={job.phase}\n{self.tail()}")
            await asyncio.sleep(0.1)

    def reap_workers(self, pids: list[int]) -> None:
        """Kill worker processes this test's bots started that are still alive (teardown only)."""
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


@asynccontextmanager
async def running_bot(fake: FakeDiscord, bot: BotProcess) -> AsyncIterator[BotProcess]:
    """Start ``bot`` (the fake is already started); on exit stop the bot, kill any worker it left behind, stop the
    fake, and fail if the bot did not exit cleanly or sent a body Discord refuses (the fake's 400 / 50035)."""
    pids: list[int] = []
    code: int | None = None
    try:
        await bot.start()
        yield bot
    finally:
        try:
            pids = await bot.worker_pids()
        except Exception:  # noqa: BLE001 - the database may not exist if start failed
            pass
        code = await bot.stop()
        bot.reap_workers(pids)
        await fake.stop()
    assert code == 0, f"bot exited with {code}:\n{bot.tail()}"
    refused = [f"{r.method} {r.path}: {r.response}" for r in fake.refused_bodies()]
    assert not refused, "the bot sent bodies Discord refuses:\n" + "\n".join(refused)


# -- reading the fake's records ---------------------------------------------------------------------------------


def webhook_posts(fake: FakeDiscord, interaction: FakeInteraction) -> list[RecordedRequest]:
    """Follow-ups the bot sent for ``interaction`` (interaction token, no bot auth)."""
    path = f"/webhooks/{fake.application_id}/{interaction.token}"
    return [r for r in fake.requests if r.method == "POST" and r.path.rstrip("/") == path and r.status]


async def followup_text(fake: FakeDiscord, interaction: FakeInteraction, timeout: float = 15.0) -> str:
    """The content of the first follow-up the bot sent for ``interaction``."""
    path = f"/webhooks/{fake.application_id}/{interaction.token}"
    record = await fake.wait_for(lambda r: r.method == "POST" and r.path.rstrip("/") == path, timeout)
    return (record.json or {}).get("content", "")


async def callback_of(fake: FakeDiscord, interaction: FakeInteraction, timeout: float = 5.0) -> RecordedRequest:
    """The interaction's callback request (the acknowledgement)."""
    path = f"/interactions/{interaction.id}/{interaction.token}/callback"
    return await fake.wait_for(lambda r: r.method == "POST" and r.path == path, timeout)


def custom_ids(message_json: dict[str, Any] | None) -> list[str]:
    """Every component custom_id in a message body."""
    ids: list[str] = []
    for row in (message_json or {}).get("components") or []:
        for child in row.get("components", []):
            if "custom_id" in child:
                ids.append(child["custom_id"])
    return ids


def modal_inputs(callback_json: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The text inputs of a modal callback, by the first word of their label (lower case): each input's body (its
    custom_id, prefilled value, limits) with ``label`` set to the text shown above it, whether a Label component
    (type 18) wraps the input or an action row holds an input that carries its own label."""
    inputs: dict[str, dict[str, Any]] = {}
    for item in callback_json["data"]["components"]:
        if item["type"] == 18:
            shown = [(item["label"], item["component"])]
        else:
            shown = [(child.get("label", ""), child) for child in item.get("components", [])]
        for label, child in shown:
            if child.get("type") == 4:
                inputs[label.split(" ")[0].lower()] = {**child, "label": label}
    return inputs


def modal_selects(callback_json: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The string selects of a modal callback (each in a Label, type 18), by the first word of their label (lower
    case): each select's body (its custom_id, options) with ``label`` set to the text shown above it and
    ``default`` to the values of its options marked default."""
    selects: dict[str, dict[str, Any]] = {}
    for item in callback_json["data"]["components"]:
        if item["type"] == 18 and item["component"]["type"] == 3:
            child = item["component"]
            default = [option["value"] for option in child["options"] if option.get("default")]
            selects[item["label"].split(" ")[0].lower()] = {**child, "label": item["label"], "default": default}
    return selects


def result_posts(fake: FakeDiscord, job_id: int) -> list[RecordedRequest]:
    """Successful channel messages that deliver ``job_id`` (they carry its Info button)."""
    return [
        r
        for r in fake.requests
        if r.method == "POST"
        and r.path.startswith("/channels/")
        and r.path.endswith("/messages")
        and r.status == 200
        and f"i2v:info:{job_id}" in custom_ids(r.json)
    ]


def channel_messages_of_job(fake: FakeDiscord, job_id: int, channel_id: int | None = None) -> list[dict[str, Any]]:
    """The messages the bot's token keeps in the channel for ``job_id`` (its status message, its result or notice),
    oldest first; the interaction's ephemeral answers are not channel messages and are left out."""
    named = re.compile(rf"#{job_id}\b")
    return [
        m
        for m in fake.channel_messages(channel_id)
        if int(m["author"]["id"]) == fake.bot_user_id and not m.get("webhook_id") and named.search(m["content"])
    ]


async def wait_result(fake: FakeDiscord, job_id: int, timeout: float = RESULT_TIMEOUT_S) -> RecordedRequest:
    """The channel message delivering ``job_id``."""
    return await fake.wait_for(
        lambda r: (
            r.method == "POST"
            and r.path.endswith("/messages")
            and r.status == 200
            and f"i2v:info:{job_id}" in custom_ids(r.json)
        ),
        timeout,
    )


def job_id_from(text: str) -> int:
    """The first ``job #N`` in ``text``."""
    match = JOB_ID_IN_TEXT.search(text)
    assert match, f"no job id in {text!r}"
    return int(match.group(1))


@dataclass
class Answer:
    """What the bot showed for one interaction."""

    callback_type: int
    ephemeral: bool
    content: str
    embeds: list[dict[str, Any]]
    custom_ids: list[str]

    @property
    def text(self) -> str:
        """Content plus every embed's title, description, field names/values and footer."""
        parts = [self.content]
        for embed in self.embeds:
            parts += [embed.get("title", ""), embed.get("description", "")]
            for embed_field in embed.get("fields", []):
                parts += [embed_field["name"], embed_field["value"]]
            parts.append((embed.get("footer") or {}).get("text", ""))
        return "\n".join(parts)


async def animate(
    fake: FakeDiscord,
    member: Any,
    prompt: str = "waves roll in slowly",
    *,
    timeout: float = ANSWER_TIMEOUT_S,
    **options: Any,
) -> str:
    """``/animate`` as ``member`` with a picture of their own and the cheapest parameters (``options`` override
    them); the bot's ephemeral follow-up text."""
    attachment = fake.add_attachment(png_bytes(seed=member.user_id % 97), "pic.png")
    values = {"image": attachment, "prompt": prompt, **SMALL, **options}
    interaction = await fake.inject_slash("animate", values, member=member)
    return await followup_text(fake, interaction, timeout=timeout)


async def queued_job(fake: FakeDiscord, member: Any, **options: Any) -> int:
    """``/animate`` that must be queued: its job id."""
    text = await animate(fake, member, **options)
    assert "Queued as job #" in text, text
    return job_id_from(text)


async def slash(fake: FakeDiscord, command: str, options: dict[str, Any] | None, member: Any) -> Answer:
    """Run a slash command (``"name"`` or ``"name sub"``) as ``member`` and return what the bot showed."""
    interaction = await fake.inject_slash(command, options or {}, member=member)
    return await answer_of(fake, interaction)


async def answer_of(
    fake: FakeDiscord, interaction: FakeInteraction, *, after: int = 0, timeout: float = ANSWER_TIMEOUT_S
) -> Answer:
    """The bot's visible answer: the callback's message, or the first follow-up / edit after a defer."""
    callback_path = f"/interactions/{interaction.id}/{interaction.token}/callback"
    callback = await fake.wait_for(lambda r: r.method == "POST" and r.path == callback_path, timeout)
    kind = int(callback.json["type"])
    data = callback.json.get("data") or {}
    ephemeral = bool(int(data.get("flags") or 0) & payloads.MESSAGE_FLAG_EPHEMERAL)
    if kind in (4, 7):
        body = data
    else:
        webhook = f"/webhooks/{fake.application_id}/{interaction.token}"
        record = await fake.wait_for(
            lambda r: r.method in ("POST", "PATCH") and r.path.startswith(webhook), timeout, after=after
        )
        body = record.json or {}
    return Answer(kind, ephemeral, body.get("content") or "", body.get("embeds") or [], custom_ids(body))
