"""Discord and the web page at once, in one ``python -m bot`` over one embedded worker (tiny model), against the
fake Discord. The page listens beyond loopback (WEB_HOST=0.0.0.0), so every page user signs in with the link
``/web`` gives them in Discord and the page acts as that member: a job from each side, both delivered in queue
order, each charged to its own user; a link works once; a member's role tier (set with ``/operator tier``)
applies on the page as in Discord; /healthz and /metrics answer from the same process."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from sqlalchemy import select

from generator.video import container_tags
from jobs.models import JobSource, JobStatus, QuotaLedger
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
    slash,
    wait_result,
)
from tests.fakediscord.server import FakeDiscord
from tests.fakediscord.state import FakeMember
from tests.web.webharness import free_port, metric

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.slow, pytest.mark.timeout(300)]

LINK = re.compile(r"(http://\S+/signin\?token=[\w-]+)")
TIER_BUDGET_S = 250_000.0  # the patron tier's GPU-seconds per 24 h (the default is the harness's 100000)
TIER_MAX_PENDING = 7  # the patron tier's pending cap (the default is the harness's 5)
PATRON = "patron"  # the role with the tier
ROLE_RECHECK_S = 2.0  # WEB_ROLE_RECHECK_SECONDS here: the bot re-reads signed-in members' roles this often


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def world(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[tuple[FakeDiscord, BotProcess, str]]:
    fake = FakeDiscord(bot_token=TOKEN)
    await fake.start()
    fake.add_role(fake.guild.id, PATRON)  # before the bot starts, so its guild cache knows the role
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    bot = BotProcess(
        fake,
        tmp_path_factory.mktemp("bot"),
        extra_env={
            "WEB_HOST": "0.0.0.0",
            "WEB_PORT": str(port),
            "WEB_PUBLIC_URL": url,
            "OPERATOR_USER_IDS": str(fake.admin.user_id),
            "I2V_FAULT_SLEEP_PER_STEP": "0.05",
            "WEB_ROLE_RECHECK_SECONDS": str(ROLE_RECHECK_S),
        },
    )
    async with running_bot(fake, bot):
        yield fake, bot, url
        assert TOKEN not in bot.log_path.read_text(errors="replace"), "the bot token reached the log"


async def page_json(http: aiohttp.ClientSession, method: str, url: str, **kwargs: Any) -> Any:
    async with http.request(method, url, **kwargs) as response:
        assert response.status < 300, (method, url, response.status, await response.text())
        return await response.json()


async def web_link(fake: FakeDiscord, member: FakeMember) -> str:
    """The sign-in link ``/web`` gives ``member`` (ephemeral)."""
    interaction = await fake.inject_slash("web", {}, member=member)
    (link,) = LINK.findall(await followup_text(fake, interaction))
    return link


@asynccontextmanager
async def signed_in(
    fake: FakeDiscord, url: str, member: FakeMember
) -> AsyncIterator[tuple[aiohttp.ClientSession, dict[str, str]]]:
    """A browser-like HTTP client signed in through ``member``'s /web link: (client, CSRF header)."""
    token = (await web_link(fake, member)).split("token=", 1)[1]
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:  # unsafe: an IP host
        async with http.post(url + "/signin", data={"token": token}) as response:
            assert response.status == 200 and str(response.url) == url + "/", response.status
        me = await page_json(http, "GET", url + "/api/me")
        assert me["signed_in"] and me["user_id"] == str(member.user_id), me
        yield http, {"X-CSRF-Token": me["csrf_token"]}


def job_form(prompt: str, seed: int) -> aiohttp.FormData:
    form = aiohttp.FormData()
    form.add_field("image", png_bytes(seed=seed), filename="web.png", content_type="image/png")
    for name, value in {"prompt": prompt, "preset": "quick", **SMALL}.items():
        form.add_field(name, str(value))
    return form


async def test_discord_and_the_page_share_one_queue_and_worker(world: tuple[FakeDiscord, BotProcess, str]) -> None:
    fake, bot, url = world
    member = fake.add_member(fake.guild.id, "discord-user")
    page_user = fake.admin  # the operator, signed in on the page: the console pauses the queue to line both up
    async with signed_in(fake, url, page_user) as (http, csrf):
        await page_json(http, "POST", url + "/api/console/pause", json={"reason": "line both up"}, headers=csrf)

        attachment = fake.add_attachment(png_bytes(), "cat.png")
        interaction = await fake.inject_slash(
            "animate", {"image": attachment, "prompt": "from discord", **SMALL}, member=member
        )
        discord_job = job_id_from(await followup_text(fake, interaction))

        web_job = (await page_json(http, "POST", url + "/api/jobs", data=job_form("from the page", 3), headers=csrf))[
            "id"
        ]

        queue = (await page_json(http, "GET", url + "/api/console"))["queue"]
        order = [entry["id"] for entry in sorted(queue, key=lambda e: e["position"])]
        assert sorted(order) == sorted([discord_job, web_job]), queue
        await page_json(http, "POST", url + "/api/console/resume", json={}, headers=csrf)

        result = await wait_result(fake, discord_job)
        assert "from discord" in result.json["content"]
        done = {job_id: await bot.wait_job(job_id, lambda j: j.delivered_at is not None) for job_id in order}
        first, second = (done[job_id] for job_id in order)
        assert first.status == second.status == JobStatus.SUCCEEDED
        assert first.finished_at is not None and second.started_at is not None, "both ran to the end"
        assert first.finished_at <= second.started_at, "one worker ran them in queue order"
        assert done[web_job].source == JobSource.WEB and done[web_job].user_id == page_user.user_id
        assert done[discord_job].user_id == member.user_id
        assert result_posts(fake, web_job) == [], "Discord never posts the page's job"
        assert len(result_posts(fake, discord_job)) == 1
        async with http.get(f"{url}/api/jobs/{web_job}/video.mp4") as response:
            assert response.status == 200
            page_video = await response.read()
        assert page_video[4:8] == b"ftyp"
        # each MP4 carries its parameters (ffmpeg -i lists them): the page's download and Discord's upload
        (upload,) = result.files
        for job_id, data, prompt in (
            (web_job, page_video, "from the page"),
            (discord_job, upload.data, "from discord"),
        ):
            mp4 = bot.root / f"tags-{job_id}.mp4"
            mp4.write_bytes(data)
            tags = container_tags(mp4)
            assert (tags["i2v_job"], tags["i2v_prompt"], tags["i2v_model"]) == (str(job_id), prompt, "tiny"), tags
            assert tags["i2v_seed"] == str(done[job_id].seed) and tags["i2v_steps"] == str(SMALL["steps"]), tags
            assert tags["comment"].startswith(f"i2v-bot job {job_id}: ") and prompt in tags["comment"], tags
        async with http.get(f"{url}/api/jobs/{discord_job}") as response:
            assert response.status == 404, "the page's user sees only their own jobs"

        # each charged to its own user
        page_quota = await page_json(http, "GET", url + "/api/quota")
        assert page_quota["used"] > 0 and page_quota["pending"] == 0
        for user_id, job_id in ((member.user_id, discord_job), (page_user.user_id, web_job)):
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
    async def rows(session: Any) -> list[tuple[int, str]]:
        query = select(QuotaLedger.job_id, QuotaLedger.kind).where(QuotaLedger.user_id == user_id)
        found = await session.execute(query)
        return [(job_id, kind.value) for job_id, kind in found]

    return await bot.read(rows)


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
        async with http.get(url + "/api/quota") as response:
            assert response.status == 401, "the page listens beyond loopback: nothing without sign-in"
        async with http.get(link) as response:  # a link preview fetching the URL spends nothing
            assert response.status == 200 and "Sign in" in await response.text()
        async with http.post(url + "/signin", data={"token": token}, allow_redirects=False) as response:
            assert response.status == 303 and "i2v_session" in response.cookies
        async with http.post(url + "/signin", data={"token": token}, allow_redirects=False) as response:
            assert response.status == 403 and "already used" in await response.text()


async def test_a_role_tier_applies_on_the_page_as_in_discord(world: tuple[FakeDiscord, BotProcess, str]) -> None:
    """A member whose role has a tier signs in through /web: the page gives them the tier's budget and pending
    cap (more than the defaults), as Discord's /quota does, and the operator's console shows the same; a member
    without the role gets the defaults."""
    fake, _, url = world
    gid = fake.guild.id
    (patron,) = [role_id for role_id, role in fake.guild.roles.items() if role["name"] == PATRON]
    member = fake.add_member(gid, "patron-member", roles=[patron])
    plain = fake.add_member(gid, "plain-member")
    tier = await slash(
        fake,
        "operator tier",
        {"role": patron, "daily_seconds": TIER_BUDGET_S, "max_pending": TIER_MAX_PENDING},
        fake.admin,
    )
    assert "Members with" in tier.text
    discord_quota = (await slash(fake, "quota", {}, member)).text
    assert f"of {TIER_BUDGET_S:.0f} GPU-seconds" in discord_quota, discord_quota

    async with signed_in(fake, url, plain) as (http, _):
        quota = await page_json(http, "GET", url + "/api/quota")
        assert (quota["budget"], quota["max_pending"]) == (100000.0, 5), "no role: the defaults"

    async with signed_in(fake, url, fake.admin) as (operator, op_csrf):
        await page_json(operator, "POST", url + "/api/console/pause", json={"reason": "hold them"}, headers=op_csrf)
        try:
            async with signed_in(fake, url, member) as (http, csrf):
                quota = await page_json(http, "GET", url + "/api/quota")
                assert (quota["budget"], quota["max_pending"]) == (TIER_BUDGET_S, TIER_MAX_PENDING), quota
                seen = await page_json(operator, "GET", f"{url}/api/console/users/{member.user_id}")
                assert (seen["budget"], seen["max_pending"], seen["budget_source"]) == (
                    TIER_BUDGET_S,
                    TIER_MAX_PENDING,
                    "tier",
                ), "the console sees the tier the member signed in with"
                ids = [
                    (await page_json(http, "POST", url + "/api/jobs", data=job_form(f"tier {n}", n), headers=csrf))[
                        "id"
                    ]
                    for n in range(TIER_MAX_PENDING)
                ]
                assert len(set(ids)) == TIER_MAX_PENDING, "more pending than the default cap of 5: the tier's"
                async with http.post(url + "/api/jobs", data=job_form("one too many", 99), headers=csrf) as response:
                    refused = await response.json()
                    assert response.status == 400 and str(TIER_MAX_PENDING) in refused["error"], refused
                for job_id in ids:
                    await page_json(http, "POST", f"{url}/api/jobs/{job_id}/cancel", headers=csrf)
        finally:
            await page_json(operator, "POST", url + "/api/console/resume", json={}, headers=op_csrf)


async def test_a_removed_role_and_a_ban_end_the_rights_on_the_page(world: tuple[FakeDiscord, BotProcess, str]) -> None:
    """The wiring of the role re-check: the bot re-reads a signed-in member's roles through Discord's member
    endpoint, and a role taken away in Discord takes its tier away on the page (when, on an injected clock:
    tests/jobs/test_web_sessions.py). A bot-wide ban ends the member's session at once (the open page gets 401),
    and /web gives a banned member no link."""
    fake, _, url = world
    (patron,) = [role_id for role_id, role in fake.guild.roles.items() if role["name"] == PATRON]
    member = fake.add_member(fake.guild.id, "lapsing-patron", roles=[patron])
    await slash(
        fake,
        "operator tier",
        {"role": patron, "daily_seconds": TIER_BUDGET_S, "max_pending": TIER_MAX_PENDING},
        fake.admin,
    )
    async with signed_in(fake, url, member) as (http, _):
        quota = await page_json(http, "GET", url + "/api/quota")
        assert quota["budget"] == TIER_BUDGET_S, quota
        member.roles.remove(patron)  # taken away in Discord; no gateway event reaches the bot (no member intent)
        member_read = f"/guilds/{fake.guild.id}/members/{member.user_id}"
        for reads in range(4):  # a read in flight may still see the role; the next one stores its removal
            seen = len(fake.requests)
            quota = await page_json(http, "GET", url + "/api/quota")
            if quota["budget"] == 100000.0:
                break
            assert reads < 3, f"the tier outlived three re-reads of the member's roles: {quota}"
            await fake.wait_for(lambda r: r.method == "GET" and r.path.endswith(member_read), after=seen)

        banned = await slash(fake, "operator ban", {"user": member, "reason": "testing bans"}, fake.admin)
        assert banned.ephemeral, banned
        async with http.get(url + "/api/quota") as response:
            assert response.status == 401, "a ban ends the session at once"
    interaction = await fake.inject_slash("web", {}, member=member)
    text = await followup_text(fake, interaction)
    assert "not allowed to make videos with this bot: testing bans" in text and "token=" not in text, text


async def test_the_bot_prints_the_operator_link_as_the_page_only_app_does(
    world: tuple[FakeDiscord, BotProcess, str],
) -> None:
    """Both modes start the page through web.server.start_web_page: the same line, naming WEB_PUBLIC_URL; the link
    signs in as the operator."""
    from tests.web.webharness import printed_link, sign_in_http

    _, bot, url = world
    link = printed_link(bot.log_path)
    assert link.startswith(url + "/signin?token="), link
    cookie, _ = sign_in_http(link)
    async with aiohttp.ClientSession() as http, http.get(url + "/api/console", headers={"Cookie": cookie}) as response:
        assert response.status == 200, await response.text()
