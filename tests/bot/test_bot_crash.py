"""Faults end to end: SIGKILL of the worker mid-job, SIGKILL and restart of the bot mid-job and in the window
between posting a result and recording it, an expired interaction token, an upload limit, failing uploads.
In each case the video arrives exactly once, through the channel with the bot token."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator

import aiohttp
import pytest
import pytest_asyncio
from sqlalchemy import select

from bot.delivery import UPLOAD_RETRIES_MAX
from jobs.models import JobStatus, Worker
from tests.bot.harness import (
    SMALL,
    BotProcess,
    callback_of,
    channel_messages_of_job,
    followup_text,
    job_id_from,
    png_bytes,
    result_posts,
    running_bot,
    wait_result,
)
from tests.fakediscord.server import FakeDiscord
from tests.web.webharness import free_port, metric

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.slow, pytest.mark.timeout(300)]

SETTLE_S = 2.0  # extra time after a delivery in which a duplicate would have shown up


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def world(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[tuple[FakeDiscord, BotProcess]]:
    fake = FakeDiscord(bot_token="test-bot-token")
    await fake.start()
    bot = BotProcess(
        fake,
        tmp_path_factory.mktemp("crash"),
        extra_env={
            "I2V_FAULT_SLEEP_PER_STEP": "0.25",
            "UPLOAD_TIMEOUT_SECONDS": "2",
            "MESSAGE_CONTENT_INTENT": "false",
            "WEB_PORT": str(free_port()),
        },
    )
    async with running_bot(fake, bot):
        yield fake, bot


async def _submit(fake: FakeDiscord, member, **options) -> int:
    attachment = fake.add_attachment(png_bytes(seed=member.user_id % 50), "in.png")
    interaction = await fake.inject_slash(
        "animate", {"image": attachment, "prompt": "leaves drift", **SMALL, **options}, member=member
    )
    return job_id_from(await followup_text(fake, interaction))


async def _assert_once(fake: FakeDiscord, bot: BotProcess, job_id: int) -> None:
    await wait_result(fake, job_id)
    await bot.wait_job(job_id, lambda j: j.delivered_at is not None, timeout=20)
    await asyncio.sleep(SETTLE_S)
    posts = result_posts(fake, job_id)
    assert len(posts) == 1, [p.describe() for p in posts]
    in_channel = [
        m
        for m in fake.channel_messages()
        if any(c.get("custom_id") == f"i2v:info:{job_id}" for row in m.get("components", []) for c in row["components"])
    ]
    assert len(in_channel) == 1
    job = await bot.job(job_id)
    assert job.result_message_id == int(in_channel[0]["id"])


async def _worker_pid_for(bot: BotProcess, job_id: int) -> int:
    from jobs.db import make_engine, make_sessionmaker

    engine = make_engine(bot.database_url)
    try:
        async with make_sessionmaker(engine)() as session:
            pid = await session.scalar(select(Worker.pid).where(Worker.current_job_id == job_id))
    finally:
        await engine.dispose()
    assert pid, f"no worker holds job {job_id}"
    return pid


async def test_worker_sigkill_mid_job(world: tuple[FakeDiscord, BotProcess]) -> None:
    fake, bot = world
    member = fake.add_member(fake.guild.id, "worker-kill")
    job_id = await _submit(fake, member)
    await bot.wait_job(job_id, lambda j: j.status == JobStatus.RUNNING and j.progress_step >= 2)
    os.kill(await _worker_pid_for(bot, job_id), signal.SIGKILL)
    await _assert_once(fake, bot, job_id)
    job = await bot.job(job_id)
    assert job.status == JobStatus.SUCCEEDED and job.attempt == 2


async def test_bot_sigkill_and_restart_mid_job(world: tuple[FakeDiscord, BotProcess]) -> None:
    from jobs.models import Job

    fake, bot = world
    member = fake.add_member(fake.guild.id, "bot-kill")
    earlier = await bot.jobs(Job.result_message_id.is_not(None))
    job_id = await _submit(fake, member)
    await bot.wait_job(job_id, lambda j: j.status == JobStatus.RUNNING and j.progress_step >= 2)
    await bot.kill()
    await bot.start()
    await _assert_once(fake, bot, job_id)
    # buttons under a video posted by the previous process still work (DynamicItem, state in the database)
    if earlier:
        old = earlier[0]
        assert old.result_message_id is not None, "the earlier job's video was posted"
        owner = fake.guild.members[old.user_id]  # Info is for the requester (or the operator)
        click = await fake.inject_component(f"i2v:info:{old.id}", old.result_message_id, member=owner)
        answer = (await callback_of(fake, click)).json["data"]
        assert answer["flags"] == 64 and f"Job #{old.id}" in answer["content"]
        refused = await fake.inject_component(f"i2v:delete:{old.id}", old.result_message_id, member=member)
        # another member's click reads as a job that does not exist: it names nobody
        assert (
            f"There is no such job of yours (#{old.id})" in (await callback_of(fake, refused)).json["data"]["content"]
        )
    assert (await bot.job(job_id)).status == JobStatus.SUCCEEDED
    # the restarted bot found its command payload unchanged and did not sync again
    syncs = [r for r in fake.requests if r.method == "PUT" and r.path.endswith("/commands")]
    assert len(syncs) == 1


async def test_bot_and_its_worker_sigkilled_mid_job_run_it_again_once_the_new_worker_is_ready(
    world: tuple[FakeDiscord, BotProcess],
) -> None:
    """Both processes die at once (a power cut, an OOM kill of the container): the restarted bot requeues at once
    the jobs of this host's workers whose process is gone, so the job runs as soon as the new worker is ready,
    long before the old lease or heartbeat would have expired; and it is delivered once."""
    import time

    from jobs.models import WorkerState

    fake, bot = world
    member = fake.add_member(fake.guild.id, "both-killed")
    job_id = await _submit(fake, member)
    await bot.wait_job(job_id, lambda j: j.status == JobStatus.RUNNING and j.progress_step >= 2)
    worker_pid = await _worker_pid_for(bot, job_id)
    os.kill(worker_pid, signal.SIGKILL)
    await bot.kill()
    await bot.start()
    ready_at = None
    while ready_at is None:  # the new worker process has loaded the model
        if any(w.pid != worker_pid and w.state in (WorkerState.IDLE, WorkerState.BUSY) for w in await bot.workers()):
            ready_at = time.monotonic()
        await asyncio.sleep(0.1)
    job = await bot.wait_job(
        job_id,
        lambda j: j.status == JobStatus.RUNNING and j.attempt == 2 or j.status == JobStatus.SUCCEEDED,
        timeout=60,
    )
    after = max(0.0, time.monotonic() - ready_at)
    print(f"\nbot and worker SIGKILLed: job {job_id} running again {after:.1f} s after the new worker was ready")
    assert after < 10.0, after
    await _assert_once(fake, bot, job_id)
    job = await bot.job(job_id)
    assert job.attempt == 2 and "worker process gone" in (job.error_detail or ""), job.error_detail


async def test_bot_killed_between_posting_and_recording(world: tuple[FakeDiscord, BotProcess]) -> None:
    """The result upload reaches Discord but the bot dies before it learns the message id: after the restart it
    finds its own message in the channel and records it instead of posting a second one."""
    fake, bot = world
    member = fake.add_member(fake.guild.id, "window-kill")
    job_id = await _submit(fake, member)
    await bot.wait_job(job_id, lambda j: j.status == JobStatus.RUNNING)
    before = len(fake.requests)
    slow = fake.slow(3.0, method="POST", path=rf"^/channels/{fake.channel_id}/messages$")
    for _ in range(1200):
        if slow.hits:  # the upload has reached the fake, which answers it 3 s later
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError("the result upload never started")
    await bot.kill()  # the fake still stores the message when its slow answer completes
    await asyncio.sleep(3.5)
    assert (await bot.job(job_id)).delivered_at is None
    await bot.start()
    await bot.wait_job(job_id, lambda j: j.delivered_at is not None, timeout=30)
    await asyncio.sleep(SETTLE_S)
    in_channel = [
        m
        for m in fake.channel_messages()
        if any(c.get("custom_id") == f"i2v:info:{job_id}" for row in m.get("components", []) for c in row["components"])
    ]
    assert len(in_channel) == 1
    assert (await bot.job(job_id)).result_message_id == int(in_channel[0]["id"])
    assert len([r for r in fake.requests[before:] if r.method == "POST" and r.files]) == 1
    # the restarted bot also removed the status message the result replaces: one message for the job
    assert [m["id"] for m in channel_messages_of_job(fake, job_id)] == [in_channel[0]["id"]]


async def test_token_expired_result_still_arrives_once_through_channel(world: tuple[FakeDiscord, BotProcess]) -> None:
    fake, bot = world
    member = fake.add_member(fake.guild.id, "token-expiry")
    fake.expire_tokens_after(2.0)
    try:
        attachment = fake.add_attachment(png_bytes(seed=11), "in.png")
        interaction = await fake.inject_slash(
            "animate", {"image": attachment, "prompt": "clouds pass", **SMALL}, member=member
        )
        job_id = job_id_from(await followup_text(fake, interaction))
        job = await bot.wait_job(job_id, lambda j: j.finished_at is not None)
        assert job.finished_at and job.created_at
        assert (job.finished_at - job.created_at).total_seconds() > 2.0, "the job must outlive the token"
        await _assert_once(fake, bot, job_id)
        (post,) = result_posts(fake, job_id)
        assert post.has_bot_auth and post.time - interaction.created_at > 2.0
        webhook_after = [
            r for r in fake.requests if interaction.token in r.path and r.time - interaction.created_at > 2.0
        ]
        assert webhook_after == []
    finally:
        fake.expire_tokens_after(None)


async def test_upload_limit_150kb(world: tuple[FakeDiscord, BotProcess]) -> None:
    fake, bot = world
    member = fake.add_member(fake.guild.id, "small-upload")
    limit = 150_000
    attachment = fake.add_attachment(png_bytes(seed=12), "in.png")
    interaction = await fake.inject_slash(
        "animate",
        {"image": attachment, "prompt": "a storm", "resolution": "512p", "frames": 16, "steps": 10, "fps": 8},
        member=member,
        attachment_size_limit=limit,
    )
    job_id = job_id_from(await followup_text(fake, interaction))
    await _assert_once(fake, bot, job_id)
    (post,) = result_posts(fake, job_id)
    (upload,) = post.files
    assert upload.size <= limit
    job = await bot.job(job_id)
    assert job.upload_limit_bytes == limit and job.output_bytes == upload.size
    # the limit was binding: a smaller video (256p, 8 frames) with the default limit came out larger than it
    from jobs.models import Job

    unconstrained = await bot.jobs(Job.upload_limit_bytes > limit, Job.output_bytes.is_not(None))
    if not unconstrained:  # this test ran alone: make one
        twin_id = await _submit(fake, fake.add_member(fake.guild.id, "twin"))
        unconstrained = [await bot.wait_job(twin_id, lambda j: j.output_bytes is not None)]
    assert max(j.output_bytes or 0 for j in unconstrained) > limit


async def test_upload_failures_are_retried_then_delivered_once(world: tuple[FakeDiscord, BotProcess]) -> None:
    fake, bot = world
    member = fake.add_member(fake.guild.id, "flaky-upload")
    job_id = await _submit(fake, member)
    await bot.wait_job(job_id, lambda j: j.status == JobStatus.RUNNING)
    # 503 is not retried by discord.py itself; then a 429 (discord.py waits it out); then an answer slower than
    # UPLOAD_TIMEOUT_SECONDS that still lands: the bot must find that message rather than post a second one
    # (the last of the bot's UPLOAD_RETRIES_MAX + 1 tries: it looks at the channel once more before giving up)
    path = rf"^/channels/{fake.channel_id}/messages$"
    before = await _upload_retries(bot)
    failing = fake.fail(status=503, method="POST", path=path, times=2)
    limited = fake.rate_limit(retry_after=0.3, method="POST", path=path)
    slow = fake.slow(3.0, method="POST", path=path)
    await _assert_once(fake, bot, job_id)
    assert (failing.hits, limited.hits, slow.hits) == (2, 1, 1)
    uploads = [
        r
        for r in fake.requests
        if r.method == "POST"
        and r.path == f"/channels/{fake.channel_id}/messages"
        and r.files
        and f"i2v:info:{job_id}" in str(r.json)
    ]
    assert len(uploads) == 4  # 503, 503, then 429 and the slow one within discord.py's call
    after = await _upload_retries(bot)
    assert after["server_error"] - before["server_error"] == UPLOAD_RETRIES_MAX == 2, (before, after)
    assert after["timeout"] == before["timeout"] and after["connection"] == before["connection"]


async def _upload_retries(bot: BotProcess) -> dict[str, float]:
    """i2v_upload_retries_total by reason, scraped from the bot's /metrics."""
    async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{bot.extra_env['WEB_PORT']}/metrics") as r:
        assert r.status == 200
        text = await r.text()
    assert "i2v_upload_retries_total" in text
    return {
        reason: metric(text, f'i2v_upload_retries_total{{reason="{reason}"}}')
        for reason in ("timeout", "connection", "server_error")
    }


async def test_final_upload_failure_tells_the_user_and_keeps_the_file(world: tuple[FakeDiscord, BotProcess]) -> None:
    fake, bot = world
    member = fake.add_member(fake.guild.id, "refused-upload")
    job_id = await _submit(fake, member)
    await bot.wait_job(job_id, lambda j: j.status == JobStatus.RUNNING)
    fake.fail(
        status=413,
        code=40005,
        message="Request entity too large",
        method="POST",
        path=rf"^/channels/{fake.channel_id}/messages$",
    )
    notice = await wait_result(fake, job_id)
    assert "could not be posted" in notice.json["content"] and not notice.files
    job = await bot.wait_job(job_id, lambda j: j.delivered_at is not None, timeout=20)
    assert job.output_path and os.path.exists(job.output_path)


async def test_channel_refusing_messages_falls_back_to_a_direct_message(world: tuple[FakeDiscord, BotProcess]) -> None:
    fake, bot = world
    member = fake.add_member(fake.guild.id, "no-permission")
    job_id = await _submit(fake, member)
    await bot.wait_job(job_id, lambda j: j.status == JobStatus.RUNNING)
    # the interaction's follow-up is the first way to tell; with its token dead, a direct message is the next
    for interaction in fake.interactions.values():
        if interaction.user_id == member.user_id:
            fake.expire_token(interaction)
    refusal = fake.fail(
        status=403,
        code=50013,
        message="Missing Permissions",
        method="POST",
        path=rf"^/channels/{fake.channel_id}/messages$",
        times=None,
    )
    dm = await fake.wait_for(lambda r: r.method == "POST" and r.path == "/users/@me/channels", timeout=60)
    assert dm.json["recipient_id"] in (member.user_id, str(member.user_id))
    told = await fake.wait_for(lambda r: r.method == "POST" and r.path == f"/channels/{dm.response['id']}/messages")
    assert f"job #{job_id} is made, but I could not post it" in told.json["content"]
    job = await bot.wait_job(job_id, lambda j: j.delivered_at is not None, timeout=20)
    fake.faults.remove(refusal)
    assert refusal.hits == 1 and job.result_message_id is None and os.path.exists(job.output_path or "")
    assert job.delivery_error and "403" in job.delivery_error


async def test_mentions_are_ignored_without_the_message_content_intent(world: tuple[FakeDiscord, BotProcess]) -> None:
    fake, bot = world
    assert fake.intents is not None and not fake.intents & (1 << 15)  # MESSAGE_CONTENT not requested
    before = len(fake.requests)
    image = fake.add_attachment(png_bytes(seed=21), "m.png")
    await fake.inject_message(f"<@{fake.bot_user_id}> make it move", attachments=[image], mentions=[fake.bot_member])
    await asyncio.sleep(1.5)
    reactions = [
        r.describe()
        for r in fake.requests[before:]
        if "/cdn/" in r.path or (r.method == "POST" and r.path.endswith("/messages"))
    ]
    assert reactions == []  # no download, no reply, no status message
