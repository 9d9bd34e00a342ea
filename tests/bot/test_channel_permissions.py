"""Permissions before GPU time, with the real ``python -m bot`` against the fake Discord, which computes the bot's
permissions per channel (roles, overwrites, a thread's parent) and refuses channel calls that lack them.

Where the bot may not post its status and result, every way to ask (``/animate``, *Apps → Animate*, a mention,
Re-roll) gets one sentence naming what is missing, and nothing is queued. A permission removed while a job runs
costs at most a few refused calls; the requester hears once, by the interaction's follow-up; the job records why,
and the video stays in the store.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from bot.channel_access import POST_PERMISSIONS, invite_url
from jobs.models import Job, JobStatus
from tests.bot.harness import (
    REPO_ROOT,
    SMALL,
    TOKEN,
    BotProcess,
    answer_of,
    followup_text,
    job_id_from,
    png_bytes,
    running_bot,
    wait_result,
    webhook_posts,
)
from tests.fakediscord.payloads import PERM_ATTACH_FILES, PERM_SEND_MESSAGES, PERM_SEND_MESSAGES_IN_THREADS
from tests.fakediscord.server import FakeDiscord

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.slow, pytest.mark.timeout(240)]

QUIET_AFTER_S = 2.0  # monitor passes (0.2 s each) watched after delivery stopped, to see that nothing knocks again
MAX_REFUSED_CALLS = 3  # "a few": the status edit and the result post, with room for one more


class PermissionsFake(FakeDiscord):
    """The fake Discord with the two restricted channels these tests ask in."""

    no_files: int  # a text channel where the bot's role is denied Attach Files
    thread: int  # a thread in a channel where the bot's role is denied Send Messages in Threads


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def world(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[tuple[PermissionsFake, BotProcess]]:
    fake = PermissionsFake(bot_token=TOKEN)
    guild = fake.guild
    fake.no_files = int(fake.add_channel(guild.id, "no-files")["id"])
    fake.overwrite(fake.no_files, guild.bot_role_id, deny=PERM_ATTACH_FILES)
    quiet = int(fake.add_channel(guild.id, "announcements")["id"])
    fake.overwrite(quiet, guild.bot_role_id, deny=PERM_SEND_MESSAGES_IN_THREADS)
    fake.thread = int(fake.add_thread(quiet, "questions")["id"])
    await fake.start()
    bot = BotProcess(fake, tmp_path_factory.mktemp("perms-bot"), extra_env={"I2V_FAULT_SLEEP_PER_STEP": "0.3"})
    async with running_bot(fake, bot):
        yield fake, bot


def _channel_calls(fake: FakeDiscord, channel_id: int, after: int) -> list:
    return [r for r in fake.requests[after:] if r.path.startswith(f"/channels/{channel_id}/") and r.status]


async def _animate_in(fake: FakeDiscord, member, channel_id: int):
    attachment = fake.add_attachment(png_bytes(seed=member.user_id % 89), "pic.png")
    return await fake.inject_slash(
        "animate", {"image": attachment, "prompt": "leaves drift down", **SMALL}, member=member, channel_id=channel_id
    )


async def _no_jobs(bot: BotProcess, member) -> None:
    assert await bot.jobs(Job.user_id == member.user_id) == []


@pytest.mark.asyncio(loop_scope="module")
async def test_the_invite_asks_for_exactly_what_posting_needs() -> None:
    assert POST_PERMISSIONS.value == 274878008320
    assert invite_url(42) == (
        "https://discord.com/oauth2/authorize?client_id=42&scope=bot+applications.commands&permissions=274878008320"
    )
    readme = (REPO_ROOT / "README.md").read_text()
    invites = re.findall(r"oauth2/authorize\?\S*permissions=(\d+)", readme)
    assert invites and {int(value) for value in invites} == {POST_PERMISSIONS.value}


async def test_refused_where_the_bot_may_not_attach_or_post_in_threads(
    world: tuple[PermissionsFake, BotProcess],
) -> None:
    fake, bot = world
    member = fake.add_member(fake.guild.id, "asker")
    start = len(fake.requests)
    for channel_id, missing in ((fake.no_files, "Attach Files"), (fake.thread, "Send Messages in Threads")):
        interaction = await _animate_in(fake, member, channel_id)
        answer = await answer_of(fake, interaction)
        assert answer.ephemeral and missing in answer.content and "nothing was queued" in answer.content, answer
        assert not _channel_calls(fake, channel_id, start)  # no status message, not even a try
    # Apps -> Animate: refused before the form is shown
    image = fake.add_attachment(png_bytes(seed=3), "menu.png")
    message = fake.add_message(author=member, content="", attachments=[image], channel_id=fake.no_files)
    menu = await fake.inject_message_command("Animate", message, member=member)
    answer = await answer_of(fake, menu)
    assert answer.callback_type == 4 and answer.ephemeral and "Attach Files" in answer.content
    # a mention: the bot may still send words there, so it replies with the refusal
    request = await fake.inject_message(
        f"<@{fake.bot_user_id}> the sea moves",
        author=member,
        mentions=[fake.bot_member],
        attachments=[image],
        channel_id=fake.no_files,
    )
    reply = await fake.wait_for(
        lambda r: (
            r.method == "POST"
            and r.path == f"/channels/{fake.no_files}/messages"
            and str(((r.json or {}).get("message_reference") or {}).get("message_id")) == request["id"]
        )
    )
    assert reply.status == 200 and "Attach Files" in reply.json["content"]
    await _no_jobs(bot, member)


async def test_reroll_is_refused_once_the_channel_closes(world: tuple[PermissionsFake, BotProcess]) -> None:
    fake, bot = world
    member = fake.add_member(fake.guild.id, "reroller")
    channel_id = int(fake.add_channel(fake.guild.id, "soon-closed")["id"])
    await fake.dispatch("CHANNEL_CREATE", fake.channels[channel_id])
    job_id = job_id_from(await followup_text(fake, await _animate_in(fake, member, channel_id), timeout=30))
    result = await wait_result(fake, job_id)
    await fake.set_overwrite(channel_id, fake.guild.bot_role_id, deny=PERM_ATTACH_FILES)
    click = await fake.inject_component(f"i2v:reroll:{job_id}", int(result.response["id"]), member=member)
    answer = await answer_of(fake, click)
    assert answer.ephemeral and "Attach Files" in answer.content, answer
    assert [job.id for job in await bot.jobs(Job.user_id == member.user_id)] == [job_id]


async def test_a_permission_removed_mid_job_costs_a_few_calls_and_one_notice(
    world: tuple[PermissionsFake, BotProcess],
) -> None:
    fake, bot = world
    member = fake.add_member(fake.guild.id, "unlucky")
    channel_id = int(fake.add_channel(fake.guild.id, "closing")["id"])
    await fake.dispatch("CHANNEL_CREATE", fake.channels[channel_id])
    interaction = await _animate_in(fake, member, channel_id)
    job_id = job_id_from(await followup_text(fake, interaction, timeout=30))
    await bot.wait_job(job_id, lambda job: job.status == JobStatus.RUNNING)
    told_before = len(webhook_posts(fake, interaction))
    closed_at = len(fake.requests)
    await fake.set_overwrite(channel_id, fake.guild.bot_role_id, deny=PERM_SEND_MESSAGES)
    job = await bot.wait_job(job_id, lambda job: job.delivered_at is not None)
    await asyncio.sleep(QUIET_AFTER_S)
    refused = [r for r in _channel_calls(fake, channel_id, closed_at) if r.status >= 400]
    assert 1 <= len(refused) <= MAX_REFUSED_CALLS, [r.describe() for r in refused]
    posts = [r for r in _channel_calls(fake, channel_id, closed_at) if r.method == "POST"]
    assert posts and all(r.status == 403 for r in posts)  # nothing was posted (editing its status message may go on)
    notices = webhook_posts(fake, interaction)[told_before:]
    assert len(notices) == 1, [n.json for n in notices]
    assert notices[0].json["flags"] & 64 and f"job #{job_id} is made" in notices[0].json["content"]
    assert job.status_message_id is not None, "the bot posted a status message"
    status = fake.messages[job.status_message_id]  # the bot may still edit its own message there
    assert "Done, but the video was not posted here" in status["content"], status["content"]
    assert job.status == JobStatus.SUCCEEDED and job.result_message_id is None
    assert job.delivery_error and "no longer post" in job.delivery_error
    videos = (await bot.kept_bytes(member.user_id))[1]
    assert videos > 0  # the page still serves it
