"""Discord and the web page at once, in one ``python -m bot`` over one embedded worker (tiny model), against the
fake Discord: a job from each, both delivered in queue order, each charged to its own user; ``/web`` gives a
sign-in link that works once; /healthz and /metrics answer from the same process."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from jobs.models import JobSource, JobStatus
from tests.bot.harness import (
    SMALL,
    TOKEN,
    BotProcess,
    callback_of,
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

WEB_USER_ID = 777000777  # the loopback page's user (WEB_USER_ID)
LINK = re.compile(r"(http://\S+/signin\?token=[\w-]+)")


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def world(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[tuple[FakeDiscord, BotProcess, str]]:
    fake = FakeDiscord(bot_token=TOKEN)
    await fake.start()
    port = free_port()
    bot = BotProcess(fake, tmp_path_factory.mktemp("bot"), extra_env={
        "WEB_PORT": str(port), "WEB_USER_ID": str(WEB_USER_ID), "I2V_FAULT_SLEEP_PER_STEP": "0.05"})
    async with running_bot(fake, bot):
        yield fake, bot, f"http://127.0.0.1:{port}"
        assert TOKEN not in bot.log_path.read_text(errors="replace"), "the bot token reached the log"


async def page_json(http: aiohttp.ClientSession, method: str, url: str, **kwargs: Any) -> Any:
    async with http.request(method, url, **kwargs) as response:
        assert response.status < 300, (method, url, response.status, await response.text())
        return await response.json()


async def test_discord_and_the_page_share_one_queue_and_worker(world: tuple[FakeDiscord, BotProcess, str]) -> None:
    fake, bot, url = world
    member = fake.add_member(fake.guild.id, "discord-user")
    async with aiohttp.ClientSession() as http:
        csrf = {"X-CSRF-Token": (await page_json(http, "GET", url + "/api/me"))["csrf_token"]}
        await page_json(http, "POST", url + "/api/console/pause", json={"reason": "line both up"}, headers=csrf)

        attachment = fake.add_attachment(png_bytes(), "cat.png")
        interaction = await fake.inject_slash(
            "animate", {"image": attachment, "prompt": "from discord", **SMALL}, member=member)
        discord_job = job_id_from(await followup_text(fake, interaction))

        form = aiohttp.FormData()
        form.add_field("image", png_bytes(seed=3), filename="web.png", content_type="image/png")
        for name, value in {"prompt": "from the page", "preset": "quick", **SMALL}.items():
            form.add_field(name, str(value))
        web_job = (await page_json(http, "POST", url + "/api/jobs", data=form, headers=csrf))["id"]

        queue = (await page_json(http, "GET", url + "/api/console"))["queue"]
        order = [entry["id"] for entry in sorted(queue, key=lambda e: e["position"])]
        assert sorted(order) == sorted([discord_job, web_job]), queue
        await page_json(http, "POST", url + "/api/console/resume", json={}, headers=csrf)

        result = await wait_result(fake, discord_job)
        assert "from discord" in result.json["content"]
        done = {job_id: await bot.wait_job(job_id, lambda j: j.delivered_at is not None) for job_id in order}
        first, second = (done[job_id] for job_id in order)
        assert first.status == second.status == JobStatus.SUCCEEDED
        assert first.finished_at <= second.started_at, "one worker ran them in queue order"
        assert done[web_job].source == JobSource.WEB and done[web_job].user_id == WEB_USER_ID
        assert done[discord_job].user_id == member.user_id
        assert result_posts(fake, web_job) == [], "Discord never posts the page's job"
        assert len(result_posts(fake, discord_job)) == 1
        async with http.get(f"{url}/api/jobs/{web_job}/video.mp4") as response:
            assert response.status == 200 and (await response.read())[4:8] == b"ftyp"
        async with http.get(f"{url}/api/jobs/{discord_job}") as response:
            assert response.status == 404, "the page's user sees only their own jobs"

        # each charged to its own user
        page_quota = await page_json(http, "GET", url + "/api/quota")
        assert page_quota["used"] > 0 and page_quota["pending"] == 0
        for user_id, job_id in ((member.user_id, discord_job), (WEB_USER_ID, web_job)):
            ledger = await _ledger(bot, user_id)
            assert {(row[0], row[1]) for row in ledger} >= {(job_id, "reserve"), (job_id, "charge")}, ledger
            assert all(row[0] == job_id for row in ledger), ledger

        health = await page_json(http, "GET", url + "/healthz")
        assert health["status"] == "ok"
        async with http.get(url + "/metrics") as response:
            text = await response.text()
        assert metric(text, 'i2v_jobs_finished_total{outcome="succeeded"}') >= 2
        assert "i2v_discord_gateway_latency_seconds" in text


async def _ledger(bot: BotProcess, user_id: int) -> list[tuple[int, str]]:
    from sqlalchemy import select

    from jobs.db import make_engine, make_sessionmaker
    from jobs.models import QuotaLedger

    engine = make_engine(bot.database_url, read_only=True)
    try:
        async with make_sessionmaker(engine)() as session:
            rows = await session.execute(select(QuotaLedger.job_id, QuotaLedger.kind).where(QuotaLedger.user_id == user_id))
            return [(job_id, kind.value) for job_id, kind in rows]
    finally:
        await engine.dispose()


async def test_the_web_command_gives_a_link_that_works_once(world: tuple[FakeDiscord, BotProcess, str]) -> None:
    fake, _, url = world
    member = fake.add_member(fake.guild.id, "web-signin")
    interaction = await fake.inject_slash("web", {}, member=member)
    text = await followup_text(fake, interaction)
    ack = await callback_of(fake, interaction)
    assert ack.json["type"] == 5 and ack.json["data"]["flags"] == 64, "the link is ephemeral"
    (link,) = LINK.findall(text)
    assert link.startswith(url + "/signin?token=")
    token = link.split("token=", 1)[1]
    async with aiohttp.ClientSession() as http:
        async with http.get(link) as response:  # a link preview fetching the URL spends nothing
            assert response.status == 200 and "Sign in" in await response.text()
        async with http.post(url + "/signin", data={"token": token}, allow_redirects=False) as response:
            assert response.status == 303 and "i2v_session" in response.cookies
        async with http.post(url + "/signin", data={"token": token}, allow_redirects=False) as response:
            assert response.status == 403 and "already used" in await response.text()
