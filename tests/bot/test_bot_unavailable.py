"""A worker that cannot start is a clear state, not a loop: the real bot (through the Discord fake) with an embedded
worker whose I2V_MODEL is a missing folder. Within 60 s ``/animate`` answers that video generation is unavailable
(with the reason) and still queues the job (so do a mention's status message and the web page's answer),
``/healthz`` answers 503 (the reason only for the operator), and the log holds the reason once per failed start,
with no traceback. Fixed (``I2V_MODEL=tiny``) and restarted, the queued job is made and
delivered."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from jobs.models import JobStatus
from tests.bot.harness import (
    SMALL,
    TOKEN,
    BotProcess,
    channel_messages_of_job,
    custom_ids,
    followup_text,
    job_id_from,
    png_bytes,
    result_posts,
    start_worker_process,
    stop_process,
    wait_result,
)
from tests.fakediscord.records import RecordedRequest
from tests.fakediscord.server import FakeDiscord
from tests.web.webharness import free_port, printed_link, sign_in_http

pytestmark = [pytest.mark.slow, pytest.mark.timeout(360)]

UNAVAILABLE_WITHIN_S = 60.0  # from the bot's start to the "unavailable" answer
FAST_RESTARTS = {  # fast back-off so the test sees the failed starts and the unavailable state in seconds
    "I2V_RESTART_BACKOFF_SECONDS": "0.2",
    "I2V_RESTART_BACKOFF_MAX_SECONDS": "0.5",
    "I2V_UNAVAILABLE_AFTER_FAILURES": "2",
    "I2V_UNAVAILABLE_RETRY_SECONDS": "1",
}
SUPERVISOR_FAILED_START = re.compile(
    r"(the worker could not start|video generation is unavailable: the worker "
    r"could not start) \("
)
CHILD_FAILED_START = "cannot start; exiting with status 5"


async def _health(http: aiohttp.ClientSession, url: str) -> tuple[int, dict[str, Any]]:
    async with http.get(url + "/healthz") as response:
        return response.status, await response.json()


async def _animate(fake: FakeDiscord, name: str) -> str:
    member = fake.add_member(fake.guild.id, name)
    attachment = fake.add_attachment(png_bytes(seed=7), f"{name}.png")
    interaction = await fake.inject_slash(
        "animate", {"image": attachment, "prompt": "waves roll in", **SMALL}, member=member
    )
    return await followup_text(fake, interaction, timeout=30)


async def test_a_model_that_cannot_load_says_unavailable_then_a_fixed_restart_delivers(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-model"
    reason = f"I2V_MODEL '{missing}' looks like a folder but there is no such folder"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    fake = FakeDiscord(bot_token=TOKEN)
    await fake.start()
    bot = BotProcess(
        fake, tmp_path / "bot", extra_env={"I2V_MODEL": str(missing), "WEB_PORT": str(port), **FAST_RESTARTS}
    )
    try:
        started = time.monotonic()
        await bot.start()
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
            while True:  # the first failed start is known within seconds of the model load
                status, body = await _health(http, url)
                if status == 503 and body.get("reason") == "video generation is unavailable":
                    break
                assert time.monotonic() - started < UNAVAILABLE_WITHIN_S, (status, body, bot.tail())
                await asyncio.sleep(0.5)
            # without an operator's session, /healthz says that it is unavailable, not why (no paths, no hosts)
            assert body["reason"] == "video generation is unavailable" and reason not in str(body), body

            text = await _animate(fake, "early-user")
            assert time.monotonic() - started < UNAVAILABLE_WITHIN_S
            assert "video generation is unavailable right now: " in text.lower(), text
            assert reason in text and "stays queued" in text, text
            job_id = job_id_from(text)
            assert (await bot.job(job_id)).status == JobStatus.QUEUED  # queued, not refused

            # a mention: the status message it gets as a reply says so too
            member = fake.add_member(fake.guild.id, "mention-user")
            image = fake.add_attachment(png_bytes(seed=8), "dog.png")
            request = await fake.inject_message(
                f"<@{fake.bot_user_id}> the dog wags its tail --resolution 256p --frames 8 --steps 10",
                author=member,
                mentions=[fake.bot_member],
                attachments=[image],
            )
            status_post = await fake.wait_for(
                lambda r: (
                    r.method == "POST"
                    and r.path.endswith("/messages")
                    and str((r.json or {}).get("message_reference", {}).get("message_id")) == request["id"]
                ),
                30,
            )
            assert reason in status_post.json["content"] and "unavailable right now" in status_post.json["content"]

            # the web page, signed in with the operator's link the bot printed at start
            cookie, token = await asyncio.to_thread(sign_in_http, printed_link(bot.log_path))
            csrf = {"Cookie": cookie, "X-CSRF-Token": token}
            form = aiohttp.FormData()
            form.add_field("image", png_bytes(seed=9), filename="web.png", content_type="image/png")
            for name, value in {"prompt": "from the page", **SMALL}.items():
                form.add_field(name, str(value))
            async with http.post(url + "/api/jobs", data=form, headers=csrf) as response:
                assert response.status == 201, await response.text()
                web_job = await response.json()
            assert web_job["status"] == "queued" and reason in (web_job["notice"] or ""), web_job

            # the registry says it too (what WORKER=external bots and other processes read)
            async def unavailable_in_registry() -> bool:
                rows = await bot.workers()
                return any(w.failure_reason and reason in w.failure_reason and w.unavailable_since for w in rows)

            deadline = time.monotonic() + UNAVAILABLE_WITHIN_S
            while not await unavailable_in_registry():
                assert time.monotonic() < deadline, (await bot.workers(), bot.tail())
                await asyncio.sleep(0.5)
            status, body = await _health(http, url)
            assert status == 503 and body["reason"] == "video generation is unavailable", body
        assert await bot.stop() == 0, bot.tail()
    finally:
        await bot.stop()

    log = bot.log_path.read_text(errors="replace")
    supervisor_lines = [line for line in log.splitlines() if SUPERVISOR_FAILED_START.search(line)]
    child_failures = log.count(CHILD_FAILED_START)
    assert len(supervisor_lines) >= 2, log[-4000:]  # at least two back-off steps, then "unavailable"
    assert any("video generation is unavailable" in line for line in supervisor_lines), supervisor_lines
    # the reason once per back-off step, from the supervisor alone (the child passes it on, it does not log it)
    assert log.count(reason) == len(supervisor_lines), [line for line in log.splitlines() if reason in line]
    assert all(reason in line for line in supervisor_lines)
    assert child_failures in (len(supervisor_lines), len(supervisor_lines) + 1)  # the last may race the stop
    assert "Traceback" not in log, log[log.index("Traceback") - 2000 :][:4000]
    print(f"\n{len(supervisor_lines)} failed starts logged, one line each")

    # fixed and restarted: the job queued while unavailable is made and delivered; /healthz is healthy again
    bot.extra_env["I2V_MODEL"] = "tiny"
    try:
        await bot.start()
        await wait_result(fake, job_id, timeout=180)
        job = await bot.wait_job(job_id, lambda j: j.delivered_at is not None, timeout=30)
        assert job.status == JobStatus.SUCCEEDED and job.attempt == 1
        assert len(result_posts(fake, job_id)) == 1
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
            status, body = await _health(http, url)
        assert status == 200 and body["status"] == "ok", body
        text = await _animate(fake, "later-user")
        assert "unavailable" not in text.lower(), text
        assert await bot.stop() == 0, bot.tail()
    finally:
        await bot.stop()
        await fake.stop()


async def test_an_external_worker_that_cannot_start_makes_the_bot_say_so(tmp_path: Path) -> None:
    """WORKER=external: a ``python -m generator.worker`` on its own (as on a GPU box) whose model folder is missing
    logs the reason once, exits 5 and leaves it in its registry row; the bot reads it from there."""
    missing = tmp_path / "gpu-box-model"
    reason = f"I2V_MODEL '{missing}' looks like a folder but there is no such folder"
    port = free_port()
    fake = FakeDiscord(bot_token=TOKEN)
    await fake.start()
    bot = BotProcess(
        fake, tmp_path / "bot", cwd=tmp_path / "bot", extra_env={"WORKER": "external", "WEB_PORT": str(port)}
    )
    try:
        (tmp_path / "bot").mkdir()
        await bot.start()
        worker = await start_worker_process(bot, tmp_path / "gpu-box", "gpu-box", I2V_MODEL=str(missing))
        assert await asyncio.wait_for(worker.wait(), 120) == 5
        text = await _animate(fake, "external-user")
        assert "video generation is unavailable right now: " in text.lower() and reason in text, text
        assert (await bot.job(job_id_from(text))).status == JobStatus.QUEUED
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
            status, body = await _health(http, f"http://127.0.0.1:{port}")
        assert status == 503 and body["reason"] == "video generation is unavailable", body
        assert await bot.stop() == 0, bot.tail()
    finally:
        await bot.stop()
        await fake.stop()
    worker_log = (tmp_path / "gpu-box" / "worker.log").read_text(errors="replace")
    assert worker_log.count(reason) == 1 and "Traceback" not in worker_log, worker_log[-3000:]


async def test_a_waiting_jobs_status_says_when_the_worker_is_unavailable_and_when_it_is_back(tmp_path: Path) -> None:
    """WORKER=external: a job waits (the operator paused the queue); a worker that cannot load its model makes the
    job's status message say that video generation is unavailable, with the reason; a worker that starts makes
    it say that generation is available again; resumed, the job is made and its result replaces the status."""
    missing = tmp_path / "gpu-box-model"
    reason = f"I2V_MODEL '{missing}' looks like a folder but there is no such folder"
    fake = FakeDiscord(bot_token=TOKEN)
    await fake.start()
    operator = fake.add_member(fake.guild.id, "operator", permissions=0)
    bot = BotProcess(
        fake,
        tmp_path / "bot",
        cwd=tmp_path / "bot",
        extra_env={"WORKER": "external", "OPERATOR_USER_IDS": str(operator.user_id)},
    )
    good: asyncio.subprocess.Process | None = None
    try:
        (tmp_path / "bot").mkdir()
        await bot.start()
        paused = await fake.inject_slash("operator pause", {}, member=operator)
        assert (await followup_text(fake, paused)).startswith("Paused"), "the queue did not pause"
        text = await _animate(fake, "waiting-user")
        job_id = job_id_from(text)
        assert "unavailable" not in text.lower(), text  # no worker has failed yet: nothing is known to be wrong
        posted = await fake.wait_for(
            lambda r: r.method == "POST" and r.status == 200 and f"i2v:cancel:{job_id}" in custom_ids(r.json), 30
        )
        status_path = f"/channels/{fake.channel_id}/messages/{posted.response['id']}"

        def edited(check: Callable[[str], bool]) -> Callable[[RecordedRequest], bool]:
            return lambda r: (
                r.method == "PATCH"
                and r.path == status_path
                and r.status == 200
                and check((r.json or {}).get("content", ""))
            )

        broken = await start_worker_process(bot, tmp_path / "gpu-box", "gpu-box", I2V_MODEL=str(missing))
        assert await asyncio.wait_for(broken.wait(), 120) == 5
        down = await fake.wait_for(edited(lambda content: reason in content), 30)
        content = down.json["content"]
        assert "Video generation is unavailable right now" in content and "stays queued" in content, content
        assert "Queued: position **1**" in content and "paused" in content, content  # still waiting, still paused

        good = await start_worker_process(bot, tmp_path / "gpu-box-2", "gpu-box-2", I2V_MODEL="tiny")
        back = await fake.wait_for(edited(lambda content: "available again" in content), 120)
        content = back.json["content"]
        assert reason not in content and "unavailable" not in content and "paused" in content, content
        assert (await bot.job(job_id)).status == JobStatus.QUEUED

        resumed = await fake.inject_slash("operator resume", {}, member=operator)
        assert (await followup_text(fake, resumed)).startswith("Resumed")
        result = await wait_result(fake, job_id, timeout=120)
        await bot.wait_job(job_id, lambda j: j.delivered_at is not None, timeout=30)
        assert [m["id"] for m in channel_messages_of_job(fake, job_id)] == [result.response["id"]]
        assert await bot.stop() == 0, bot.tail()
    finally:
        await stop_process(good)
        await bot.stop()
        await fake.stop()
