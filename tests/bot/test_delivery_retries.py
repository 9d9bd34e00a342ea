"""Upload retries are bounded: the real delivery code and a real discord.py client against the fake Discord's
fault injection, over a migrated SQLite store.

discord.py retries a 500 by itself (five requests per call); the bot must not multiply that by retries of its
own. Its own retries (at most ``UPLOAD_RETRIES_MAX``) follow only what discord.py does not retry, a 503 or a
timed-out upload, and each one counts in ``i2v_upload_retries_total{reason}``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, cast

import discord
import pytest
import pytest_asyncio
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.delivery import DISCORD_PY_TRIES, UPLOAD_RETRIES_MAX, Delivery, DeliveryResult
from jobs.admission import enqueue_job
from jobs.db import make_engine, make_sessionmaker
from jobs.models import Job
from jobs.queue import find_job
from jobs.safety import UnsafePolicy
from jobs.transitions import claim_next_job, finish_job
from tests.fakediscord.client import running_client
from tests.fakediscord.records import RecordedRequest
from tests.fakediscord.server import FakeDiscord
from tests.jobs.storehelpers import GENEROUS, IMAGE, new_job
from web.metrics import UPLOAD_RETRIES, UPLOAD_RETRY_REASONS

if TYPE_CHECKING:
    from bot.app import I2VBot

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

VIDEO = b"\x00\x00\x00\x18ftypisom a stand-in MP4"
FAST_BACKOFF = (0.05,)  # seconds between own retries where nothing can land meanwhile


class DeliveringClient(discord.Client):
    """A discord.py client with what ``Delivery`` reads from the bot: its settings and the store's sessions."""

    def __init__(self, root: Path, sessions: async_sessionmaker[AsyncSession], upload_timeout: float) -> None:
        super().__init__(intents=discord.Intents.none(), guild_ready_timeout=0.05, chunk_guilds_at_startup=False)
        self.settings = SimpleNamespace(
            data_dir=root / "data",
            output_dir=root / "outputs",
            save_output_copy=False,
            upload_timeout=upload_timeout,
            unsafe_videos=UnsafePolicy.AGE_RESTRICTED,
            models=(),
        )
        self.sessions = sessions
        self.readers = sessions


def _delivery(client: DeliveringClient, backoff: tuple[float, ...]) -> Delivery:
    """The bot's delivery on this client, which has all that it reads of the bot."""
    return Delivery(cast("I2VBot", client), backoff=backoff)


@pytest_asyncio.fixture
async def store(sqlite_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = make_engine(sqlite_url)
    try:
        yield make_sessionmaker(engine)
    finally:
        await engine.dispose()


async def _succeeded_job(sessions: async_sessionmaker[AsyncSession], fake: FakeDiscord) -> Job:
    async with sessions.begin() as session:
        await enqueue_job(
            session, new_job(5, channel_id=fake.channel_id, guild_id=fake.guild.id), GENEROUS, image=IMAGE
        )
        job = await claim_next_job(session, "w", lease_seconds=60)
        assert job is not None
        assert await finish_job(session, job.id, job.attempt, worker_id="w", video=VIDEO, gpu_seconds=1.0)
    async with sessions() as session:
        found = await find_job(session, job.id)
    assert found is not None
    return found


def _retries() -> dict[str, float]:
    """This process's i2v_upload_retries_total by reason."""
    return {
        s.labels["reason"]: s.value
        for family in UPLOAD_RETRIES.collect()
        for s in family.samples
        if s.name.endswith("_total")
    }


def _uploads(fake: FakeDiscord, job_id: int) -> list[RecordedRequest]:
    """The requests that carried this job's video (every try, whatever the answer)."""
    return [
        r
        for r in fake.requests
        if r.method == "POST"
        and r.path == f"/channels/{fake.channel_id}/messages"
        and any(f.data == VIDEO for f in r.files)
        and f"i2v:info:{job_id}" in str(r.json)
    ]


def _notices(fake: FakeDiscord, job_id: int) -> list[str]:
    return [
        r.json["content"]
        for r in fake.requests
        if r.method == "POST"
        and r.status == 200
        and not r.files
        and r.path == f"/channels/{fake.channel_id}/messages"
        and f"job #{job_id}" in r.json["content"]
    ]


async def test_a_500_is_left_to_discord_py_and_not_retried_again(
    fake_discord: FakeDiscord, store: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    """Five 500s: discord.py makes its five requests (sleeping 1+3+5+7+9 s); the bot then gives up at once and
    tells the user, where it used to start four more rounds of five."""
    job = await _succeeded_job(store, fake_discord)
    fault = fake_discord.fail(
        status=500, method="POST", path=rf"^/channels/{fake_discord.channel_id}/messages$", times=DISCORD_PY_TRIES
    )
    before = _retries()
    async with running_client(DeliveringClient(tmp_path, store, upload_timeout=60.0), fake_discord) as client:
        result = await _delivery(client, FAST_BACKOFF).deliver(job)
    assert result is DeliveryResult.DELIVERED
    assert fault.hits == DISCORD_PY_TRIES == len(_uploads(fake_discord, job.id)), "requests for one upload"
    assert _retries() == before, "no retry of the bot's own on top of discord.py's"
    (notice,) = _notices(fake_discord, job.id)
    assert "could not be posted: Discord kept answering 500." in notice


async def test_503s_get_at_most_the_bounded_own_retries_each_counted(
    fake_discord: FakeDiscord, store: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    """discord.py raises a 503 at once: the bot tries UPLOAD_RETRIES_MAX more times, counts each, then tells the
    user; a 503 that clears in time is delivered on a retry."""
    path = rf"^/channels/{fake_discord.channel_id}/messages$"
    attempts = UPLOAD_RETRIES_MAX + 1
    async with running_client(DeliveringClient(tmp_path, store, upload_timeout=60.0), fake_discord) as client:
        failing = await _succeeded_job(store, fake_discord)
        fake_discord.fail(status=503, method="POST", path=path, times=attempts)
        before = _retries()
        assert await _delivery(client, FAST_BACKOFF).deliver(failing) is DeliveryResult.DELIVERED
        assert len(_uploads(fake_discord, failing.id)) == attempts
        after = _retries()
        assert after["server_error"] - before["server_error"] == UPLOAD_RETRIES_MAX
        assert {r: after[r] - before[r] for r in UPLOAD_RETRY_REASONS if r != "server_error"} == {
            "timeout": 0,
            "connection": 0,
        }
        (notice,) = _notices(fake_discord, failing.id)
        assert f"the upload failed {attempts} times." in notice

        recovering = await _succeeded_job(store, fake_discord)
        fake_discord.fail(status=503, method="POST", path=path, times=1)
        assert await _delivery(client, FAST_BACKOFF).deliver(recovering) is DeliveryResult.DELIVERED
        uploads = _uploads(fake_discord, recovering.id)
        assert [r.status for r in uploads] == [503, 200]
        assert _retries()["server_error"] - after["server_error"] == 1
        async with store() as session:
            delivered = await find_job(session, recovering.id)
        assert delivered is not None and delivered.result_message_id == int(uploads[-1].response["id"])


async def test_a_timed_out_upload_that_lands_is_found_not_posted_twice(
    fake_discord: FakeDiscord, store: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    """The upload's answer comes after UPLOAD_TIMEOUT_SECONDS, but the message lands: the retry counts as a timeout
    and starts by reading the channel, where it finds the message; nothing is uploaded twice."""
    job = await _succeeded_job(store, fake_discord)
    slow = fake_discord.slow(0.6, method="POST", path=rf"^/channels/{fake_discord.channel_id}/messages$")
    before = _retries()
    async with running_client(DeliveringClient(tmp_path, store, upload_timeout=0.3), fake_discord) as client:
        result = await _delivery(client, (1.0,)).deliver(job)
    assert result is DeliveryResult.DELIVERED and slow.hits == 1
    uploads = _uploads(fake_discord, job.id)
    assert len(uploads) == 1
    assert _retries()["timeout"] - before["timeout"] == 1
    async with store() as session:
        delivered = await find_job(session, job.id)
    assert delivered is not None and delivered.result_message_id == int(uploads[0].response["id"])
    assert _notices(fake_discord, job.id) == []
