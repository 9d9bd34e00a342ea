"""What a Discord user expects, end to end: the real ``python -m bot`` (embedded worker, tiny model) against the fake
Discord. ``/help`` lists what this user may run (a member fewer than a server admin, an admin fewer than the
operator), the presets with their values, their quota and the page's public address; ``/cancel`` and the admin
cancels offer job ids by autocomplete, each caller only the jobs they may act on; one channel message per job.

One bot for the module: ``alice`` and ``bob`` are members of the fake's guild, ``anna`` has Manage Server there,
``opal`` is the operator (OPERATOR_USER_IDS); ``otto`` has Manage Server in a second guild.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import pytest_asyncio

from generator.model_spaces import DEFAULT_PRESET
from generator.params import PRESETS
from tests.bot.harness import (
    Answer,
    BotProcess,
    callback_of,
    channel_messages_of_job,
    custom_ids,
    queued_job,
    running_bot,
    slash,
    wait_result,
)
from tests.fakediscord import payloads
from tests.fakediscord.server import FakeDiscord
from tests.fakediscord.state import FakeMember

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.slow, pytest.mark.timeout(300)]

PUBLIC_URL = "https://i2v.example.org"
MEMBER_COMMANDS = ["animate", "queue", "cancel", "quota", "delete-my-data", "web", "help"]


@dataclass
class World:
    fake: FakeDiscord
    bot: BotProcess
    alice: FakeMember
    bob: FakeMember
    anna: FakeMember
    opal: FakeMember
    otto: FakeMember


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def world(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    fake = FakeDiscord(bot_token="test-bot-token")
    await fake.start()
    gid = fake.guild.id
    managers = fake.add_role(gid, "managers", permissions=payloads.PERM_MANAGE_GUILD)
    anna = fake.add_member(gid, "anna", roles=[managers])
    opal = fake.add_member(gid, "opal", permissions=0)
    bob = fake.add_member(gid, "bob")
    other = fake.add_guild("Stranger's server")
    b_managers = fake.add_role(other.id, "managers", permissions=payloads.PERM_MANAGE_GUILD)
    otto = fake.add_member(other.id, "otto", roles=[b_managers])
    bot = BotProcess(
        fake,
        tmp_path_factory.mktemp("ux-bot"),
        extra_env={"OPERATOR_USER_IDS": str(opal.user_id), "WEB_PUBLIC_URL": PUBLIC_URL},
    )
    async with running_bot(fake, bot):
        yield World(fake, bot, fake.member, bob, anna, opal, otto)


def listed_commands(answer: Answer) -> list[str]:
    """The command names /help lists under "Your commands" (``/admin`` and ``/operator`` as group names)."""
    description = answer.embeds[0]["description"]
    section = description.split("**Your commands**", 1)[1]
    return [line.split("`")[1].lstrip("/") for line in section.strip().splitlines() if line.startswith("`/")]


async def test_help_lists_what_each_user_may_run(world: World) -> None:
    member = await slash(world.fake, "help", {}, world.alice)
    admin = await slash(world.fake, "help", {}, world.anna)
    operator = await slash(world.fake, "help", {}, world.opal)
    for answer in (member, admin, operator):
        assert answer.ephemeral and len(answer.embeds) == 1, answer
    assert listed_commands(member) == MEMBER_COMMANDS
    assert listed_commands(admin) == [*MEMBER_COMMANDS, "admin"]
    assert listed_commands(operator) == [*MEMBER_COMMANDS, "admin", "operator"]
    assert "`pause`" in admin.text and "`tier`" not in admin.text
    assert "`tier`" in operator.text
    # otto, in his own server where he has Manage Server: its admin, not the operator
    stranger = await slash(world.fake, "help", {}, world.otto)
    assert listed_commands(stranger) == [*MEMBER_COMMANDS, "admin"]


async def test_help_shows_the_presets_values_the_quota_and_the_page(world: World) -> None:
    answer = await slash(world.fake, "help", {}, world.bob)
    fields = {field["name"]: field["value"] for field in answer.embeds[0]["fields"]}
    presets = fields["Presets"]
    for name, preset in PRESETS.items():
        mark = " (default)" if name == DEFAULT_PRESET else ""
        assert (
            f"**{name}**{mark}: {preset.resolution}, {preset.frames} frames at {preset.fps} fps "
            f"({preset.frames / preset.fps:.1f} s), {preset.steps} steps, guidance {preset.guidance:g}"
        ) in presets
    assert "Budget: **100000** of 100000 GPU-seconds left today" in fields["Your quota"], fields
    assert "Pending jobs: 0 of 5." in fields["Your quota"]
    assert fields["Web page"].startswith(PUBLIC_URL), fields
    assert "Apps → Animate" in answer.embeds[0]["description"]


async def test_preset_choices_explain_themselves(world: World) -> None:
    animate = world.fake.find_command("animate")
    assert animate is not None
    preset = next(option for option in animate["options"] if option["name"] == "preset")
    names = {choice["value"]: choice["name"] for choice in preset["choices"]}
    assert names == {"quick": "quick (fastest)", "standard": "standard (default)", "high": "high (finest, slowest)"}
    assert "/help" in preset["description"]


async def test_no_command_description_is_cut(world: World) -> None:
    """discord.py cuts a docstring longer than Discord's 100 characters with "…"; none may be."""

    def descriptions(item: dict[str, Any], path: str) -> Iterator[tuple[str, str]]:
        if "description" in item:
            yield path, item["description"]
        for option in item.get("options") or []:
            yield from descriptions(option, f"{path} {option['name']}")

    found = [pair for command in world.fake.global_commands for pair in descriptions(command, command["name"])]
    assert len(found) > 40, found
    cut = [(path, text) for path, text in found if text.endswith("…") or len(text) > 100]
    assert not cut, cut


async def choices(world: World, command: str, member: FakeMember, typed: str = "") -> list[dict[str, Any]]:
    """The choices the bot offers while ``member`` types ``typed`` into ``/command``'s ``job`` option."""
    interaction = await world.fake.inject_autocomplete(command, {"job": typed}, "job", member=member)
    callback = await callback_of(world.fake, interaction)
    assert callback.status == 200 and callback.json["type"] == 8, callback
    offered = callback.json["data"]["choices"]
    assert len(offered) <= 25 and all(1 <= len(choice["name"]) <= 100 for choice in offered), offered
    return offered


def offered_ids(offered: list[dict[str, Any]]) -> list[int]:
    return [choice["value"] for choice in offered]


async def test_job_autocomplete_offers_each_caller_only_the_jobs_they_may_cancel(world: World) -> None:
    reply = await slash(world.fake, "operator pause", {"reason": "autocomplete test"}, world.opal)
    assert reply.content.startswith("Paused"), reply.content
    long_prompt = "the sea rolls in under a low grey sky " * 8  # 300 characters
    try:
        alice_1 = await queued_job(world.fake, world.alice, prompt="a red kite climbs over the dunes")
        alice_2 = await queued_job(world.fake, world.alice, prompt=long_prompt)
        bob_1 = await queued_job(world.fake, world.bob, prompt="a cat turns its head")
        otto_1 = await queued_job(world.fake, world.otto, prompt="rain on a window")

        mine = await choices(world, "cancel", world.alice)
        assert offered_ids(mine) == [alice_2, alice_1]  # newest first, only hers
        assert mine[1]["name"] == f"#{alice_1} queued: a red kite climbs over the dunes"
        assert mine[0]["name"].startswith(f"#{alice_2} queued: the sea rolls in") and mine[0]["name"].endswith("…")
        assert len(mine[0]["name"]) == 100
        assert offered_ids(await choices(world, "cancel", world.alice, "KITE")) == [alice_1]
        assert offered_ids(await choices(world, "cancel", world.alice, f"#{alice_1}")) == [alice_1]
        assert offered_ids(await choices(world, "cancel", world.alice, "a cat")) == []  # bob's prompt
        assert offered_ids(await choices(world, "cancel", world.bob)) == [bob_1]

        # a server admin: that server's jobs; a member or another server's admin: nothing of it
        assert offered_ids(await choices(world, "admin cancel", world.anna)) == [bob_1, alice_2, alice_1]
        assert offered_ids(await choices(world, "admin cancel", world.otto)) == [otto_1]
        assert await choices(world, "admin cancel", world.alice) == []
        # the operator: every server's
        assert offered_ids(await choices(world, "operator cancel", world.opal)) == [otto_1, bob_1, alice_2, alice_1]
        assert await choices(world, "operator cancel", world.anna) == []
        assert await choices(world, "operator cancel", world.alice) == []
    finally:
        for job_id in offered_ids(await choices(world, "operator cancel", world.opal)):
            await slash(world.fake, "operator cancel", {"job": job_id}, world.opal)
        reply = await slash(world.fake, "operator resume", {}, world.opal)
        assert reply.content.startswith("Resumed"), reply.content
    assert await choices(world, "cancel", world.alice) == []  # cancelled jobs are no longer offered


async def test_a_job_leaves_one_channel_message(world: World) -> None:
    """The result or notice takes the status message's place: a cancelled job leaves its notice, a made one its
    video."""
    fake = world.fake
    await slash(fake, "operator pause", {}, world.opal)
    try:
        held = await queued_job(fake, world.bob, prompt="a held kite")
        await fake.wait_for(
            lambda r: (
                r.method == "POST"
                and r.path == f"/channels/{fake.channel_id}/messages"
                and f"i2v:cancel:{held}" in custom_ids(r.json)
            )
        )
        reply = await slash(fake, "cancel", {"job": held}, world.bob)
        assert "cancelled" in reply.content.lower(), reply.content
        await world.bot.wait_job(held, lambda j: j.delivered_at is not None, timeout=30)
    finally:
        await slash(fake, "operator resume", {}, world.opal)
    made = await queued_job(fake, world.bob, prompt="a kite climbs")
    result = await wait_result(fake, made)
    await world.bot.wait_job(made, lambda j: j.delivered_at is not None, timeout=30)
    await asyncio.sleep(1.0)  # a stray status edit or post would land by now
    (notice,) = channel_messages_of_job(fake, held)
    assert "was cancelled" in notice["content"] and not notice["attachments"], notice
    (video,) = channel_messages_of_job(fake, made)
    assert video["id"] == result.response["id"] and video["attachments"], video
