"""The unsafe-video policy end to end: the worker's tiny image classifier says "unsafe" for every video
(``I2V_FAULT_UNSAFE_OUTPUT=1``, run through transformers' real pipeline), and the bot posts such a video only in an
age-restricted channel (the fake's ``nsfw`` channel), there as a spoiler; anywhere else it is not posted, its
bytes go at once and the requester is told privately: by an ephemeral follow-up while the interaction lives, else
by a direct message, else on the job (``/queue``). A server may refuse them everywhere (``/admin safety``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
import pytest_asyncio

from jobs.models import JobVideo
from tests.bot.harness import (
    SMALL,
    TOKEN,
    BotProcess,
    answer_of,
    custom_ids,
    followup_text,
    job_id_from,
    png_bytes,
    result_posts,
    running_bot,
    wait_result,
)
from tests.fakediscord import payloads
from tests.fakediscord.records import RecordedRequest
from tests.fakediscord.server import FakeDiscord
from tests.fakediscord.state import FakeMember

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.slow, pytest.mark.timeout(300)]

NOT_POSTED = "was not posted"


@dataclass
class World:
    fake: FakeDiscord
    bot: BotProcess
    nsfw_channel: int
    manager: FakeMember


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def world(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    fake = FakeDiscord(bot_token=TOKEN)
    await fake.start()
    nsfw = fake.add_channel(fake.guild.id, "after-dark", nsfw=True)  # in GUILD_CREATE: known before the bot starts
    managers = fake.add_role(fake.guild.id, "managers", permissions=payloads.PERM_MANAGE_GUILD)
    manager = fake.add_member(fake.guild.id, "manager", roles=[managers])
    bot = BotProcess(fake, tmp_path_factory.mktemp("unsafe-bot"), extra_env={"I2V_FAULT_UNSAFE_OUTPUT": "1"})
    async with running_bot(fake, bot):
        yield World(fake, bot, int(nsfw["id"]), manager)


async def request(world: World, member: FakeMember, channel_id: int | None = None) -> tuple[Any, int]:
    """``/animate`` in ``channel_id`` (default: the ordinary channel): the interaction and the job id."""
    attachment = world.fake.add_attachment(png_bytes(seed=member.user_id % 83), "pic.png")
    interaction = await world.fake.inject_slash(
        "animate", {"image": attachment, "prompt": "a flower opens", **SMALL}, member=member, channel_id=channel_id
    )
    text = await followup_text(world.fake, interaction)
    assert "Queued as job #" in text, text
    return interaction, job_id_from(text)


def private_notes(fake: FakeDiscord, interaction: Any) -> list[RecordedRequest]:
    """Ephemeral follow-ups for ``interaction`` saying a video was not posted."""
    path = f"/webhooks/{fake.application_id}/{interaction.token}"
    return [
        r
        for r in fake.requests
        if r.method == "POST"
        and r.path.rstrip("/") == path
        and r.status == 200
        and NOT_POSTED in ((r.json or {}).get("content") or "")
    ]


async def assert_withheld(world: World, job_id: int) -> None:
    """The job keeps its verdict and reason; no byte of its video is left (store, disk); the channel got only a
    notice without the video or the reason, which replaced the status message."""
    bot = world.bot
    job = await bot.wait_job(job_id, lambda j: j.delivered_at is not None)
    assert job.output_verdict == "unsafe" and job.withheld_at is not None, job
    assert "flagged" in (job.error or "")
    assert job.output_path is None
    assert await bot.read(lambda s: s.get(JobVideo, job_id)) is None
    assert not list((bot.root / "outputs").glob(f"video_*_{job_id}.mp4"))
    (notice,) = result_posts(world.fake, job_id)
    assert not notice.files and int(notice.response["id"]) == job.result_message_id
    assert "not posted here" in notice.json["content"] and "flagged" not in notice.json["content"]
    assert f"i2v:report:{job_id}" not in custom_ids(notice.json)
    assert not [r for r in world.fake.requests if r.files and f"_{job_id}.mp4" in r.files[0].filename]
    assert job.status_message_id is None or job.status_message_id not in world.fake.messages


async def test_flagged_video_is_withheld_in_an_ordinary_channel_and_the_user_told_ephemerally(world: World) -> None:
    fake = world.fake
    member = fake.add_member(fake.guild.id, "ordinary")
    interaction, job_id = await request(world, member)
    note = await fake.wait_for(lambda r: r in private_notes(fake, interaction), timeout=90)
    assert int(note.json["flags"]) & payloads.MESSAGE_FLAG_EPHEMERAL
    assert f"job #{job_id}" in note.json["content"] and "age-restricted" in note.json["content"]
    await assert_withheld(world, job_id)
    # /queue tells it too
    queue = await answer_of(fake, await fake.inject_slash("queue", {}, member=member))
    assert f"#{job_id} was not posted" in queue.content, queue.content


async def test_flagged_video_is_a_spoiler_in_an_age_restricted_channel(world: World) -> None:
    fake = world.fake
    member = fake.add_member(fake.guild.id, "after-dark-user")
    interaction, job_id = await request(world, member, channel_id=world.nsfw_channel)
    post = await wait_result(fake, job_id)
    assert post.path == f"/channels/{world.nsfw_channel}/messages"
    (upload,) = post.files
    assert upload.filename.startswith("SPOILER_video_") and upload.data[4:8] == b"ftyp"
    assert f"i2v:report:{job_id}" in custom_ids(post.json)
    job = await world.bot.wait_job(job_id, lambda j: j.delivered_at is not None)
    assert job.output_verdict == "unsafe" and job.withheld_at is None
    assert not private_notes(fake, interaction)


async def test_a_server_may_refuse_flagged_videos_everywhere(world: World) -> None:
    fake = world.fake
    member = fake.add_member(fake.guild.id, "strict-user")
    setting = await answer_of(
        fake, await fake.inject_slash("admin safety", {"unsafe_videos": "refuse"}, member=world.manager)
    )
    assert setting.ephemeral and "**refuse**" in setting.content, setting.content
    interaction, job_id = await request(world, member, channel_id=world.nsfw_channel)
    note = await fake.wait_for(lambda r: r in private_notes(fake, interaction), timeout=90)
    assert "age-restricted" not in note.json["content"]  # refused everywhere: the plain reason
    await assert_withheld(world, job_id)
    await fake.inject_slash("admin safety", {"unsafe_videos": "age_restricted"}, member=world.manager)


async def test_mention_request_told_by_direct_message_else_on_the_job(world: World) -> None:
    fake = world.fake
    member = fake.add_member(fake.guild.id, "mentioner")
    image = fake.add_attachment(png_bytes(seed=7), "m.png")
    await fake.inject_message(
        f"<@{fake.bot_user_id}> a flower opens --resolution 256p --frames 8 --steps 10",
        author=member,
        mentions=[fake.bot_member],
        attachments=[image],
    )
    status = await fake.wait_for(
        lambda r: (
            r.method == "POST"
            and r.path == f"/channels/{fake.channel_id}/messages"
            and any(c.startswith("i2v:cancel:") for c in custom_ids(r.json))
            and f"<@{member.user_id}>" in (r.json or {}).get("content", "")
        )
    )
    job_id = job_id_from(status.json["content"])
    dm = await fake.wait_for(
        lambda r: (
            r.method == "POST"
            and r.path == "/users/@me/channels"
            and str((r.json or {}).get("recipient_id")) == str(member.user_id)
        ),
        timeout=90,
    )
    dm_channel = dm.response["id"]
    told = await fake.wait_for(lambda r: r.method == "POST" and r.path == f"/channels/{dm_channel}/messages")
    assert NOT_POSTED in told.json["content"] and f"job #{job_id}" in told.json["content"]
    await assert_withheld(world, job_id)

    # a member who takes no direct messages: only the job says it (/queue, the page)
    closed = fake.add_member(fake.guild.id, "closed-dms")
    image = fake.add_attachment(png_bytes(seed=8), "n.png")
    fault = fake.fail(
        status=403,
        code=50007,
        message="Cannot send messages to this user",
        method="POST",
        path=r"^/users/@me/channels",
        times=1,
    )
    await fake.inject_message(
        f"<@{fake.bot_user_id}> a flower opens --resolution 256p --frames 8 --steps 10",
        author=closed,
        mentions=[fake.bot_member],
        attachments=[image],
    )
    status = await fake.wait_for(
        lambda r: (
            r.method == "POST"
            and r.path == f"/channels/{fake.channel_id}/messages"
            and f"<@{closed.user_id}>" in (r.json or {}).get("content", "")
        )
    )
    job_id = job_id_from(status.json["content"])
    await assert_withheld(world, job_id)
    assert fault.hits == 1
    queue = await answer_of(fake, await fake.inject_slash("queue", {}, member=closed))
    assert f"#{job_id} was not posted" in queue.content, queue.content
