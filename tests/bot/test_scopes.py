"""Trust boundaries end to end: the real ``python -m bot`` (embedded worker, tiny model) against the fake Discord.

One bot for the whole module. Guild A is the fake's own guild: ``alice`` asks for videos, ``anna`` has Manage
Server there, ``opal`` (permissions 0) is the bot's operator through ``OPERATOR_USER_IDS``. Guild B is a server a
stranger invited the bot to: ``otto`` has Manage Server there, ``olga`` is an ordinary member.

Covered: a server admin of B has no power over A or the bot (and full power over B); the operator has it all,
with every action audited with its scope; no message the bot sends pings anyone but a delivery's requester;
images from hosts outside Discord are never fetched; a failure after the commit still says "queued" and the
video arrives once; a pause holds requests and the video arrives after resume.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
import pytest_asyncio
from sqlalchemy import select

from bot.image_origin import NOT_DISCORD_MESSAGE
from bot.permissions import OPERATOR_REFUSAL
from bot.requests import NO_PROXY_MESSAGE
from jobs.models import (
    PRIORITY_ADMIN,
    PRIORITY_NORMAL,
    AuditLog,
    GuildSettings,
    Job,
    JobStatus,
    QueueState,
    RoleTier,
    UserLimit,
)
from tests.bot.harness import (
    SMALL,
    Answer,
    BotProcess,
    answer_of,
    callback_of,
    custom_ids,
    followup_text,
    job_id_from,
    modal_inputs,
    modal_selects,
    png_bytes,
    queued_job,
    result_posts,
    running_bot,
    wait_result,
)
from tests.bot.harness import animate as harness_animate
from tests.bot.harness import slash as harness_slash
from tests.fakediscord import payloads
from tests.fakediscord.probe import ProbeHost
from tests.fakediscord.server import FakeDiscord
from tests.fakediscord.state import FakeMember

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.slow, pytest.mark.timeout(300)]

WORKER_POLL_INTERVAL_S = 0.1  # I2V_POLL_INTERVAL_S in the harness
HELD_POLLS = 20  # worker polls a held job must survive unclaimed
ANSWER_TIMEOUT_S = 20.0
OPERATOR_SUBCOMMANDS: dict[str, dict[str, Any]] = {
    "queue": {},
    "cancel": {"job": 1},
    "pause": {"reason": "mine"},
    "resume": {},
    "stats": {},
    "log": {},
}


@dataclass
class World:
    fake: FakeDiscord
    bot: BotProcess
    alice: FakeMember
    anna: FakeMember
    opal: FakeMember
    vip_role: int
    guild_b: int
    channel_b: int
    otto: FakeMember
    olga: FakeMember


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def world(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    fake = FakeDiscord(bot_token="test-bot-token")
    await fake.start()
    gid = fake.guild.id
    managers = fake.add_role(gid, "managers", permissions=payloads.PERM_MANAGE_GUILD)
    anna = fake.add_member(gid, "anna", roles=[managers])
    opal = fake.add_member(gid, "opal", permissions=0)
    vip_role = fake.add_role(gid, "vip")
    other = fake.add_guild("Stranger's server")
    b_managers = fake.add_role(other.id, "managers", permissions=payloads.PERM_MANAGE_GUILD)
    otto = fake.add_member(other.id, "otto", roles=[b_managers])
    olga = fake.add_member(other.id, "olga")
    bot = BotProcess(fake, tmp_path_factory.mktemp("scopes-bot"), extra_env={"OPERATOR_USER_IDS": str(opal.user_id)})
    async with running_bot(fake, bot):
        yield World(fake, bot, fake.member, anna, opal, vip_role, other.id, next(iter(other.channels)), otto, olga)


# ------------------------------------------------------------------------------------------------------ helpers


async def slash(world: World, command: str, options: dict[str, Any] | None, member: FakeMember) -> Answer:
    return await harness_slash(world.fake, command, options, member)


async def animate(world: World, member: FakeMember, prompt: str = "waves roll in slowly", **options: Any) -> str:
    return await harness_animate(world.fake, member, prompt, timeout=ANSWER_TIMEOUT_S, **options)


async def queued(world: World, member: FakeMember, **options: Any) -> int:
    return await queued_job(world.fake, member, **options)


async def db_all(world: World, stmt: Any) -> list[Any]:
    return await world.bot.select_all(stmt)


async def assert_held(world: World, *job_ids: int) -> None:
    """Each job stays queued and unclaimed for HELD_POLLS worker polls."""
    since = time.monotonic()
    while time.monotonic() - since < HELD_POLLS * WORKER_POLL_INTERVAL_S:
        for job in await world.bot.jobs(Job.id.in_(job_ids)):
            assert (job.status, job.attempt) == (JobStatus.QUEUED, 0), job
        await asyncio.sleep(WORKER_POLL_INTERVAL_S / 2)


def status_message_of(world: World, job_id: int) -> dict[str, Any]:
    """The status message the bot posted for ``job_id`` (the one with its Cancel button)."""
    return next(
        r.response
        for r in world.fake.requests
        if r.method == "POST"
        and r.status == 200
        and isinstance(r.response, dict)
        and f"i2v:cancel:{job_id}" in custom_ids(r.json)
    )


def log_text(world: World) -> str:
    return world.bot.log_path.read_text(errors="replace")


# -------------------------------------------------------------------------------------------------------- tests


async def test_two_command_groups_one_per_scope(world: World) -> None:
    admin = world.fake.find_command("admin")
    operator = world.fake.find_command("operator")
    assert admin is not None and operator is not None
    assert admin["default_member_permissions"] == str(payloads.PERM_MANAGE_GUILD)
    assert operator["default_member_permissions"] == str(payloads.PERM_ADMINISTRATOR)
    assert {"quota", "tier"} <= {o["name"] for o in operator["options"]}
    assert not {"quota", "tier"} & {o["name"] for o in admin["options"]}


async def test_a_strangers_server_admin_has_no_power_outside_their_server(world: World) -> None:
    fake, bot, otto, alice = world.fake, world.bot, world.otto, world.alice
    # Guild A's own admin holds A's queue, so A's job stays put while otto tries everything on it.
    reply = await slash(world, "admin pause", {"reason": "upgrade"}, world.anna)
    assert reply.content.startswith("Paused on this server"), reply.content
    a_job = await queued(world, alice)
    status = status_message_of(world, a_job)
    audit_before = len(await db_all(world, select(AuditLog)))

    # Bot-wide commands: refused, ephemerally.
    for sub, options in OPERATOR_SUBCOMMANDS.items():
        reply = await slash(world, f"operator {sub}", options, otto)
        assert (reply.callback_type, reply.ephemeral, reply.content) == (4, True, OPERATOR_REFUSAL), sub
    for sub, options in (
        ("ban", {"user": alice}),
        ("unban", {"user": alice}),
        ("quota", {"user": otto, "daily_seconds": 99999.0, "max_pending": 50}),
    ):
        reply = await slash(world, f"operator {sub}", options, otto)
        assert (reply.ephemeral, reply.content) == (True, OPERATOR_REFUSAL), sub
    # A's job: /admin cancel answers as if it did not exist, /cancel and every button refuse.
    reply = await slash(world, "admin cancel", {"job": a_job}, otto)
    assert (reply.ephemeral, reply.content) == (True, f"There is no job #{a_job} on this server."), reply
    reply = await slash(world, "cancel", {"job": a_job}, otto)
    assert reply.ephemeral and reply.content == f"There is no such job of yours (#{a_job}).", reply.content
    reply = await slash(world, "cancel", {"job": a_job + 10_000}, otto)  # no such job at all: the same answer
    assert reply.ephemeral and reply.content == f"There is no such job of yours (#{a_job + 10_000}).", reply.content
    interaction = await fake.inject_component(f"i2v:cancel:{a_job}", int(status["id"]), member=otto)
    reply = await answer_of(fake, interaction)
    assert reply.ephemeral and reply.content == f"There is no such job of yours (#{a_job}).", reply.content
    # Forged clicks from B: a message there carrying every job button, all naming A's job.
    buttons = [f"i2v:{action}:{a_job}" for action in ("cancel", "delete", "info", "reroll", "vary")]
    forged = fake.add_message(author=otto, channel_id=world.channel_b)
    forged["components"] = [
        {
            "type": 1,
            "components": [{"type": 2, "style": 2, "label": "x", "custom_id": custom_id} for custom_id in buttons],
        }
    ]
    for custom_id in buttons:
        interaction = await fake.inject_component(custom_id, forged, member=otto)
        reply = await answer_of(fake, interaction)
        assert reply.ephemeral and reply.content == f"There is no such job of yours (#{a_job}).", (
            custom_id,
            reply.content,
        )
    forged["components"].append(
        {"type": 1, "components": [{"type": 2, "style": 4, "label": "x", "custom_id": f"i2va:cancel:{a_job}"}]}
    )
    interaction = await fake.inject_component(f"i2va:cancel:{a_job}", forged, member=otto)
    reply = await answer_of(fake, interaction)
    assert (reply.ephemeral, reply.content) == (True, f"There is no job #{a_job} on this server."), reply
    # B's queue and log show nothing of A.
    reply = await slash(world, "admin queue", {}, otto)
    assert reply.embeds[0]["title"] == "Queue: 0 running, 0 queued", reply.embeds
    assert f"#{a_job}" not in reply.text
    # In B, otto's server-scoped commands work and touch only B.
    reply = await slash(world, "admin pause", {}, otto)
    assert reply.content.startswith("Paused on this server"), reply.content
    reply = await slash(world, "admin limits", {"max_steps": 20}, otto)
    assert reply.content == "Updated. This server allows any resolution, any number of frames, up to 20 steps."
    reply = await slash(world, "admin ban", {"user": world.olga, "reason": "spam"}, otto)
    assert reply.content == f"<@{world.olga.user_id}> is banned from making videos in this server: spam."
    refused = await animate(world, world.olga)
    assert refused == "You are not allowed to make videos with this bot in this server: spam.", refused
    reply = await slash(world, "admin unban", {"user": world.olga}, otto)
    assert reply.content == f"<@{world.olga.user_id}> may make videos in this server again.", reply.content
    reply = await slash(world, "admin resume", {}, otto)
    assert reply.content.startswith("Resumed"), reply.content
    reply = await slash(world, "admin stats", {}, otto)
    assert reply.embeds[0]["title"] == "Video bot statistics for this server"
    # No priority for a server admin: otto's job is queued like anyone's, the operator's ahead of everyone.
    otto_job = await queued(world, otto)
    opal_job = await queued(world, world.opal)
    priorities = {j.id: j.priority for j in await bot.jobs(Job.id.in_([otto_job, opal_job]))}
    assert priorities == {otto_job: PRIORITY_NORMAL, opal_job: PRIORITY_ADMIN}
    reply = await slash(world, "admin log", {}, otto)
    description = reply.embeds[0]["description"]
    assert f"[server in server {world.guild_b}] <@{otto.user_id}> **resume_server**" in description, description
    assert "**ban_from_server**" in description and "**set_guild_limits**" in description
    assert f"server {fake.guild.id}" not in description  # nothing of A

    # Nothing of A or of the bot changed; every change otto made is B's, scope server.
    assert (await bot.job(a_job)).status == JobStatus.QUEUED
    rows = (await db_all(world, select(AuditLog).order_by(AuditLog.id)))[audit_before:]
    assert {(r.guild_id, r.scope) for r in rows if r.actor_id == otto.user_id} == {(world.guild_b, "server")}
    assert await db_all(world, select(UserLimit)) == []
    assert await db_all(world, select(RoleTier)) == []
    assert await db_all(world, select(QueueState.paused)) == [False]
    settings = {row.guild_id: row for row in await db_all(world, select(GuildSettings))}
    assert (settings[fake.guild.id].paused, settings[fake.guild.id].updated_by) == (True, world.anna.user_id)
    assert settings[fake.guild.id].max_steps is None
    log = log_text(world)
    for sub in OPERATOR_SUBCOMMANDS:
        assert f"refusal: user {otto.user_id} (otto) tried '/operator {sub}'" in log, sub
    assert f"refusal: user {otto.user_id} (otto) tried 'cancel job {a_job} of guild {fake.guild.id}'" in log
    assert f"refusal: user {otto.user_id} (otto) tried 'delete job {a_job}'" in log

    # A's admin resumes A: the held job runs and its video arrives.
    reply = await slash(world, "admin resume", {}, world.anna)
    assert reply.content.startswith("Resumed"), reply.content
    for job_id in (a_job, otto_job, opal_job):
        await wait_result(fake, job_id)


async def test_the_operator_can_do_it_all_and_the_log_shows_each_scope(world: World) -> None:
    opal, otto, olga = world.opal, world.otto, world.olga
    audit_before = len(await db_all(world, select(AuditLog)))
    # B's own admin holds B, so olga's job waits there for the operator to cancel it from guild A.
    await slash(world, "admin pause", {}, otto)
    b_job = await queued(world, olga)
    reply = await slash(world, "operator queue", {}, opal)
    assert f"**#{b_job}** <@{olga.user_id}> · queued" in reply.embeds[0]["description"], reply.text
    steps: list[tuple[str, dict[str, Any], str]] = [
        ("operator pause", {"reason": "checks"}, "Paused on every server"),
        ("operator resume", {}, "Resumed"),
        ("operator cancel", {"job": b_job}, f"Cancelled job #{b_job} of <@{olga.user_id}>"),
        ("operator quota", {"user": world.alice, "daily_seconds": 500.0}, f"Updated <@{world.alice.user_id}>"),
        ("operator tier", {"role": world.vip_role, "daily_seconds": 900.0, "max_pending": 3}, "Members with"),
        ("operator ban", {"user": olga, "reason": "spam"}, f"<@{olga.user_id}> is banned: spam."),
        ("operator unban", {"user": olga}, f"<@{olga.user_id}> may make videos again."),
        ("admin limits", {"max_frames": 16}, "Updated."),  # the operator acts on a server as its admin would
        ("admin limits", {"max_frames": 0}, "Updated."),
    ]
    for command, options, start in steps:
        reply = await slash(world, command, options, opal)
        assert reply.ephemeral and reply.content.startswith(start), (command, reply.content)
    rows = (await db_all(world, select(AuditLog).order_by(AuditLog.id)))[audit_before:]
    mine = [(r.action, r.scope, r.guild_id) for r in rows if r.actor_id == opal.user_id]
    gid = world.fake.guild.id
    assert mine == [
        ("pause_queue", "bot", None),
        ("resume_queue", "bot", None),
        ("cancel_job", "bot", world.guild_b),
        ("set_user_limit", "bot", None),
        ("set_role_tier", "bot", gid),
        ("ban_user", "bot", None),
        ("unban_user", "bot", None),
        ("set_guild_limits", "server", gid),
        ("set_guild_limits", "server", gid),
    ], mine
    reply = await slash(world, "operator log", {}, opal)
    lines = reply.embeds[0]["description"].splitlines()
    assert f"[server in server {gid}] <@{opal.user_id}> **set_guild_limits**" in lines[0], lines[0]
    assert any(f"[bot-wide in server {world.guild_b}] <@{opal.user_id}> **cancel_job**" in line for line in lines)
    assert any(f"[bot-wide] <@{opal.user_id}> **ban_user** → <@{olga.user_id}>" in line for line in lines)
    assert f"[server in server {world.guild_b}] <@{otto.user_id}> **pause_server**" in reply.embeds[0]["description"]
    reply = await slash(world, "operator stats", {}, opal)
    assert [f["name"] for f in reply.embeds[0]["fields"]] == ["Today (UTC)", "Last 7 days", "Workers", "Content safety"]
    await slash(world, "admin resume", {}, otto)


async def test_no_message_pings_anyone_but_the_requester_on_delivery(world: World) -> None:
    fake, alice = world.fake, world.alice
    start = len(fake.requests)
    pings = f"@everyone @here <@&{world.vip_role}> <@{world.anna.user_id}> <@!{world.opal.user_id}>"
    text = await animate(world, alice, prompt=f"{pings} the sea moves", negative_prompt=f"blurry {pings}")
    job_id = job_id_from(text)
    # Mention requests: a refused flag echoes the user's value, an accepted one quotes the prompt.
    image = fake.add_attachment(png_bytes(seed=3), "sea.png")
    bot_mention = f"<@{fake.bot_user_id}>"
    bad = await fake.inject_message(
        f"{bot_mention} go --frames <@{world.anna.user_id}>",
        author=alice,
        mentions=[fake.bot_member],
        attachments=[image],
    )
    refusal = await fake.wait_for(
        lambda r: (
            r.method == "POST" and str(((r.json or {}).get("message_reference") or {}).get("message_id")) == bad["id"]
        ),
        ANSWER_TIMEOUT_S,
    )
    assert f"--frames '<@{world.anna.user_id}>' is not a whole number" in refusal.json["content"], refusal.json
    good = await fake.inject_message(
        f"{bot_mention} {pings} the sea --resolution 256p --frames 8 --steps 10",
        author=alice,
        mentions=[fake.bot_member],
        attachments=[image],
    )
    status = await fake.wait_for(
        lambda r: (
            r.method == "POST"
            and r.status == 200
            and str(((r.json or {}).get("message_reference") or {}).get("message_id")) == good["id"]
        ),
        ANSWER_TIMEOUT_S,
    )
    mention_job = job_id_from(status.json["content"])
    reply = await slash(world, "admin ban", {"user": world.anna, "reason": f"stop {pings}"}, world.opal)
    assert "@everyone" in reply.content
    await slash(world, "admin unban", {"user": world.anna}, world.opal)
    for job in (job_id, mention_job):
        await wait_result(fake, job)
    await fake.wait_until(lambda: all(r.status for r in fake.requests[start:]), what="answered requests")

    sent = [r for r in fake.requests[start:] if r.method in ("POST", "PATCH") and _carries_text(r)]
    assert len(sent) >= 8, [r.describe() for r in sent]
    deliveries = 0
    for record in sent:
        body = _message_body(record)
        mentions = body.get("allowed_mentions")
        assert mentions is not None, record.describe()
        assert mentions.get("parse") == [] and not mentions.get("roles"), record.describe()
        users = mentions.get("users") or []
        if any(c.startswith("i2v:info:") for c in custom_ids(body)):  # a delivery: its requester, nobody else
            assert users == [str(alice.user_id)] or users == [alice.user_id], record.describe()
            deliveries += 1
        else:
            assert users == [] and not mentions.get("replied_user"), record.describe()
    assert deliveries == 2


def _message_body(record: Any) -> dict[str, Any]:
    body = record.json or {}
    return body.get("data") or {} if record.path.endswith("/callback") else body


def _carries_text(record: Any) -> bool:
    """A request that creates or edits a message with content (an interaction callback's data, a follow-up, an
    edit, a channel message)."""
    path = record.path
    if not (path.startswith(("/channels/", "/webhooks/")) or path.endswith("/callback")):
        return False
    if path.startswith("/channels/") and "/messages" not in path:
        return False
    body = _message_body(record)
    return isinstance(body, dict) and bool(body.get("content") or body.get("embeds"))


async def test_context_menu_never_fetches_an_image_from_outside_discord(world: World) -> None:
    fake, alice = world.fake, world.alice
    async with ProbeHost(png_bytes(seed=9)) as probe:
        cases = [
            ({"image": {"url": probe.url("/a.png"), "proxy_url": probe.url("/a-proxy.png")}}, NOT_DISCORD_MESSAGE),
            ({"thumbnail": {"url": probe.url("/b.png")}}, NO_PROXY_MESSAGE),
        ]
        for embed, message in cases:
            target = fake.add_message(author=world.anna, content="look", embeds=[embed])
            interaction = await fake.inject_message_command("Animate", target, member=alice)
            reply = await answer_of(fake, interaction)
            assert (reply.callback_type, reply.ephemeral, reply.content) == (4, True, message), reply
        # A mention request naming the same embed is refused the same way.
        target = fake.add_message(author=world.anna, content="", embeds=[cases[0][0]])
        request = await fake.inject_message(
            f"<@{fake.bot_user_id}> the sea", author=alice, mentions=[fake.bot_member], reply_to=target
        )
        refusal = await fake.wait_for(
            lambda r: (
                r.method == "POST"
                and str(((r.json or {}).get("message_reference") or {}).get("message_id")) == request["id"]
            ),
            ANSWER_TIMEOUT_S,
        )
        assert refusal.json["content"] == NOT_DISCORD_MESSAGE, refusal.json
        # An embed whose own url is elsewhere but whose proxy copy is Discord's: fetched from the proxy only.
        proxied = fake.add_attachment(png_bytes(seed=4), "proxied.png")
        target = fake.add_message(
            author=world.anna,
            content="the sea",
            embeds=[{"image": {"url": probe.url("/c.png"), "proxy_url": proxied.url}}],
        )
        interaction = await fake.inject_message_command("Animate", target, member=alice)
        callback = (await callback_of(fake, interaction)).json
        assert callback["type"] == 9, callback  # the prompt form opens
        inputs = modal_inputs(callback)
        submit = await fake.inject_modal_submit(
            callback["data"]["custom_id"],
            {inputs["prompt"]["custom_id"]: "the sea", modal_selects(callback)["preset"]["custom_id"]: "quick"},
            member=alice,
            channel_id=fake.channel_id,
        )
        text = await followup_text(fake, submit, timeout=ANSWER_TIMEOUT_S)
        assert text.startswith("Queued as job #"), text
        await wait_result(fake, job_id_from(text))
        cdn = [r for r in fake.requests if r.method == "GET" and r.path.startswith("/cdn/") and "proxied.png" in r.path]
        assert len(cdn) == 1, cdn
        assert probe.requests == [], probe.requests
    assert "Traceback" not in log_text(world)


async def test_a_failure_after_the_commit_still_says_queued_and_delivers_once(world: World) -> None:
    fake, bot, alice = world.fake, world.bot, world.alice
    # The server is held, so the job waits while the monitor posts its status message on a later pass.
    await slash(world, "admin pause", {}, world.anna)
    fault = fake.fail(
        status=403, code=50013, message="Missing Permissions", method="POST", path=r"^/channels/\d+/messages$", times=1
    )
    text = await animate(world, alice)
    assert text.startswith("Queued as job #"), text
    job_id = job_id_from(text)
    assert fault.hits == 1
    status = await fake.wait_for(
        lambda r: r.method == "POST" and r.status == 200 and f"i2v:cancel:{job_id}" in custom_ids(r.json),
        ANSWER_TIMEOUT_S,
    )
    assert f"**Job #{job_id}** for <@{alice.user_id}>" in status.json["content"], status.json
    assert (await bot.job(job_id)).status == JobStatus.QUEUED
    await slash(world, "admin resume", {}, world.anna)
    await wait_result(fake, job_id)
    job = await bot.wait_job(job_id, lambda j: j.delivered_at is not None)
    assert job.status_message_id is not None  # the monitor posted it on a later pass
    assert len(result_posts(fake, job_id)) == 1
    # The follow-up's interaction token expired before the bot could say "queued": expected, not an error.
    fake.expire_tokens_after(0)
    try:
        attachment = fake.add_attachment(png_bytes(seed=11), "late.png")
        interaction = await fake.inject_slash("animate", {"image": attachment, "prompt": "late", **SMALL}, member=alice)
        late = await fake.wait_until(
            lambda: next(iter(bot_jobs_after(fake, interaction)), None), timeout=ANSWER_TIMEOUT_S, what="401 follow-up"
        )
        assert late.status == 401
    finally:
        fake.expire_tokens_after(None)
    (late_job,) = [j for j in await bot.jobs(Job.prompt == "late")]
    await wait_result(fake, late_job.id)
    log = log_text(world)
    assert f"job {late_job.id} is queued; its interaction token expired" in log
    assert "unexpected error" not in log and "mention request" not in log


def bot_jobs_after(fake: FakeDiscord, interaction: Any) -> list[Any]:
    """The follow-up posts (answered) for ``interaction``."""
    path = f"/webhooks/{fake.application_id}/{interaction.token}"
    return [r for r in fake.requests if r.method == "POST" and r.path.rstrip("/") == path and r.status]


async def test_a_pause_holds_requests_and_the_video_arrives_after_resume(world: World) -> None:
    fake, alice = world.fake, world.alice
    reply = await slash(world, "operator pause", {"reason": "maintenance"}, world.opal)
    assert reply.content.startswith("Paused on every server"), reply.content
    text = await animate(world, alice)
    assert text.startswith("Queued as job #"), text
    assert "paused" in text and "maintenance" in text and "starts after resume" in text, text
    job_id = job_id_from(text)
    status = await fake.wait_for(
        lambda r: r.method == "POST" and r.status == 200 and f"i2v:cancel:{job_id}" in custom_ids(r.json),
        ANSWER_TIMEOUT_S,
    )
    assert "starts after resume" in status.json["content"], status.json
    await assert_held(world, job_id)
    assert result_posts(fake, job_id) == []
    reply = await slash(world, "operator resume", {}, world.opal)
    assert reply.content.startswith("Resumed"), reply.content
    await wait_result(fake, job_id)
    assert (await world.bot.job(job_id)).status == JobStatus.SUCCEEDED
