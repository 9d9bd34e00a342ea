"""Content safety end to end: the real ``python -m bot`` (embedded worker on the tiny model, its tiny image
classifier run through transformers' real pipeline) against the fake Discord.

- Blocklists: the bot-wide list (``PROMPT_BLOCKLIST`` and ``/operator blocklist``) and a server's own
  (``/admin blocklist``) refuse a prompt or negative prompt on every path before the image is downloaded, with no
  job row; a clean prompt goes through; whole words, any case; counted in ``/admin stats``, audited.
- Spoilers: ``/animate spoiler:true`` and ``/admin safety spoilers:true`` upload ``SPOILER_...``.
- Reports: a member reports a video, the server's admin sees it in ``/admin reports`` and deletes it: the channel
  message, the stored bytes and the disk copy go; the operator does the same from the web console.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from sqlalchemy import func, select

from jobs.models import AuditLog, Job, JobVideo, Report
from tests.bot.harness import (
    SMALL,
    TOKEN,
    Answer,
    BotProcess,
    answer_of,
    callback_of,
    custom_ids,
    followup_text,
    job_id_from,
    modal_inputs,
    png_bytes,
    running_bot,
    wait_result,
)
from tests.fakediscord import payloads
from tests.fakediscord.server import FakeDiscord
from tests.fakediscord.state import FakeMember
from tests.web.webharness import free_port

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.slow, pytest.mark.timeout(300)]

BOT_WIDE_TERM = "Forbiddenword"  # in PROMPT_BLOCKLIST
BOT_REFUSAL = "This prompt was blocked: it contains a word or phrase on the bot's blocklist."
SERVER_REFUSAL = "This prompt was blocked: it contains a word or phrase on this server's blocklist."


@dataclass
class World:
    fake: FakeDiscord
    bot: BotProcess
    manager: FakeMember  # Manage Server: this server's admin
    operator: FakeMember
    url: str  # the web page


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def world(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    fake = FakeDiscord(bot_token=TOKEN)
    await fake.start()
    gid = fake.guild.id
    managers = fake.add_role(gid, "managers", permissions=payloads.PERM_MANAGE_GUILD)
    manager = fake.add_member(gid, "manager", roles=[managers])
    operator = fake.add_member(gid, "operator", permissions=0)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    bot = BotProcess(
        fake,
        tmp_path_factory.mktemp("safety-bot"),
        extra_env={
            "PROMPT_BLOCKLIST": f"{BOT_WIDE_TERM}, big cat",
            "OPERATOR_USER_IDS": str(operator.user_id),
            "WEB_PORT": str(port),
            "WEB_PUBLIC_URL": url,
        },
    )
    async with running_bot(fake, bot):
        yield World(fake, bot, manager, operator, url)


# ------------------------------------------------------------------------------------------------------ helpers


def cdn_fetches(fake: FakeDiscord, attachment_id: int) -> int:
    """How often the bot downloaded one attachment from the fake's CDN."""
    return sum(1 for r in fake.requests if r.method == "GET" and f"/cdn/attachments/{attachment_id}/" in r.path)


async def slash(world: World, command: str, options: dict[str, Any], member: FakeMember) -> Answer:
    interaction = await world.fake.inject_slash(command, options, member=member)
    return await answer_of(world.fake, interaction)


async def animate(world: World, member: FakeMember, prompt: str, **options: Any) -> tuple[str, int]:
    """``/animate``: the bot's follow-up text and the attachment's id."""
    attachment = world.fake.add_attachment(png_bytes(seed=member.user_id % 89), "pic.png")
    interaction = await world.fake.inject_slash(
        "animate", {"image": attachment, "prompt": prompt, **SMALL, **options}, member=member
    )
    return await followup_text(world.fake, interaction), attachment.id


async def job_count(world: World, user_id: int) -> int:
    return int(
        await world.bot.read(lambda s: s.scalar(select(func.count()).select_from(Job).where(Job.user_id == user_id)))
        or 0
    )


async def delivered(world: World, member: FakeMember, prompt: str = "the sea moves", **options: Any) -> tuple[int, Any]:
    """A video made and posted for ``member``: its job id and the posting request."""
    text, _ = await animate(world, member, prompt, **options)
    assert "Queued as job #" in text, text
    job_id = job_id_from(text)
    return job_id, await wait_result(world.fake, job_id)


# ------------------------------------------------------------------------------------------------------ blocklists


async def test_blocked_prompts_are_refused_on_every_path_before_any_download(world: World) -> None:
    fake, bot = world.fake, world.bot
    member = fake.add_member(fake.guild.id, "blocked-user")
    # /animate, bot-wide list from the setting, any case, in the prompt or the negative prompt
    for prompt, extra in (
        ("a FORBIDDENWORD dances", {}),
        ("the sea moves", {"negative_prompt": "forbiddenword"}),
        ("a Big, cat walks", {}),
    ):
        text, attachment_id = await animate(world, member, prompt, **extra)
        assert text == BOT_REFUSAL, (prompt, text)
        assert cdn_fetches(fake, attachment_id) == 0, prompt
        assert prompt not in text
    # whole words only: "forbiddenwords" and "big fat cat" are clean and go through
    clean, clean_attachment = await animate(world, member, "forbiddenwords of a big fat cat")
    assert "Queued as job #" in clean, clean
    assert cdn_fetches(fake, clean_attachment) == 1
    assert await job_count(world, member.user_id) == 1

    # the server's own list, added by its admin
    added = await slash(world, "admin blocklist add", {"term": "Lighthouse"}, world.manager)
    assert added.ephemeral and "lighthouse" in added.content, added
    listing = await slash(world, "admin blocklist list", {}, world.manager)
    assert "`lighthouse`" in listing.content and listing.ephemeral
    text, attachment_id = await animate(world, member, "the LIGHTHOUSE blinks")
    assert text == SERVER_REFUSAL and cdn_fetches(fake, attachment_id) == 0
    # the operator's run-time bot-wide list
    await slash(world, "operator blocklist add", {"term": "volcano"}, world.operator)
    text, attachment_id = await animate(world, member, "a Volcano erupts")
    assert text == BOT_REFUSAL and cdn_fetches(fake, attachment_id) == 0
    # a member of no admin role cannot touch either list
    refused = await slash(world, "admin blocklist add", {"term": "sea"}, member)
    assert "sea" not in (await slash(world, "admin blocklist list", {}, world.manager)).content
    assert refused.ephemeral

    # Apps -> Animate: the modal's prompt is checked before the image is fetched
    image = fake.add_attachment(png_bytes(seed=5), "menu.png")
    message = fake.add_message(author=fake.member, content="", attachments=[image])
    menu = await fake.inject_message_command("Animate", message, member=member)
    ack = await callback_of(fake, menu)
    inputs = modal_inputs(ack.json)
    submit = await fake.inject_modal_submit(
        ack.json["data"]["custom_id"],
        {inputs["prompt"]["custom_id"]: "the lighthouse blinks"},
        member=member,
        channel_id=fake.channel_id,
    )
    assert await followup_text(fake, submit) == SERVER_REFUSAL
    assert cdn_fetches(fake, image.id) == 0

    # a mention: the refusal is a reply, nothing downloaded
    mention_image = fake.add_attachment(png_bytes(seed=6), "mention.png")
    request = await fake.inject_message(
        f"<@{fake.bot_user_id}> the volcano smokes",
        author=member,
        mentions=[fake.bot_member],
        attachments=[mention_image],
    )
    reply = await fake.wait_for(
        lambda r: (
            r.method == "POST"
            and r.path.endswith("/messages")
            and str(((r.json or {}).get("message_reference") or {}).get("message_id")) == request["id"]
        )
    )
    assert reply.json["content"] == BOT_REFUSAL
    assert cdn_fetches(fake, mention_image.id) == 0

    # Re-roll and Vary of a clean video whose prompt is now listed (a list changed after it was made)
    job_id = job_id_from(clean)
    result = await wait_result(fake, job_id)
    await slash(world, "admin blocklist add", {"term": "fat cat"}, world.manager)
    reroll = await fake.inject_component(f"i2v:reroll:{job_id}", int(result.response["id"]), member=member)
    assert await followup_text(fake, reroll) == SERVER_REFUSAL
    vary = await fake.inject_component(f"i2v:vary:{job_id}", int(result.response["id"]), member=member)
    vary_ack = await callback_of(fake, vary)
    fields = modal_inputs(vary_ack.json)
    submitted = await fake.inject_modal_submit(
        vary_ack.json["data"]["custom_id"],
        {
            fields["prompt"]["custom_id"]: "a forbiddenword",
            fields["frames"]["custom_id"]: "8",
            fields["fps"]["custom_id"]: "8",
            fields["steps"]["custom_id"]: "10",
            fields["seed"]["custom_id"]: "",
        },
        member=member,
        message=int(result.response["id"]),
    )
    assert await followup_text(fake, submitted) == BOT_REFUSAL
    assert await job_count(world, member.user_id) == 1  # nothing but the clean job was ever queued

    # removing a term lets it through again
    removed = await slash(world, "admin blocklist remove", {"term": "LIGHTHOUSE"}, world.manager)
    assert "Removed" in removed.content
    assert "`lighthouse`" not in (await slash(world, "admin blocklist list", {}, world.manager)).content

    # counted in /admin stats, audited with the list and the term, never the prompt
    stats = await slash(world, "admin stats", {}, world.manager)
    assert "Prompts blocked: 9 today" in stats.text, stats.text
    rows = await bot.select_all(
        select(AuditLog).where(AuditLog.action == "prompt_blocked", AuditLog.actor_id == member.user_id)
    )
    assert len(rows) == 9
    assert {row.detail["list"] for row in rows} == {"bot", "server"}
    assert {row.detail["source"] for row in rows} == {"slash", "context_menu", "mention", "reroll", "vary"}
    assert all("prompt" not in row.detail for row in rows)
    log = await slash(world, "admin log", {}, world.manager)
    assert log.ephemeral and "prompt_blocked" in log.text and "dances" not in log.text
    # no public message ever repeated a blocked prompt
    public = [r for r in fake.requests if r.method == "POST" and r.path.startswith("/channels/")]
    for words in ("dances", "erupts", "smokes", "blinks"):
        assert not any(words in ((r.json or {}).get("content") or "") for r in public), words


# ------------------------------------------------------------------------------------------------------ spoilers


async def test_spoiler_option_and_server_setting_upload_spoiler_files(world: World) -> None:
    fake = world.fake
    member = fake.add_member(fake.guild.id, "spoiler-user")
    job_id, plain = await delivered(world, member)
    assert not plain.files[0].filename.startswith("SPOILER_")
    job_id, asked = await delivered(world, member, spoiler=True)
    (upload,) = asked.files
    assert upload.filename.startswith("SPOILER_video_") and upload.filename.endswith(f"_{job_id}.mp4")
    assert upload.data[4:8] == b"ftyp"
    # the server makes every result a spoiler
    shown = await slash(world, "admin safety", {"spoilers": True}, world.manager)
    assert shown.ephemeral and "Every result is posted as a spoiler" in shown.content, shown.content
    job_id, forced = await delivered(world, member)
    assert forced.files[0].filename.startswith("SPOILER_")
    # a re-roll of a spoilered result stays one, whatever the server says later
    await slash(world, "admin safety", {"spoilers": False}, world.manager)
    reroll = await fake.inject_component(f"i2v:reroll:{asked_job(asked)}", int(asked.response["id"]), member=member)
    new_id = job_id_from((await followup_text(fake, reroll)).split(" as ")[1])
    assert (await wait_result(fake, new_id)).files[0].filename.startswith("SPOILER_")
    rows = await world.bot.select_all(select(AuditLog).where(AuditLog.action == "set_server_safety"))
    assert [row.detail["after"]["spoiler_all"] for row in rows] == [True, False]


def asked_job(post: Any) -> int:
    """The job id of a result post (from its Info button)."""
    (info,) = [c for c in custom_ids(post.json) if c.startswith("i2v:info:")]
    return int(info.rsplit(":", 1)[1])


# ------------------------------------------------------------------------------------------------------ reports


async def test_member_reports_and_server_admin_deletes_the_video(world: World) -> None:
    fake, bot = world.fake, world.bot
    maker = fake.add_member(fake.guild.id, "maker")
    reporter = fake.add_member(fake.guild.id, "reporter")
    job_id, result = await delivered(world, maker, "a kite flies")
    message_id = int(result.response["id"])
    assert f"i2v:report:{job_id}" in custom_ids(result.json)
    await bot.wait_job(job_id, lambda j: j.output_path is not None)
    copy = (await bot.job(job_id)).output_path
    assert copy is not None and (bot.root / "outputs").exists()

    own = await answer_of(fake, await fake.inject_component(f"i2v:report:{job_id}", message_id, member=maker))
    assert own.ephemeral and "your own video" in own.content
    first = await answer_of(fake, await fake.inject_component(f"i2v:report:{job_id}", message_id, member=reporter))
    assert first.ephemeral and "admins will look" in first.content, first
    again = await answer_of(fake, await fake.inject_component(f"i2v:report:{job_id}", message_id, member=reporter))
    assert "already reported" in again.content
    assert len(await bot.select_all(select(Report).where(Report.job_id == job_id))) == 1

    listing = await slash(world, "admin reports", {}, world.manager)
    assert listing.ephemeral and f"#{job_id}" in listing.text and f"<@{maker.user_id}>" in listing.text
    assert f"i2va:rep:s:delete:{job_id}" in listing.custom_ids
    assert f"<@{reporter.user_id}>" not in listing.text  # who reported stays private
    # a member who is no admin cannot press it
    listing_post = await fake.wait_for(
        lambda r: r.method in ("POST", "PATCH") and f"i2va:rep:s:delete:{job_id}" in custom_ids(r.json)
    )
    listing_message = int(listing_post.response["id"])
    stranger = await answer_of(
        fake, await fake.inject_component(f"i2va:rep:s:delete:{job_id}", listing_message, member=reporter)
    )
    assert stranger.ephemeral and message_id in fake.messages
    press = await fake.inject_component(f"i2va:rep:s:delete:{job_id}", listing_message, member=world.manager)
    done = await followup_text(fake, press)
    assert f"Deleted video #{job_id}" in done, done
    await fake.wait_for(lambda r: r.method == "DELETE" and r.path.endswith(f"/messages/{message_id}"))
    assert message_id not in fake.messages
    # no byte of it remains: the stored video, the input image reference, the disk copy
    assert await bot.read(lambda s: s.get(JobVideo, job_id)) is None
    job = await bot.job(job_id)
    assert job.input_released_at is not None
    assert not list((bot.root / "outputs").glob(f"video_*_{job_id}.mp4"))
    (report,) = await bot.select_all(select(Report).where(Report.job_id == job_id))
    assert report.resolution == "deleted" and report.resolved_by == world.manager.user_id
    resolved = await bot.select_all(
        select(AuditLog).where(AuditLog.action == "report_resolved", AuditLog.job_id == job_id)
    )
    assert len(resolved) == 1 and resolved[0].actor_id == world.manager.user_id
    assert f"#{job_id}" not in (await slash(world, "admin reports", {}, world.manager)).text

    # /delete-my-data takes the reports a member made with the rest
    wiped = await slash(world, "delete-my-data", {}, reporter)
    assert "Deleted 1 report(s) made by or about you" in wiped.content, wiped.content
    assert not await bot.select_all(select(Report).where(Report.reporter_id == reporter.user_id))


async def test_operator_deletes_a_reported_video_from_the_web_console(world: World) -> None:
    fake, bot = world.fake, world.bot
    maker = fake.add_member(fake.guild.id, "console-maker")
    reporter = fake.add_member(fake.guild.id, "console-reporter")
    job_id, result = await delivered(world, maker, "a balloon rises")
    message_id = int(result.response["id"])
    await bot.wait_job(job_id, lambda j: j.output_path is not None)
    reported = await answer_of(fake, await fake.inject_component(f"i2v:report:{job_id}", message_id, member=reporter))
    assert "admins will look" in reported.content

    link = await followup_text(fake, await fake.inject_slash("web", {}, member=world.operator))
    (token,) = re.findall(r"/signin\?token=([\w-]+)", link)
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        async with http.post(world.url + "/signin", data={"token": token}) as response:
            assert response.status == 200
        async with http.get(world.url + "/api/me") as response:
            me = await response.json()
        headers = {"X-CSRF-Token": me["csrf_token"]}
        async with http.get(world.url + "/api/console") as response:
            overview = await response.json()
        (entry,) = [r for r in overview["reports"] if r["job_id"] == job_id]
        assert (entry["user_id"], entry["reports"]) == (str(maker.user_id), 1)
        async with http.post(world.url + f"/api/console/reports/{job_id}/delete", headers=headers) as response:
            assert response.status == 200, await response.text()
            assert (await response.json())["reports"] == 1
        async with http.post(world.url + f"/api/console/reports/{job_id}/erase", headers=headers) as response:
            assert response.status == 400
    await fake.wait_for(lambda r: r.method == "DELETE" and r.path.endswith(f"/messages/{message_id}"))
    assert message_id not in fake.messages
    assert await bot.read(lambda s: s.get(JobVideo, job_id)) is None
    assert not list((bot.root / "outputs").glob(f"video_*_{job_id}.mp4"))
    (report,) = await bot.select_all(select(Report).where(Report.job_id == job_id))
    assert (report.resolution, report.resolved_by) == ("deleted", world.operator.user_id)
    (audit,) = await bot.select_all(
        select(AuditLog).where(AuditLog.action == "report_resolved", AuditLog.job_id == job_id)
    )
    assert audit.scope == "bot" and audit.actor_id == world.operator.user_id


async def test_server_admin_bans_the_maker_of_a_reported_video_or_dismisses_a_report(world: World) -> None:
    fake, bot = world.fake, world.bot
    maker = fake.add_member(fake.guild.id, "banned-maker")
    kept = fake.add_member(fake.guild.id, "kept-maker")
    reporter = fake.add_member(fake.guild.id, "second-reporter")
    banned_job, banned_post = await delivered(world, maker, "a door creaks")
    kept_job, kept_post = await delivered(world, kept, "a leaf falls")
    for job_id, post in ((banned_job, banned_post), (kept_job, kept_post)):
        click = await fake.inject_component(f"i2v:report:{job_id}", int(post.response["id"]), member=reporter)
        assert "admins will look" in (await answer_of(fake, click)).content
    listing = await slash(world, "admin reports", {}, world.manager)
    assert {f"i2va:rep:s:ban:{banned_job}", f"i2va:rep:s:dismiss:{kept_job}"} <= set(listing.custom_ids)
    listing_post = await fake.wait_for(
        lambda r: r.method in ("POST", "PATCH") and f"i2va:rep:s:ban:{banned_job}" in custom_ids(r.json)
    )
    listing_message = int(listing_post.response["id"])

    ban = await fake.inject_component(f"i2va:rep:s:ban:{banned_job}", listing_message, member=world.manager)
    text = await followup_text(fake, ban)
    assert f"<@{maker.user_id}> is now banned from making videos in this server" in text, text
    assert int(banned_post.response["id"]) not in fake.messages
    assert await bot.read(lambda s: s.get(JobVideo, banned_job)) is None
    refused, _ = await animate(world, maker, "a door opens")
    assert refused == (
        f"You are not allowed to make videos with this bot in this server: reported video #{banned_job}."
    ), refused
    # the listing was refreshed in place: the banned maker's video is gone from it, the other one stays
    refreshed = await fake.wait_for(
        lambda r: r.method == "PATCH" and r.status == 200 and f"i2va:rep:s:dismiss:{kept_job}" in custom_ids(r.json)
    )
    assert f"i2va:rep:s:ban:{banned_job}" not in custom_ids(refreshed.json)

    dismiss = await fake.inject_component(f"i2va:rep:s:dismiss:{kept_job}", listing_message, member=world.manager)
    assert f"Dismissed 1 report(s) of video #{kept_job}; it stays." in await followup_text(fake, dismiss)
    assert int(kept_post.response["id"]) in fake.messages
    assert await bot.read(lambda s: s.get(JobVideo, kept_job)) is not None
    resolutions = {
        r.job_id: r.resolution
        for r in await bot.select_all(select(Report).where(Report.job_id.in_([banned_job, kept_job])))
    }
    assert resolutions == {banned_job: "banned", kept_job: "dismissed"}
    bans = await bot.select_all(
        select(AuditLog).where(AuditLog.action == "ban_from_server", AuditLog.target_user_id == maker.user_id)
    )
    assert len(bans) == 1 and bans[0].actor_id == world.manager.user_id and bans[0].scope == "server"
