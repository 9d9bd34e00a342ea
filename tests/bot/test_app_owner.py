"""The application's owner is the operator: the real ``python -m bot`` with no operator settings reads the owner (or
its team's admins and developers) from the fake Discord's ``GET /oauth2/applications/@me`` at start, names them in
its online line with the invite URL, records them in the store, and lets exactly them pause and resume bot-wide."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from sqlalchemy import select

from bot.channel_access import POST_PERMISSIONS
from bot.permissions import OPERATOR_REFUSAL
from jobs.models import QueueState
from jobs.web_sessions import app_operators
from tests.bot.harness import TOKEN, BotProcess, running_bot, slash
from tests.fakediscord.server import FakeDiscord

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

OPERATOR_SETTINGS = ("OPERATOR_USER_IDS", "OPERATOR_ROLE_IDS", "ADMIN_USER_IDS", "ADMIN_ROLE_IDS")


def _bot(fake: FakeDiscord, root: Path) -> BotProcess:
    bot = BotProcess(fake, root, extra_env={name: "" for name in OPERATOR_SETTINGS})
    return bot


async def _paused(bot: BotProcess) -> bool:
    return bool(await bot.read(lambda s: s.scalar(select(QueueState.paused))))


async def _can_pause_and_resume(fake: FakeDiscord, bot: BotProcess, member) -> None:
    paused = await slash(fake, "operator pause", {"reason": "driver update"}, member)
    assert "Paused on every server" in paused.content, paused
    assert await _paused(bot)
    resumed = await slash(fake, "operator resume", {}, member)
    assert not await _paused(bot), resumed


async def _refused(fake: FakeDiscord, bot: BotProcess, member) -> None:
    answer = await slash(fake, "operator pause", {}, member)
    assert answer.ephemeral and OPERATOR_REFUSAL in answer.content, answer
    assert not await _paused(bot)


async def test_the_owner_operates_a_bot_with_no_operator_settings(tmp_path: Path) -> None:
    fake = FakeDiscord(bot_token=TOKEN)
    stranger = fake.add_member(fake.guild.id, "stranger")
    await fake.start()
    bot = _bot(fake, tmp_path)
    async with running_bot(fake, bot):
        await _refused(fake, bot, stranger)
        await _refused(fake, bot, fake.admin)  # a server's owner is not the bot's operator
        await _can_pause_and_resume(fake, bot, fake.app_owner)
        assert await bot.read(app_operators) == {fake.app_owner.user_id}  # the page knows them too
        log = bot.log_path.read_text()
        online = next(line for line in log.splitlines() if "online as" in line)
        assert f"maker ({fake.app_owner.user_id}, the application's owner)" in online, online
        invite = re.search(r"invite: (\S+)", online)
        assert invite and invite.group(1).endswith(
            f"client_id={fake.application_id}&scope=bot+applications.commands&permissions={POST_PERMISSIONS.value}"
        )


async def test_a_teams_admins_and_developers_operate_it(tmp_path: Path) -> None:
    fake = FakeDiscord(bot_token=TOKEN)
    gid = fake.guild.id
    lead, dev, viewer, newcomer = (fake.add_member(gid, name) for name in ("lead", "dev", "viewer", "newcomer"))
    fake.set_team([(lead, "admin"), (dev, "developer"), (viewer, "read_only")], invited=[newcomer])
    await fake.start()
    bot = _bot(fake, tmp_path)
    async with running_bot(fake, bot):
        await _can_pause_and_resume(fake, bot, dev)
        await _can_pause_and_resume(fake, bot, lead)
        for member in (viewer, newcomer, fake.app_owner, fake.member):
            await _refused(fake, bot, member)
        assert await bot.read(app_operators) == {lead.user_id, dev.user_id}
        online = next(line for line in bot.log_path.read_text().splitlines() if "online as" in line)
        assert f"dev ({dev.user_id}, the application's team)" in online, online
