"""The bot's permissions per channel, as Discord computes them: the fake's ``app_permissions`` agree with
discord.py's own resolution from the same roles and overwrites, threads take their parent's overwrites and check
Send Messages in Threads, and the channel routes refuse what the bot may not do there (403 / 50013, 50001; 404 for
a deleted channel)."""

from __future__ import annotations

import io

import discord
import pytest

from tests.fakediscord.client import running_client
from tests.fakediscord.payloads import (
    PERM_ATTACH_FILES,
    PERM_EMBED_LINKS,
    PERM_READ_MESSAGE_HISTORY,
    PERM_SEND_MESSAGES,
    PERM_SEND_MESSAGES_IN_THREADS,
    PERM_VIEW_CHANNEL,
    PERMS_BOT_ROLE,
)
from tests.fakediscord.sample_bot import SampleBot
from tests.fakediscord.server import FakeDiscord


def test_overwrites_apply_in_discords_order(fake_discord: FakeDiscord) -> None:
    fake = fake_discord
    guild = fake.guild
    channel = fake.channel_id
    assert fake.bot_permissions(channel) == PERMS_BOT_ROLE  # no overwrites: the role's permissions
    fake.overwrite(channel, guild.id, deny=PERM_VIEW_CHANNEL)  # @everyone may not see it...
    assert fake.bot_permissions(channel) == 0  # ...and without View Channel nothing else counts
    fake.overwrite(channel, guild.bot_role_id, allow=PERM_VIEW_CHANNEL, deny=PERM_ATTACH_FILES)  # role: back in
    have = fake.bot_permissions(channel)
    assert have & PERM_VIEW_CHANNEL and have & PERM_SEND_MESSAGES and not have & PERM_ATTACH_FILES
    fake.overwrite(channel, fake.bot_member, allow=PERM_ATTACH_FILES)  # the member's own overwrite wins
    assert fake.bot_permissions(channel) & PERM_ATTACH_FILES
    fake.overwrite(channel, fake.bot_member, deny=PERM_SEND_MESSAGES)  # no Send: attachments and embeds go too
    have = fake.bot_permissions(channel)
    assert not have & (PERM_SEND_MESSAGES | PERM_ATTACH_FILES | PERM_EMBED_LINKS) and have & PERM_VIEW_CHANNEL


def test_a_thread_takes_its_parents_overwrites_and_checks_send_in_threads(fake_discord: FakeDiscord) -> None:
    fake = fake_discord
    forum = fake.add_channel(fake.guild.id, "help", forum=True)
    post = fake.add_thread(int(forum["id"]), "my question")
    assert post["type"] == 11 and post["parent_id"] == forum["id"]
    fake.overwrite(int(forum["id"]), fake.guild.bot_role_id, deny=PERM_SEND_MESSAGES_IN_THREADS)
    have = fake.bot_permissions(int(post["id"]))
    assert not have & PERM_SEND_MESSAGES_IN_THREADS and not have & PERM_ATTACH_FILES
    assert have & PERM_READ_MESSAGE_HISTORY
    with pytest.raises(ValueError):
        fake.overwrite(int(post["id"]), fake.guild.id, deny=PERM_VIEW_CHANNEL)  # threads have no overwrites


async def test_app_permissions_agree_with_discord_py(fake_discord: FakeDiscord) -> None:
    fake = fake_discord
    guild = fake.guild
    plain = fake.channel_id
    no_files = int(fake.add_channel(guild.id, "no-files")["id"])
    fake.overwrite(no_files, guild.bot_role_id, deny=PERM_ATTACH_FILES)
    hidden = int(fake.add_channel(guild.id, "hidden")["id"])
    fake.overwrite(hidden, guild.id, deny=PERM_VIEW_CHANNEL)
    fake.overwrite(hidden, fake.bot_member, allow=PERM_VIEW_CHANNEL, deny=PERM_READ_MESSAGE_HISTORY)
    muted = int(fake.add_channel(guild.id, "muted")["id"])
    fake.overwrite(muted, guild.bot_role_id, deny=PERM_SEND_MESSAGES_IN_THREADS)
    thread = int(fake.add_thread(muted, "side talk")["id"])
    # discord.py also drops voice permissions in a text channel; compare everything else
    text_bits = discord.Permissions.all().value & ~discord.Permissions.voice().value
    async with running_client(SampleBot(), fake) as bot:
        cached = bot.get_guild(guild.id)
        assert cached is not None and cached.me is not None
        for channel_id in (plain, no_files, hidden, muted, thread):
            channel = cached.get_channel_or_thread(channel_id)
            assert channel is not None, channel_id
            expected = channel.permissions_for(cached.me).value & text_bits
            assert fake.bot_permissions(channel_id) & text_bits == expected, channel
            interaction = await fake.inject_slash("animate", {}, channel_id=channel_id)
            assert int(interaction.payload["app_permissions"]) & text_bits == expected


async def test_channel_routes_refuse_what_the_bot_may_not_do(fake_discord: FakeDiscord) -> None:
    fake = fake_discord
    guild = fake.guild
    no_files = int(fake.add_channel(guild.id, "no-files")["id"])
    fake.overwrite(no_files, guild.bot_role_id, deny=PERM_ATTACH_FILES)
    thread = int(fake.add_thread(fake.channel_id, "side talk")["id"])
    async with running_client(SampleBot(), fake) as bot:
        text_only = bot.get_partial_messageable(no_files, guild_id=guild.id)
        await text_only.send("words are fine")
        with pytest.raises(discord.Forbidden) as refused:
            await text_only.send("a file is not", file=discord.File(io.BytesIO(b"x"), "x.txt"))
        assert refused.value.code == 50013
        await fake.set_overwrite(fake.channel_id, guild.bot_role_id, deny=PERM_SEND_MESSAGES_IN_THREADS)
        in_thread = bot.get_partial_messageable(thread, guild_id=guild.id)
        with pytest.raises(discord.Forbidden) as refused:
            await in_thread.send("hello")
        assert refused.value.code == 50013
        await bot.get_partial_messageable(fake.channel_id, guild_id=guild.id).send("the parent still takes it")
        await fake.delete_channel(no_files)
        with pytest.raises(discord.NotFound) as gone:
            await text_only.send("anyone?")
        assert gone.value.code == 10003
