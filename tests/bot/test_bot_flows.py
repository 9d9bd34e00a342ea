"""End to end: the real ``python -m bot`` (embedded worker on the tiny model) against the fake Discord.

One bot process and one fake are shared by the whole module (starting the worker costs seconds); each test uses
its own members so quotas and job lists do not interfere.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from itertools import pairwise

import pytest
import pytest_asyncio

from jobs.models import JobStatus
from tests.bot.harness import (
    SMALL,
    TOKEN,
    BotProcess,
    callback_of,
    channel_messages_of_job,
    custom_ids,
    followup_text,
    job_id_from,
    modal_inputs,
    modal_selects,
    png_bytes,
    result_posts,
    running_bot,
    wait_result,
)
from tests.fakediscord.server import FakeDiscord

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.slow, pytest.mark.timeout(240)]

ACK_DEADLINE_S = 3.0


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def world(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[tuple[FakeDiscord, BotProcess]]:
    fake = FakeDiscord(bot_token=TOKEN)
    await fake.start()
    bot = BotProcess(
        fake,
        tmp_path_factory.mktemp("bot"),
        extra_env={
            "I2V_FAULT_SLEEP_PER_STEP": "0.05",
            "MAX_DOWNLOAD_BYTES": "2000000",
            "ADMIN_ROLE_IDS": str(fake.admin_role_id),
        },
    )
    async with running_bot(fake, bot):
        yield fake, bot
        assert TOKEN not in bot.log_path.read_text(errors="replace"), "the bot token reached the log"


async def slash_animate(fake: FakeDiscord, member, image_bytes: bytes | None = None, **options):
    attachment = fake.add_attachment(image_bytes or png_bytes(), "cat.png")
    values = {"image": attachment, "prompt": "a cat turns its head slowly", **SMALL, **options}
    return await fake.inject_slash("animate", values, member=member)


async def test_commands_synced_with_exact_options(world: tuple[FakeDiscord, BotProcess]) -> None:
    fake, _ = world
    animate = fake.find_command("animate")
    assert animate is not None
    names = [o["name"] for o in animate["options"]]
    assert names == [
        "image",
        "prompt",
        "model",
        "preset",
        "resolution",
        "frames",
        "fps",
        "steps",
        "guidance",
        "seed",
        "negative_prompt",
        "spoiler",
    ]
    by_name = {o["name"]: o for o in animate["options"]}
    # I2V_MODEL=tiny enables every model: the choices name them, the ranges are their union
    assert [(c["name"], c["value"]) for c in by_name["model"]["choices"]] == [
        ("I2VGen-XL", "i2vgenxl"),
        ("Wan 2.2 (5B)", "wan22-5b"),
        ("LTX-Video (fast)", "ltxv"),
    ]
    assert [c["value"] for c in by_name["preset"]["choices"]] == ["quick", "standard", "high"]
    assert [c["value"] for c in by_name["resolution"]["choices"]] == ["256p", "480p", "512p", "720p", "768p", "1024p"]
    assert (by_name["frames"]["min_value"], by_name["frames"]["max_value"]) == (8, 257)
    assert (by_name["steps"]["min_value"], by_name["steps"]["max_value"]) == (4, 100)
    assert (by_name["fps"]["min_value"], by_name["fps"]["max_value"]) == (4, 30)
    assert (by_name["guidance"]["min_value"], by_name["guidance"]["max_value"]) == (1.0, 20.0)
    assert fake.find_command("Animate", command_type=3) is not None
    for name in ("queue", "quota", "cancel"):
        assert fake.find_command(name) is not None, name


async def test_slash_flow_end_to_end(world: tuple[FakeDiscord, BotProcess]) -> None:
    fake, bot = world
    member = fake.add_member(fake.guild.id, "slash-user")
    interaction = await slash_animate(fake, member, seed=1234, fps=6)
    ack = await callback_of(fake, interaction)
    assert ack.time - interaction.created_at < ACK_DEADLINE_S
    assert ack.json["type"] == 5 and ack.json["data"]["flags"] == 64  # deferred, ephemeral
    text = await followup_text(fake, interaction)
    job_id = job_id_from(text)
    status = await fake.wait_for(
        lambda r: (
            r.method == "POST"
            and r.path == f"/channels/{fake.channel_id}/messages"
            and f"i2v:cancel:{job_id}" in custom_ids(r.json)
        )
    )
    assert "position" in status.json["content"] or "Queued" in status.json["content"]
    result = await wait_result(fake, job_id)
    assert result.has_bot_auth
    content = result.json["content"]
    for expected in (
        "a cat turns its head slowly",
        "I2VGen-XL",
        "256p",
        "8 frames",
        "6 fps",
        "10 steps",
        "guidance 9",
        "seed 1234",
        "took",
        f"<@{member.user_id}>",
    ):
        assert expected in content, (expected, content)
    assert custom_ids(result.json) == [
        f"i2v:{a}:{job_id}" for a in ("reroll", "vary", "delete", "info", "report", "varymodel")
    ]
    (upload,) = result.files
    assert upload.data[4:8] == b"ftyp"
    from generator.video import probe_mp4

    mp4 = bot.root / "check.mp4"
    mp4.write_bytes(upload.data)
    info = probe_mp4(mp4)
    assert (info.frames, info.fps) == (8, 6)
    assert min(info.width, info.height) == 256
    job = await bot.wait_job(job_id, lambda j: j.delivered_at is not None, timeout=10)
    assert job.status == JobStatus.SUCCEEDED and job.result_message_id == int(result.response["id"])
    # the result takes the status message's place: one channel message for the job
    deleted = await fake.wait_for(
        lambda r: r.method == "DELETE" and r.path == f"/channels/{fake.channel_id}/messages/{status.response['id']}"
    )
    assert deleted.status == 204 and deleted.time > result.time
    await asyncio.sleep(1.0)
    assert len(result_posts(fake, job_id)) == 1
    ours = channel_messages_of_job(fake, job_id)
    assert [int(m["id"]) for m in ours] == [int(result.response["id"])], ours
    # status edits: only on change, never closer together than STATUS_EDIT_INTERVAL_SECONDS (0.5 s here)
    edits = [r for r in fake.requests if r.method == "PATCH" and r.path.endswith(f"/messages/{status.response['id']}")]
    texts = [status.json["content"]] + [e.json["content"] for e in edits]
    shown = [
        (t.splitlines()[-1], e.status) for t, e in zip(texts, [status] + edits, strict=True)
    ]  # last line, HTTP status
    assert all(a != b for a, b in pairwise(texts)), shown
    assert any("Denoising: step" in t and "%" in t for t in texts), texts
    gaps = [b.time - a.time for a, b in pairwise([status] + edits)]
    assert min(gaps) >= 0.45, gaps


# -- bad input: one specific ephemeral message each, and nothing else changes ----------------------------------


def _ico_bytes() -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (200, 10, 10)).save(buffer, format="ICO")
    return buffer.getvalue()


def _bomb_png() -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("1", (8000, 6000)).save(buffer, format="PNG")  # 48 Mpx, a few kB on the wire
    return buffer.getvalue()


async def _refusal(fake: FakeDiscord, member, data: bytes, filename: str = "in.png", **options) -> str:
    attachment = fake.add_attachment(data, filename)
    values = {"image": attachment, "prompt": "the sea moves", **SMALL, **options}
    interaction = await fake.inject_slash("animate", values, member=member)
    ack = await callback_of(fake, interaction)
    assert ack.time - interaction.created_at < ACK_DEADLINE_S
    return await followup_text(fake, interaction)


async def _db(bot: BotProcess):
    from jobs.db import make_engine, make_sessionmaker

    engine = make_engine(bot.database_url)
    return engine, make_sessionmaker(engine)


async def _ledger_rows(bot: BotProcess, user_id: int) -> int:
    from sqlalchemy import func, select

    from jobs.models import QuotaLedger

    engine, sessions = await _db(bot)
    try:
        async with sessions() as session:
            return int(await session.scalar(select(func.count()).where(QuotaLedger.user_id == user_id)) or 0)
    finally:
        await engine.dispose()


async def test_every_bad_input_gets_its_own_message_and_changes_nothing(
    world: tuple[FakeDiscord, BotProcess],
) -> None:
    from jobs.control import ban_from_guild, unban_from_guild
    from jobs.models import GuildSettings
    from jobs.quota import ban_user, set_user_limit, unban_user

    fake, bot = world
    member = fake.add_member(fake.guild.id, "bad-input-user")
    inputs_before = set((bot.root / "data" / "inputs").glob("*"))
    good = png_bytes(seed=99)
    cases: list[tuple[str, str]] = []
    cases.append(("not an image", await _refusal(fake, member, b"this is not a picture at all", "x.png")))
    cases.append(("too large", await _refusal(fake, member, good + b"\0" * 3_000_000, "big.png")))
    cases.append(("bomb", await _refusal(fake, member, _bomb_png(), "bomb.png")))
    cases.append(("unsupported", await _refusal(fake, member, _ico_bytes(), "icon.ico")))
    cases.append(("prompt too long", await _refusal(fake, member, good, prompt="x" * 501)))
    cases.append(("frames out of range", await _refusal(fake, member, good, frames=40)))
    engine, sessions = await _db(bot)
    try:
        async with sessions.begin() as session:
            await set_user_limit(session, member.user_id, daily_gpu_seconds=0.5, max_pending=None, by=None)
        cases.append(("over quota", await _refusal(fake, member, good)))
        async with sessions.begin() as session:
            await set_user_limit(session, member.user_id, daily_gpu_seconds=None, max_pending=None, by=None)
            await ban_user(session, member.user_id, reason="spamming", by=None)
        cases.append(("banned", await _refusal(fake, member, good)))
        async with sessions.begin() as session:
            await unban_user(session, member.user_id, by=None)
            await ban_from_guild(session, fake.guild.id, member.user_id, reason="flooding here", by=1)
        cases.append(("banned here", await _refusal(fake, member, good)))
        async with sessions.begin() as session:
            await unban_from_guild(session, fake.guild.id, member.user_id, by=1)
            session.add(GuildSettings(guild_id=fake.guild.id, max_frames=8))
        cases.append(("over the guild cap", await _refusal(fake, member, good, frames=12)))
        async with sessions.begin() as session:
            await session.delete(await session.get(GuildSettings, fake.guild.id))
    finally:
        await engine.dispose()

    expected = {
        "not an image": "not an image",
        "too large": "too large",
        "bomb": "too many pixels",
        "unsupported": "not supported",
        "prompt too long": "prompt",
        "frames out of range": "frames 40",
        "over quota": "GPU time",
        "banned": "spamming",
        "banned here": "in this server: flooding here",
        "over the guild cap": "frames up to 8",
    }
    for name, text in cases:
        print(f"{name}: {text}")
        assert expected[name] in text, (name, text)
    assert len({text for _, text in cases}) == len(cases), "each refusal must read differently"
    assert await bot.jobs(__import__("jobs.models").models.Job.user_id == member.user_id) == []
    assert await _ledger_rows(bot, member.user_id) == 0
    assert set((bot.root / "data" / "inputs").glob("*")) == inputs_before
    # too large: refused from the declared size, without downloading the bytes
    big_downloads = [r for r in fake.requests if r.path.endswith("/big.png") and r.method == "GET"]
    assert big_downloads == []


# -- the other ways in --------------------------------------------------------------------------------------------


async def test_context_menu_and_modal(world: tuple[FakeDiscord, BotProcess]) -> None:
    fake, bot = world
    member = fake.add_member(fake.guild.id, "menu-user")
    image = fake.add_attachment(png_bytes(seed=3), "beach.png")
    message = fake.add_message(author=fake.member, content="waves roll onto the beach", attachments=[image])
    interaction = await fake.inject_message_command("Animate", message, member=member)
    ack = await callback_of(fake, interaction)
    assert ack.time - interaction.created_at < ACK_DEADLINE_S
    assert ack.json["type"] == 9  # a modal
    inputs = modal_inputs(ack.json)
    assert inputs["prompt"]["value"] == "waves roll onto the beach"
    # every enabled model (the server limits none) and every preset, each select on its default
    selects = modal_selects(ack.json)
    assert [(o["label"], o["value"]) for o in selects["model"]["options"]] == [
        ("I2VGen-XL", "i2vgenxl"),
        ("Wan 2.2 (5B)", "wan22-5b"),
        ("LTX-Video (fast)", "ltxv"),
    ]
    assert selects["model"]["options"][2]["description"] == "standard: 720p, 121 frames at 24 fps (5.0 s)"
    assert [o["value"] for o in selects["preset"]["options"]] == ["quick", "standard", "high"]
    assert [o.get("description") for o in selects["preset"]["options"]] == ["fastest", "default", "finest, slowest"]
    assert (selects["model"]["default"], selects["preset"]["default"]) == (["i2vgenxl"], ["standard"])
    submit = await fake.inject_modal_submit(
        ack.json["data"]["custom_id"],
        {
            inputs["prompt"]["custom_id"]: "waves roll in slowly",
            selects["model"]["custom_id"]: "ltxv",
            selects["preset"]["custom_id"]: "quick",
        },
        member=member,
        channel_id=fake.channel_id,
    )
    job_id = job_id_from(await followup_text(fake, submit))
    status = await fake.wait_for(lambda r: r.method == "POST" and f"i2v:cancel:{job_id}" in custom_ids(r.json))
    assert "waves roll in slowly" in status.json["content"] and "preset quick" in status.json["content"]
    assert str(status.json["message_reference"]["message_id"]) == message["id"]
    job = await bot.job(job_id)
    # LTX-Video's quick preset, not I2VGen-XL's (512p, 8 frames, 30 steps)
    assert (job.source.value, job.model, job.preset, job.resolution, job.frames, job.steps, job.prompt) == (
        "context_menu",
        "ltxv",
        "quick",
        "512p",
        65,
        4,
        "waves roll in slowly",
    )
    # 65 frames at 512p: a long run for the CPU test model, so stop it here; delivery of results is the same code
    # for every source and is covered by the other flows
    cancel = await fake.inject_slash("cancel", {"job": job_id}, member=member)
    assert f"job #{job_id}" in await followup_text(fake, cancel)
    notice = await wait_result(fake, job_id)
    assert "was cancelled" in notice.json["content"]
    assert str(notice.json["message_reference"]["message_id"]) == message["id"]


async def test_context_menu_on_a_message_without_image(world: tuple[FakeDiscord, BotProcess]) -> None:
    fake, _ = world
    message = fake.add_message(author=fake.member, content="just words")
    interaction = await fake.inject_message_command("Animate", message)
    ack = await callback_of(fake, interaction)
    assert ack.json["type"] == 4 and ack.json["data"]["flags"] == 64
    assert "no image" in ack.json["data"]["content"]


async def test_mention_reply_with_flags(world: tuple[FakeDiscord, BotProcess]) -> None:
    fake, bot = world
    member = fake.add_member(fake.guild.id, "mention-user")
    image = fake.add_attachment(png_bytes(seed=4), "dog.png")
    original = fake.add_message(author=fake.member, content="", attachments=[image])
    bot_mention = f"<@{fake.bot_user_id}>"
    request = await fake.inject_message(
        f"{bot_mention} the dog wags its tail --resolution 256p --frames 8 --steps 10 --seed 5 --fps 4 "
        f'--guidance 10 --neg "blurry, static"',
        author=member,
        mentions=[fake.bot_member],
        reply_to=original,
    )
    status = await fake.wait_for(
        lambda r: (
            r.method == "POST"
            and r.path.endswith("/messages")
            and str((r.json or {}).get("message_reference", {}).get("message_id")) == request["id"]
        )
    )
    job_id = job_id_from(status.json["content"])
    result = await wait_result(fake, job_id)
    assert str(result.json["message_reference"]["message_id"]) == request["id"]
    job = await bot.job(job_id)
    assert (job.prompt, job.seed, job.fps, job.guidance, job.negative_prompt, job.source.value) == (
        "the dog wags its tail",
        5,
        4,
        10.0,
        "blurry, static",
        "mention",
    )
    # a bad flag is answered as a reply, and queues nothing
    bad = await fake.inject_message(
        f"{bot_mention} go --frames many", author=member, mentions=[fake.bot_member], attachments=[image]
    )
    reply = await fake.wait_for(
        lambda r: r.method == "POST" and str((r.json or {}).get("message_reference", {}).get("message_id")) == bad["id"]
    )
    assert "--frames 'many' is not a whole number" in reply.json["content"]
    assert len(await bot.jobs(__import__("jobs.models").models.Job.user_id == member.user_id)) == 1


# -- buttons ------------------------------------------------------------------------------------------------------


async def _delivered(fake: FakeDiscord, bot: BotProcess, member, **options):
    interaction = await slash_animate(fake, member, **options)
    job_id = job_id_from(await followup_text(fake, interaction))
    result = await wait_result(fake, job_id)
    return job_id, result


async def test_reroll_same_params_new_seed(world: tuple[FakeDiscord, BotProcess]) -> None:
    fake, bot = world
    member = fake.add_member(fake.guild.id, "reroll-user")
    job_id, result = await _delivered(fake, bot, member, seed=77)
    click = await fake.inject_component(f"i2v:reroll:{job_id}", int(result.response["id"]), member=member)
    ack = await callback_of(fake, click)
    assert ack.time - click.created_at < ACK_DEADLINE_S
    new_id = job_id_from((await followup_text(fake, click)).split(" as ")[1])
    await wait_result(fake, new_id)
    parent, child = await bot.job(job_id), await bot.job(new_id)
    same = (
        "prompt",
        "negative_prompt",
        "resolution",
        "frames",
        "fps",
        "steps",
        "guidance",
        "width",
        "height",
        "input_sha256",
    )
    assert [getattr(child, f) for f in same] == [getattr(parent, f) for f in same]
    assert child.seed != parent.seed and child.parent_job_id == job_id and child.source.value == "reroll"


async def test_vary_opens_modal_and_queues_changed_params(world: tuple[FakeDiscord, BotProcess]) -> None:
    fake, bot = world
    member = fake.add_member(fake.guild.id, "vary-user")
    job_id, result = await _delivered(fake, bot, member, seed=8)
    click = await fake.inject_component(f"i2v:vary:{job_id}", int(result.response["id"]), member=member)
    ack = await callback_of(fake, click)
    assert ack.json["type"] == 9
    inputs = modal_inputs(ack.json)
    assert inputs["prompt"]["value"] == "a cat turns its head slowly" and inputs["seed"]["value"] == "8"
    submit = await fake.inject_modal_submit(
        ack.json["data"]["custom_id"],
        {
            inputs["prompt"]["custom_id"]: "a cat blinks",
            inputs["frames"]["custom_id"]: "10",
            inputs["fps"]["custom_id"]: "5",
            inputs["steps"]["custom_id"]: "10",
            inputs["seed"]["custom_id"]: "9",
        },
        member=member,
        message=int(result.response["id"]),
    )
    new_id = job_id_from((await followup_text(fake, submit)).split(" as ")[1])
    await wait_result(fake, new_id)
    child = await bot.job(new_id)
    assert (child.prompt, child.frames, child.fps, child.seed, child.source.value, child.parent_job_id) == (
        "a cat blinks",
        10,
        5,
        9,
        "vary",
        job_id,
    )


async def test_delete_by_owner_and_refused_for_someone_else(world: tuple[FakeDiscord, BotProcess]) -> None:
    fake, bot = world
    owner = fake.add_member(fake.guild.id, "delete-owner")
    other = fake.add_member(fake.guild.id, "delete-other")
    job_id, result = await _delivered(fake, bot, owner)
    message_id = int(result.response["id"])
    refused = await fake.inject_component(f"i2v:delete:{job_id}", message_id, member=other)
    ack = await callback_of(fake, refused)
    assert (
        ack.json["data"]["flags"] == 64 and ack.json["data"]["content"] == f"There is no such job of yours (#{job_id})."
    ), ack.json
    assert message_id in fake.messages
    # Info is for the requester (and the operator), ephemeral
    info = await fake.inject_component(f"i2v:info:{job_id}", message_id, member=other)
    info_ack = await callback_of(fake, info)
    assert (
        info_ack.json["data"]["flags"] == 64
        and info_ack.json["data"]["content"] == f"There is no such job of yours (#{job_id})."
    ), info_ack.json
    info = await fake.inject_component(f"i2v:info:{job_id}", message_id, member=owner)
    info_ack = await callback_of(fake, info)
    assert info_ack.json["data"]["flags"] == 64 and "Negative prompt" in info_ack.json["data"]["content"]
    deleted = await fake.inject_component(f"i2v:delete:{job_id}", message_id, member=owner)
    assert "Deleted" in await followup_text(fake, deleted)
    assert message_id not in fake.messages
    await fake.wait_for(lambda r: r.method == "DELETE" and r.path.endswith(f"/messages/{message_id}"))


# -- cancel, /queue, /quota -----------------------------------------------------------------------------------------


async def test_queue_then_cancel_queued_and_running(world: tuple[FakeDiscord, BotProcess]) -> None:
    fake, bot = world
    first = fake.add_member(fake.guild.id, "cancel-first")
    second = fake.add_member(fake.guild.id, "cancel-second")
    running = await slash_animate(fake, first, steps=100)
    running_id = job_id_from(await followup_text(fake, running))
    queued = await slash_animate(fake, second)
    queued_id = job_id_from(await followup_text(fake, queued))
    await bot.wait_job(running_id, lambda j: j.status == JobStatus.RUNNING and j.progress_step > 0)

    listing = await fake.inject_slash("queue", {}, member=second)
    text = await followup_text(fake, listing)
    assert f"#{queued_id} queued, position 1" in text and "1 running" in text, text

    cancel_queued = await fake.inject_slash("cancel", {}, member=second)
    assert f"Cancelled job #{queued_id} before it started" in await followup_text(fake, cancel_queued)
    notice = await wait_result(fake, queued_id)
    assert "was cancelled" in notice.json["content"]
    assert (await bot.job(queued_id)).status == JobStatus.CANCELLED

    status = await fake.wait_for(lambda r: r.method == "POST" and f"i2v:cancel:{running_id}" in custom_ids(r.json))
    stranger = await fake.inject_component(f"i2v:cancel:{running_id}", int(status.response["id"]), member=second)
    assert (await callback_of(fake, stranger)).json["data"][
        "content"
    ] == f"There is no such job of yours (#{running_id})."
    click = await fake.inject_component(f"i2v:cancel:{running_id}", int(status.response["id"]), member=first)
    assert f"Stopping job #{running_id}" in await followup_text(fake, click)
    job = await bot.wait_job(running_id, lambda j: j.status == JobStatus.CANCELLED)
    assert job.gpu_seconds and job.gpu_seconds > 0
    notice = await wait_result(fake, running_id)
    assert "was cancelled" in notice.json["content"]


async def test_quota_shows_budget_and_pending(world: tuple[FakeDiscord, BotProcess]) -> None:
    fake, bot = world
    member = fake.add_member(fake.guild.id, "quota-user")
    before = await fake.inject_slash("quota", {}, member=member)
    text = await followup_text(fake, before)
    assert "**100000** of 100000 GPU-seconds left" in text and "Pending jobs: 0 of 5" in text, text
    job_id, _ = await _delivered(fake, bot, member)
    job = await bot.wait_job(job_id, lambda j: j.delivered_at is not None)
    after = await fake.inject_slash("quota", {}, member=member)
    text = await followup_text(fake, after)
    assert f"used {job.gpu_seconds:.0f}" in text and "Pending jobs: 0 of 5" in text, text


async def test_context_menu_on_an_image_embed_opens_the_form(world: tuple[FakeDiscord, BotProcess]) -> None:
    fake, _ = world
    image = fake.add_attachment(png_bytes(seed=31), "linked.png")
    message = fake.add_message(
        author=fake.member,
        content="look at this",
        embeds=[{"type": "image", "url": image.url, "thumbnail": {"url": image.url, "proxy_url": image.url}}],
    )
    interaction = await fake.inject_message_command("Animate", message)
    ack = await callback_of(fake, interaction)
    assert ack.json["type"] == 9 and modal_inputs(ack.json)["prompt"]["value"] == "look at this"


async def test_admin_may_delete_someone_elses_video(world: tuple[FakeDiscord, BotProcess]) -> None:
    fake, bot = world
    owner = fake.add_member(fake.guild.id, "admin-delete-owner")
    job_id, result = await _delivered(fake, bot, owner)
    message_id = int(result.response["id"])
    click = await fake.inject_component(f"i2v:delete:{job_id}", message_id, member=fake.admin)
    assert "Deleted" in await followup_text(fake, click)
    assert message_id not in fake.messages


def _disk_copies(bot: BotProcess, job_id: int) -> list[str]:
    return sorted(p.name for p in (bot.root / "outputs").glob(f"video_*_{job_id}.mp4"))


async def test_delivery_reads_the_store_and_delete_removes_the_stored_video_and_its_copy(
    world: tuple[FakeDiscord, BotProcess],
) -> None:
    from tests.worker.workerharness import Db

    fake, bot = world
    owner = fake.add_member(fake.guild.id, "delete-owner")
    job_id, result = await _delivered(fake, bot, owner)
    job = await bot.wait_job(job_id, lambda j: j.delivered_at is not None, timeout=20)
    (upload,) = result.files
    db = Db(bot.database_url)
    try:
        stored = await db.video(job_id)
        assert (
            stored is not None and len(stored) == upload.size == job.output_bytes
        )  # the posted file is the stored one
        assert _disk_copies(bot, job_id) == [upload.filename]
        assert job.output_path is not None and job.output_path.endswith(upload.filename)
        click = await fake.inject_component(f"i2v:delete:{job_id}", int(result.response["id"]), member=owner)
        assert "Deleted" in await followup_text(fake, click)
        assert await db.video(job_id) is None and _disk_copies(bot, job_id) == []
    finally:
        await db.close()
    assert (await bot.job(job_id)).status == JobStatus.SUCCEEDED  # the row stays


async def test_delete_my_data_leaves_no_bytes_and_only_an_operator_may_name_someone_else(
    world: tuple[FakeDiscord, BotProcess],
) -> None:
    fake, bot = world
    user = fake.add_member(fake.guild.id, "forget-me")
    other = fake.add_member(fake.guild.id, "forget-other")
    first, _ = await _delivered(fake, bot, user)
    second, _ = await _delivered(fake, bot, user, seed=5)
    other_job, _ = await _delivered(fake, bot, other)
    for job_id in (first, second, other_job):
        await bot.wait_job(job_id, lambda j: j.delivered_at is not None, timeout=20)
    assert await bot.kept_bytes(user.user_id) == (2, 2) and _disk_copies(bot, first)

    refused = await fake.inject_slash("delete-my-data", {"user": other}, member=user)
    answer = (await callback_of(fake, refused)).json["data"]
    assert "Only the bot's operator" in answer["content"] and answer["flags"] == 64
    assert await bot.kept_bytes(other.user_id) == (1, 1)

    mine = await fake.inject_slash("delete-my-data", {}, member=user)
    assert "Deleted the stored images and videos of 2 of your jobs" in await followup_text(fake, mine)
    assert await bot.kept_bytes(user.user_id) == (0, 0)
    assert _disk_copies(bot, first) == [] and _disk_copies(bot, second) == []
    assert await bot.kept_bytes(other.user_id) == (1, 1)  # nobody else's bytes went

    by_operator = await fake.inject_slash("delete-my-data", {"user": other}, member=fake.admin)
    assert "of 1 of" in await followup_text(fake, by_operator)
    assert await bot.kept_bytes(other.user_id) == (0, 0) and _disk_copies(bot, other_job) == []

    # a re-roll of a job whose image is gone says so plainly, and queues nothing
    first_message_id = (await bot.job(first)).result_message_id
    assert first_message_id is not None, "the first job's video was posted"
    reroll = await fake.inject_component(f"i2v:reroll:{first}", first_message_id, member=user)
    assert f"The image of job #{first} is gone" in await followup_text(fake, reroll)
    assert await bot.kept_bytes(user.user_id) == (0, 0)


async def test_failed_job_gets_a_notice_and_is_refunded(world: tuple[FakeDiscord, BotProcess]) -> None:
    from jobs.models import Job

    fake, bot = world
    first = fake.add_member(fake.guild.id, "fail-first")
    victim = fake.add_member(fake.guild.id, "fail-victim")
    blocker_id = job_id_from(await followup_text(fake, await slash_animate(fake, first, steps=60)))
    doomed_id = job_id_from(await followup_text(fake, await slash_animate(fake, victim, png_bytes(seed=77))))
    doomed = await bot.job(doomed_id)
    assert doomed.status == JobStatus.QUEUED
    assert not await bot.jobs(Job.input_sha256 == doomed.input_sha256, Job.id != doomed_id)
    await bot.drop_input(doomed.input_sha256)  # the worker will find its input gone
    notice = await wait_result(fake, doomed_id)
    assert notice.json["content"].startswith(f"❌ <@{victim.user_id}>, job #{doomed_id} failed:")
    assert "Nothing was charged" in notice.json["content"] and not notice.files
    job = await bot.wait_job(doomed_id, lambda j: j.delivered_at is not None, timeout=10)
    assert job.status == JobStatus.FAILED
    quota = await fake.inject_slash("quota", {}, member=victim)
    assert "(used 0, reserved for pending jobs 0)" in await followup_text(fake, quota)
    await bot.wait_job(blocker_id, lambda j: j.delivered_at is not None)
