"""The real discord.py client against the fake: login, command sync, interactions and messages, end to end."""

from __future__ import annotations

import time
from pathlib import Path

import aiohttp
import discord
import pytest

from tests.fakediscord.client import FAKE_BOT_TOKEN, running_client
from tests.fakediscord.payloads import (
    MESSAGE_FLAG_EPHEMERAL,
    PERM_ADMINISTRATOR,
    PERM_MANAGE_GUILD,
    PERMS_ALL,
    PERMS_MEMBER,
)
from tests.fakediscord.plugin import fake_discord_server
from tests.fakediscord.sample_bot import SampleBot
from tests.fakediscord.server import FakeDiscord

THIS_FILE = Path(__file__)
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8


async def wait_seen(bot: SampleBot, kind: str, fake: FakeDiscord, timeout: float = 5.0) -> tuple:
    """The first ``bot.seen`` entry of ``kind`` (polling through the fake's change signal)."""
    return await fake.wait_until(
        lambda: next((s for s in bot.seen if s[0] == kind), None),
        timeout,
        lambda: f"bot never saw {kind!r}; saw {bot.seen}",
    )


async def test_fixture_starts_and_stops_in_under_a_second() -> None:
    started = time.monotonic()
    async with fake_discord_server() as fake:
        up = time.monotonic() - started
        # a client still on the gateway must not hold the shutdown up
        async with aiohttp.ClientSession() as session, session.ws_connect(fake.gateway_url) as ws:
            hello = await ws.receive_json()
            await ws.send_json({"op": 2, "d": {"token": "t", "intents": 0}})
            await fake.wait_until_connected()
            stopping = time.monotonic()
            await fake.stop()
            stop = time.monotonic() - stopping
    total = time.monotonic() - started
    assert hello["op"] == 10 and ws.closed
    assert up < 1.0 and stop < 1.0 and total < 1.0, (up, stop, total)


async def test_guild_command_sync_and_guild_scoped_interaction(fake_discord: FakeDiscord) -> None:
    guild = discord.Object(fake_discord.guild.id)

    class GuildBot(SampleBot):
        async def setup_hook(self) -> None:
            await super().setup_hook()
            self.tree.copy_global_to(guild=guild)
            self.tree.clear_commands(guild=None)
            await self.tree.sync()
            await self.tree.sync(guild=guild)

    async with running_client(GuildBot(), fake_discord) as bot:
        interaction = await fake_discord.inject_slash("admin pause")
        await fake_discord.wait_for(lambda r: r.path.endswith("/callback"))
    assert fake_discord.commands() == []
    names = {c["name"] for c in fake_discord.commands(fake_discord.guild.id)}
    assert names == {"animate", "admin", "Animate", "status", "wait"}
    assert all(c["guild_id"] == str(fake_discord.guild.id) for c in fake_discord.commands(fake_discord.guild.id))
    assert interaction.payload["data"]["guild_id"] == str(fake_discord.guild.id)
    assert ("admin pause",) in bot.seen


async def test_login_sync_and_ready(fake_discord: FakeDiscord) -> None:
    async with running_client(SampleBot(), fake_discord) as bot:
        assert bot.user is not None and bot.user.id == fake_discord.bot_user_id
        assert bot.application_id == fake_discord.application_id
        assert bot.get_guild(fake_discord.guild.id) is not None
        fetched = await bot.tree.fetch_commands()
    paths = [(r.method, r.path) for r in fake_discord.requests]
    assert paths[:3] == [
        ("GET", "/users/@me"),
        ("GET", "/oauth2/applications/@me"),
        ("PUT", f"/applications/{fake_discord.application_id}/commands"),
    ]
    assert all(r.headers["Authorization"] == f"Bot {FAKE_BOT_TOKEN}" for r in fake_discord.requests)
    synced = {(c["name"], c["type"]) for c in fake_discord.commands()}
    assert synced == {("animate", 1), ("admin", 1), ("Animate", 3), ("status", 1), ("wait", 1)}
    assert {c.name for c in fetched} == {"animate", "admin", "Animate", "status", "wait"}
    admin = fake_discord.find_command("admin")
    assert admin is not None and admin["description"] == "Admin" and admin["application_id"] == str(bot.application_id)
    assert [o["name"] for o in admin["options"]] == ["quota", "pause"]
    assert admin["default_member_permissions"] == "32"  # sent as an int, stored and returned as a string
    identify = next(f for f in fake_discord.gateway_frames if f.op == 2)
    assert identify.data["token"] == FAKE_BOT_TOKEN and identify.data["intents"] == discord.Intents.default().value


async def test_slash_attachment_defer_then_follow_up_with_file(fake_discord: FakeDiscord) -> None:
    image = fake_discord.add_attachment(PNG, "cat.png", width=64, height=64)
    async with running_client(SampleBot(), fake_discord) as bot:
        interaction = await fake_discord.inject_slash(
            "animate",
            {"image": image, "prompt": "a cat walks", "frames": 24, "guidance": 7, "loop": True},
            attachment_size_limit=25 * 1024 * 1024,
        )
        follow_up = await fake_discord.wait_for(
            lambda r: r.method == "POST" and r.path == f"/webhooks/{fake_discord.application_id}/{interaction.token}"
        )
    callback = next(r for r in fake_discord.requests if r.path.endswith("/callback"))
    assert callback.path == f"/interactions/{interaction.id}/{interaction.token}/callback"
    assert callback.query == {"with_response": "1"} and callback.json == {"type": 5}
    assert callback.status == 200 and callback.response["interaction"]["response_message_loading"] is True
    assert not callback.has_bot_auth and not follow_up.has_bot_auth
    download = next(r for r in fake_discord.requests if r.path.startswith("/cdn/"))
    assert download.status == 200 and download.time < follow_up.time
    edit = next(r for r in fake_discord.requests if r.method == "PATCH")
    assert edit.path.endswith("/messages/@original") and edit.json["content"] == "working... 50%"
    # the bot got the typed options, the upload limit and the member's permissions
    assert bot.seen[0] == ("animate", "cat.png", len(PNG), "a cat walks", 24, 7.0, True, 25 * 1024 * 1024, PERMS_MEMBER)
    # the follow-up: multipart, payload_json + files[0] with the exact bytes, and a button
    assert follow_up.is_multipart and follow_up.status == 200
    assert [(f.field, f.filename) for f in follow_up.files] == [("files[0]", "out.mp4")]
    assert follow_up.files[0].data == b"\x00\x00\x00\x18ftypisom" + PNG[::-1]
    assert follow_up.json["content"] == "done: a cat walks"
    assert follow_up.json["components"][0]["components"][0]["custom_id"] == "again:7"
    stored = fake_discord.messages[int(follow_up.response["id"])]
    assert stored["attachments"][0]["filename"] == "out.mp4"
    assert stored["attachments"][0]["content_type"] == "video/mp4"
    assert stored["attachments"][0]["size"] == len(follow_up.files[0].data)
    assert interaction.original_message_id is not None, "the deferred response created an original message"
    original = fake_discord.messages[interaction.original_message_id]
    assert original["content"] == "working... 50%" and original["id"] != stored["id"]


async def test_follow_up_right_after_defer_replaces_the_thinking_message(fake_discord: FakeDiscord) -> None:
    image = fake_discord.add_attachment(b"x" * 10, "a.png")
    message = fake_discord.add_message(content="look", attachments=[image])
    async with running_client(SampleBot(), fake_discord) as bot:
        interaction = await fake_discord.inject_message_command("Animate", message)
        follow_up = await fake_discord.wait_for(lambda r: r.path.startswith("/webhooks/"))
    assert bot.seen == [("menu", int(message["id"]), ["a.png"], [])]
    callback = next(r for r in fake_discord.requests if r.path.endswith("/callback"))
    assert callback.json == {"type": 5, "data": {"flags": MESSAGE_FLAG_EPHEMERAL}}
    assert follow_up.response["id"] == str(interaction.original_message_id)
    assert follow_up.response["content"] == "1 attachment(s)"
    assert follow_up.response["flags"] & MESSAGE_FLAG_EPHEMERAL


async def test_context_menu_sees_attachments_and_embeds(fake_discord: FakeDiscord) -> None:
    first, second = fake_discord.add_attachment(PNG, "one.png"), fake_discord.add_attachment(PNG, "two.jpg")
    message = fake_discord.add_message(content="", attachments=[first, second])
    message["embeds"] = [{"type": "rich", "title": "an embed"}]
    async with running_client(SampleBot(), fake_discord) as bot:
        await fake_discord.inject_message_command("Animate", message)
        await fake_discord.wait_for(lambda r: r.path.startswith("/webhooks/"))
    assert bot.seen == [("menu", int(message["id"]), ["one.png", "two.jpg"], ["an embed"])]


async def test_subcommand_group_with_member_option_and_admin_check(fake_discord: FakeDiscord) -> None:
    target = fake_discord.member
    async with running_client(SampleBot(), fake_discord) as bot:
        await fake_discord.inject_slash("admin quota set", {"user": target, "seconds": 120}, member=fake_discord.admin)
        granted = await fake_discord.wait_for(lambda r: r.path.endswith("/callback"))
        nobody = fake_discord.add_member(fake_discord.guild.id, "mallory", permissions=PERM_ADMINISTRATOR)
        fake_discord.set_member_permissions(nobody, 0)
        await fake_discord.inject_slash("admin quota set", {"user": target, "seconds": 1.5}, member=nobody)
        refused = await fake_discord.wait_for(lambda r: r.path.endswith("/callback"), after=len(fake_discord.requests))
        await fake_discord.inject_slash("admin pause")
        await fake_discord.wait_for(lambda r: r.path.endswith("/callback") and r.time > refused.time)
    assert bot.seen == [
        ("quota set", target.user_id, 120.0, True),
        ("quota set", target.user_id, 1.5, False),
        ("admin pause",),
    ]
    assert granted.json["type"] == 4 and granted.json["data"]["content"] == "Alice: 120s"
    assert refused.json["data"]["content"] == "admins only"
    assert refused.json["data"]["flags"] == MESSAGE_FLAG_EPHEMERAL


async def test_button_opens_modal_and_modal_submit_answers(fake_discord: FakeDiscord) -> None:
    image = fake_discord.add_attachment(PNG, "cat.png")
    async with running_client(SampleBot(), fake_discord) as bot:
        await fake_discord.inject_slash("animate", {"image": image, "prompt": "p"})
        follow_up = await fake_discord.wait_for(lambda r: r.path.startswith("/webhooks/") and r.method == "POST")
        click = await fake_discord.inject_component("again:7", int(follow_up.response["id"]), member=fake_discord.admin)
        modal = await fake_discord.wait_for(lambda r: r.path == f"/interactions/{click.id}/{click.token}/callback")
        submit = await fake_discord.inject_modal_submit(
            "prompt-modal:7", {"prompt": "a dog"}, message=int(follow_up.response["id"])
        )
        answer = await fake_discord.wait_for(lambda r: r.path == f"/interactions/{submit.id}/{submit.token}/callback")
    assert modal.json["type"] == 9 and modal.json["data"]["custom_id"] == "prompt-modal:7"
    assert click.modal is not None and click.modal["title"] == "New prompt"
    assert ("button", 7, fake_discord.admin.user_id) in bot.seen and ("modal", 7, "a dog") in bot.seen
    assert answer.json["type"] == 4 and answer.json["data"]["content"] == "re-rolling 7: a dog"


async def test_component_update_and_deferred_update_then_delete(fake_discord: FakeDiscord) -> None:
    async with running_client(SampleBot(), fake_discord) as bot:
        await fake_discord.inject_slash("status")
        sent = await fake_discord.wait_for(lambda r: r.path.endswith("/callback"))
        message_id = int(sent.response["resource"]["message"]["id"])
        await fake_discord.inject_component("refresh", message_id)
        update = await fake_discord.wait_for(lambda r: r.path.endswith("/callback") and r.json["type"] == 7)
        await fake_discord.inject_component("hide", message_id)
        deleted = await fake_discord.wait_for(lambda r: r.method == "DELETE")
    assert ("refresh", message_id) in bot.seen and ("hide",) in bot.seen
    assert update.response["resource"]["message"]["content"] == "status v2"
    assert any(r.json == {"type": 6} for r in fake_discord.requests if r.path.endswith("/callback"))
    assert deleted.path.endswith("/messages/@original") and deleted.status == 204
    assert message_id not in fake_discord.messages


async def test_second_callback_is_refused_like_discord(fake_discord: FakeDiscord) -> None:
    async with running_client(SampleBot(), fake_discord) as bot:
        interaction = await fake_discord.inject_slash("admin pause")
        await fake_discord.wait_for(lambda r: r.path.endswith("/callback"))
        with pytest.raises(discord.HTTPException) as raised:
            await bot.http.request(
                discord.http.Route("POST", "/interactions/{i}/{t}/callback", i=interaction.id, t=interaction.token),
                json={"type": 4, "data": {"content": "again"}},
            )
    assert raised.value.status == 400 and raised.value.code == 40060


async def test_mention_reply_without_message_content_intent(fake_discord: FakeDiscord) -> None:
    image = fake_discord.add_attachment(PNG, "orig.png")
    original = fake_discord.add_message(author=fake_discord.admin, content="mine", attachments=[image])
    async with running_client(SampleBot(), fake_discord) as bot:
        assert bot.user is not None
        bot_member = fake_discord.bot_member
        await fake_discord.inject_message(
            f"{bot_member.mention} animate this", mentions=[bot_member], reply_to=original
        )
        await fake_discord.inject_message("chatter", attachments=[fake_discord.add_attachment(PNG, "c.png")])
        await wait_seen(bot, "message", fake_discord)
        await fake_discord.wait_until(lambda: len(bot.seen) == 2, 5.0, lambda: str(bot.seen))
    mention, chatter = bot.seen
    # the mention is visible, the replied-to message is blanked (no Message Content intent), chatter is blanked
    assert mention == ("message", f"<@{fake_discord.bot_user_id}> animate this", [], int(original["id"]), [], True)
    assert chatter == ("message", "", [], None, None, False)


async def test_mention_reply_with_message_content_intent(fake_discord: FakeDiscord) -> None:
    image = fake_discord.add_attachment(PNG, "orig.png")
    original = fake_discord.add_message(author=fake_discord.admin, content="mine", attachments=[image])
    intents = discord.Intents.default()
    intents.message_content = True
    async with running_client(SampleBot(intents=intents), fake_discord) as bot:
        await fake_discord.inject_message(
            f"{fake_discord.bot_member.mention} go", mentions=[fake_discord.bot_member], reply_to=original
        )
        seen = await wait_seen(bot, "message", fake_discord)
    assert seen[3:] == (int(original["id"]), ["orig.png"], True)


async def test_channel_messages_with_files_edit_get_delete_react_type(fake_discord: FakeDiscord) -> None:
    async with running_client(SampleBot(), fake_discord) as bot:
        channel = bot.get_channel(fake_discord.channel_id)
        assert isinstance(channel, discord.TextChannel)
        async with channel.typing():
            pass
        sent = await channel.send("hello", file=discord.File(__file__, filename="t.py"))
        fetched = await channel.fetch_message(sent.id)
        edited = await sent.edit(
            content="hello again", attachments=[*sent.attachments, discord.File(__file__, filename="u.py")]
        )
        await edited.add_reaction("\N{WHITE HEAVY CHECK MARK}")
        reply = await channel.send("re", reference=fetched)
        await edited.delete()
        with pytest.raises(discord.NotFound) as missing:
            await channel.fetch_message(sent.id)
        with pytest.raises(discord.HTTPException) as dangling:
            await channel.send("re", reference=fetched)
    assert fetched.attachments[0].filename == "t.py"
    assert fetched.attachments[0].size == len(THIS_FILE.read_bytes())
    assert [a.filename for a in edited.attachments] == ["t.py", "u.py"] and edited.content == "hello again"
    assert missing.value.code == 10008 and dangling.value.code == 50035
    assert reply.reference is not None and reply.reference.message_id == sent.id
    calls = [(r.method, r.path, r.status) for r in fake_discord.requests]
    assert ("POST", f"/channels/{fake_discord.channel_id}/typing", 204) in calls
    create = next(r for r in fake_discord.requests if r.method == "POST" and r.path.endswith("/messages"))
    assert create.files[0].data == THIS_FILE.read_bytes() and create.json["content"] == "hello"
    react = next(r for r in fake_discord.requests if "/reactions/" in r.path)
    assert react.method == "PUT" and react.status == 204


async def test_unknown_route_is_a_loud_404(fake_discord: FakeDiscord) -> None:
    async with running_client(SampleBot(), fake_discord) as bot:
        with pytest.raises(discord.NotFound) as raised:
            await bot.http.request(discord.http.Route("GET", "/guilds/{g}/bans", g=fake_discord.guild.id))
    assert f"no route for GET /api/v10/guilds/{fake_discord.guild.id}/bans" in str(raised.value)


async def test_upload_over_the_interaction_limit_is_413(fake_discord: FakeDiscord) -> None:
    image = fake_discord.add_attachment(PNG, "cat.png")
    async with running_client(SampleBot(), fake_discord):
        await fake_discord.inject_slash("animate", {"image": image, "prompt": "p"}, attachment_size_limit=100)
        refused = await fake_discord.wait_for(lambda r: r.path.startswith("/webhooks/") and r.method == "POST")
    assert refused.status == 413 and refused.response["code"] == 40005


async def test_direct_message_to_a_member(fake_discord: FakeDiscord) -> None:
    async with running_client(SampleBot(), fake_discord) as bot:
        user = await bot.fetch_user(fake_discord.member.user_id)
        sent = await user.send("your video is ready")
    dm_channel = fake_discord.channels[sent.channel.id]
    assert dm_channel["type"] == 1 and dm_channel["recipients"][0]["id"] == str(fake_discord.member.user_id)
    assert fake_discord.channel_messages(sent.channel.id)[0]["content"] == "your video is ready"
    assert user.name == "alice"


async def test_member_permissions_follow_roles_and_overrides(fake_discord: FakeDiscord) -> None:
    guild_id = fake_discord.guild.id
    managers = fake_discord.add_role(guild_id, "managers", permissions=PERM_MANAGE_GUILD)
    manager = fake_discord.add_member(guild_id, "meg", roles=[managers])
    muted = fake_discord.add_member(guild_id, "mute", roles=[fake_discord.admin_role_id], permissions=0)
    image = fake_discord.add_attachment(PNG, "cat.png")
    async with running_client(SampleBot(), fake_discord) as bot:
        for member in (manager, fake_discord.admin, muted):
            await fake_discord.inject_slash("animate", {"image": image, "prompt": member.username}, member=member)
            name = member.username

            def seen_prompt(name: str = name) -> bool | None:
                return any(s[3] == name for s in bot.seen) or None

            await fake_discord.wait_until(seen_prompt, what=name)
        guild = bot.get_guild(guild_id)
        assert guild is not None
        admin_role = guild.get_role(fake_discord.admin_role_id)
        assert admin_role is not None and admin_role.permissions.administrator
        assert guild.owner_id == fake_discord.admin.user_id
    by_name = {s[3]: s[8] for s in bot.seen}
    assert by_name["meg"] == PERMS_MEMBER | PERM_MANAGE_GUILD
    assert by_name["root"] == PERMS_ALL
    assert by_name["mute"] == 0
