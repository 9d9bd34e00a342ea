"""Each fault the fake can inject, exercised against the real discord.py client."""

from __future__ import annotations

import time
from collections.abc import Callable

import discord
import pytest

from tests.fakediscord.client import running_client
from tests.fakediscord.records import RecordedRequest
from tests.fakediscord.sample_bot import SampleBot
from tests.fakediscord.server import FakeDiscord

CHANNEL_MESSAGES = r"^/channels/\d+/messages$"


def is_post_to(path_end: str) -> Callable[[RecordedRequest], bool]:
    """Predicate: a POST whose path ends with ``path_end``."""
    return lambda r: r.method == "POST" and r.path.endswith(path_end)


def posts(fake: FakeDiscord, path_end: str) -> list[RecordedRequest]:
    """All POSTs whose path ends with ``path_end``, in order."""
    return [r for r in fake.requests if r.method == "POST" and r.path.endswith(path_end)]


async def test_429_is_retried_after_retry_after(fake_discord: FakeDiscord) -> None:
    fault = fake_discord.rate_limit(method="POST", path=CHANNEL_MESSAGES, retry_after=0.3)
    async with running_client(SampleBot(), fake_discord) as bot:
        channel = bot.get_channel(fake_discord.channel_id)
        assert isinstance(channel, discord.TextChannel)
        started = time.monotonic()
        sent = await channel.send("after a rate limit")
        elapsed = time.monotonic() - started
    limited, ok = posts(fake_discord, "/messages")
    assert fault.hits == 1 and elapsed >= 0.3
    assert limited.status == 429 and limited.fault == "rate_limit" and ok.status == 200
    assert limited.response == {"message": "You are being rate limited.", "retry_after": 0.3, "global": False}
    assert ok.time - limited.time >= 0.3
    assert sent.id == int(ok.response["id"]) and sent.content == "after a rate limit"


async def test_global_429_on_a_webhook_follow_up_is_retried(fake_discord: FakeDiscord) -> None:
    image = fake_discord.add_attachment(b"\x89PNG" * 10, "a.png")
    fake_discord.rate_limit(method="POST", path=r"^/webhooks/", retry_after=0.2, is_global=True)
    async with running_client(SampleBot(), fake_discord):
        await fake_discord.inject_slash("animate", {"image": image, "prompt": "p"})
        delivered = await fake_discord.wait_for(
            lambda r: r.path.startswith("/webhooks/") and r.status == 200 and r.method == "POST"
        )
    limited = next(r for r in fake_discord.requests if r.status == 429)
    assert limited.response["global"] is True and delivered.time - limited.time >= 0.2
    assert delivered.files[0].filename == "out.mp4"


async def test_500_is_retried_and_503_surfaces(fake_discord: FakeDiscord) -> None:
    fake_discord.fail(status=500, method="POST", path=CHANNEL_MESSAGES)
    async with running_client(SampleBot(), fake_discord) as bot:
        channel = bot.get_channel(fake_discord.channel_id)
        assert isinstance(channel, discord.TextChannel)
        sent = await channel.send("after a 500")
        fake_discord.fail(status=503, method="POST", path=CHANNEL_MESSAGES, message="upstream down")
        with pytest.raises(discord.DiscordServerError) as raised:
            await channel.send("into a 503")
    assert [r.status for r in posts(fake_discord, "/messages")] == [500, 200, 503]
    assert sent.content == "after a 500" and raised.value.status == 503 and "upstream down" in str(raised.value)


async def test_5xx_on_a_webhook_edit_is_retried(fake_discord: FakeDiscord) -> None:
    image = fake_discord.add_attachment(b"\x89PNG" * 10, "a.png")
    fake_discord.fail(status=502, method="PATCH", path=r"/messages/@original$")
    async with running_client(SampleBot(), fake_discord):
        await fake_discord.inject_slash("animate", {"image": image, "prompt": "p"})
        await fake_discord.wait_for(lambda r: r.method == "POST" and r.path.startswith("/webhooks/"))
    assert [r.status for r in fake_discord.requests if r.method == "PATCH"] == [502, 200]


async def test_expired_interaction_token_is_401_50027_and_the_channel_still_works(fake_discord: FakeDiscord) -> None:
    fake_discord.expire_tokens_after(0.2)
    async with running_client(SampleBot(), fake_discord) as bot:
        interaction = await fake_discord.inject_slash("wait", {"seconds": 0.4})
        fallback = await fake_discord.wait_for(is_post_to("/messages"))
    assert ("late-error", 401, 50027) in bot.seen
    rejected = next(
        r for r in fake_discord.requests if r.path == f"/webhooks/{fake_discord.application_id}/{interaction.token}"
    )
    assert rejected.status == 401 and rejected.response == {"message": "Invalid Webhook Token", "code": 50027}
    assert fallback.has_bot_auth and fallback.status == 200 and fallback.json["content"].startswith("late result")


async def test_token_still_valid_before_the_lifetime(fake_discord: FakeDiscord) -> None:
    fake_discord.expire_tokens_after(5.0)
    async with running_client(SampleBot(), fake_discord) as bot:
        await fake_discord.inject_slash("wait", {"seconds": 0.0})
        await fake_discord.wait_until(lambda: ("late-ok",) in bot.seen or None, what="late-ok")


async def test_slow_response_delays_the_client(fake_discord: FakeDiscord) -> None:
    fault = fake_discord.slow(0.5, method="POST", path=CHANNEL_MESSAGES)
    async with running_client(SampleBot(), fake_discord) as bot:
        channel = bot.get_channel(fake_discord.channel_id)
        assert isinstance(channel, discord.TextChannel)
        started = time.monotonic()
        await channel.send("slowly")
        elapsed = time.monotonic() - started
    assert fault.hits == 1 and 0.5 <= elapsed < 2.0
    assert [r.status for r in posts(fake_discord, "/messages")] == [200]


async def test_exhausted_bucket_makes_discord_py_wait(fake_discord: FakeDiscord) -> None:
    fake_discord.exhaust_bucket(reset_after=0.4, method="POST", path=CHANNEL_MESSAGES)
    async with running_client(SampleBot(), fake_discord) as bot:
        channel = bot.get_channel(fake_discord.channel_id)
        assert isinstance(channel, discord.TextChannel)
        await channel.send("one")
        await channel.send("two")
    first, second = posts(fake_discord, "/messages")
    assert first.fault == "exhaust" and second.time - first.time >= 0.35


async def test_callback_after_the_deadline_is_unknown_interaction(fake_discord: FakeDiscord) -> None:
    fake_discord.callback_deadline = 0.0
    async with running_client(SampleBot(), fake_discord):
        await fake_discord.inject_slash("admin pause")
        late = await fake_discord.wait_for(lambda r: r.path.endswith("/callback"))
    assert late.status == 404 and late.response["code"] == 10062


async def test_reconnect_resumes_and_events_still_arrive(fake_discord: FakeDiscord) -> None:
    intents = discord.Intents.default()
    intents.message_content = True
    async with running_client(SampleBot(intents=intents), fake_discord) as bot:
        await fake_discord.gateway_reconnect()
        resume = await fake_discord.wait_for_gateway(lambda f: f.op == 6)
        await fake_discord.inject_slash("admin pause")
        await fake_discord.wait_for(lambda r: r.path.endswith("/callback"))
        # an event sent while the bot is away is replayed when it resumes
        await fake_discord.gateway_reconnect(wait=False)
        await fake_discord.inject_message("sent while away", queue=True)
        await fake_discord.wait_until(lambda: fake_discord.resume_count == 2 or None, what="second RESUME")
        await fake_discord.wait_until(
            lambda: any(s[:2] == ("message", "sent while away") for s in bot.seen), what="replayed MESSAGE_CREATE"
        )
    assert resume.connection == 2 and resume.data["session_id"] and resume.data["seq"] >= 2
    assert fake_discord.identify_count == 1 and fake_discord.connections == 3
    assert bot.resumed_count == 2 and bot.ready_count == 1 and ("admin pause",) in bot.seen


async def test_server_side_close_resumes(fake_discord: FakeDiscord) -> None:
    async with running_client(SampleBot(), fake_discord) as bot:
        await fake_discord.gateway_drop(code=4000)
        await fake_discord.inject_slash("admin pause")
        await fake_discord.wait_for(lambda r: r.path.endswith("/callback"))
    assert fake_discord.resume_count == 1 and ("admin pause",) in bot.seen


async def test_invalid_session_makes_the_client_identify_again(fake_discord: FakeDiscord) -> None:
    async with running_client(SampleBot(), fake_discord) as bot:
        first_session = next(f for f in fake_discord.gateway_frames if f.op == 2)
        await fake_discord.gateway_invalid_session(resumable=False)
        await fake_discord.wait_until(lambda: bot.ready_count == 2 or None, what="second on_ready")
        await fake_discord.inject_slash("admin pause")
        await fake_discord.wait_for(lambda r: r.path.endswith("/callback"))
    identifies = [f for f in fake_discord.gateway_frames if f.op == 2]
    assert [f.connection for f in identifies] == [first_session.connection, 2]
    assert fake_discord.resume_count == 0 and ("admin pause",) in bot.seen


async def test_resumable_invalid_session_resumes(fake_discord: FakeDiscord) -> None:
    async with running_client(SampleBot(), fake_discord) as bot:
        await fake_discord.gateway_invalid_session(resumable=True)
    assert fake_discord.identify_count == 1 and fake_discord.resume_count == 1 and bot.resumed_count == 1


async def test_wrong_bot_token_fails_login() -> None:
    async with FakeDiscord(bot_token="the-right-one") as fake:
        with pytest.raises(discord.LoginFailure):
            async with running_client(SampleBot(), fake, token="a-wrong-one"):
                pass
        assert fake.requests[0].path == "/users/@me" and fake.requests[0].status == 401


async def test_cdn_fault_reaches_the_attachment_download(fake_discord: FakeDiscord) -> None:
    image = fake_discord.add_attachment(b"bytes", "gone.png")
    fake_discord.fail(status=404, path=r"^/cdn/", message="expired attachment link")
    async with running_client(SampleBot(), fake_discord) as bot:
        with pytest.raises(discord.NotFound):
            await bot.http.get_from_cdn(image.url)
        assert await bot.http.get_from_cdn(image.url) == b"bytes"
    assert [(r.path, r.status) for r in fake_discord.requests if r.path.startswith("/cdn/")] == [
        (f"/cdn/attachments/{image.id}/gone.png", 404),
        (f"/cdn/attachments/{image.id}/gone.png", 200),
    ]
