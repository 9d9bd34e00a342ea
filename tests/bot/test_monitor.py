"""The job monitor against a real store, with Discord's side reduced to what a status message needs (the
end-to-end flows in test_bot_flows.py run the same code through the fake Discord server, where a race shows
up only now and then)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from bot.monitor import JobMonitor
from bot.status import post_status_message
from jobs.admission import enqueue_job
from jobs.db import make_engine, make_sessionmaker
from jobs.queue import queue_position
from tests.jobs.storehelpers import GENEROUS, IMAGE, new_job

STATUS_MESSAGE_ID = 900


class _Channel:
    """A channel that records what is sent to it and every edit of the message it returns."""

    def __init__(self) -> None:
        self.sent: list[str] = []
        self.edits: list[str] = []

    async def send(self, content: str, **_: Any) -> SimpleNamespace:
        self.sent.append(content)
        return SimpleNamespace(id=STATUS_MESSAGE_ID)

    def get_partial_message(self, message_id: int) -> SimpleNamespace:
        assert message_id == STATUS_MESSAGE_ID

        async def edit(*, content: str, **_: Any) -> None:
            self.edits.append(content)

        return SimpleNamespace(edit=edit)


async def test_a_monitor_pass_right_after_the_status_message_is_stored_does_not_resend_it(sqlite_url: str) -> None:
    """The monitor edits every pending job whose status message id is stored. If it has not yet been told what
    the new message shows when a pass lands just after the id is committed, it sends the same text again
    (and sooner than the edit interval)."""
    engine = make_engine(sqlite_url)
    try:
        sessions = make_sessionmaker(engine)
        channel = _Channel()
        bot = SimpleNamespace(
            sessions=sessions, readers=sessions, monitor=None, supervisor=None,
            settings=SimpleNamespace(status_edit_interval=0.5, poll_interval=1.0, worker_dead_after=15.0,
                                     retention_days=30.0, retention_interval=3600.0, output_dir=Path("unused")),
            get_partial_messageable=lambda channel_id, guild_id=None: channel,
        )
        monitor = JobMonitor(bot)  # type: ignore[arg-type]
        passes: list[int] = []

        @contextlib.asynccontextmanager
        async def begin_then_monitor_pass() -> AsyncIterator[Any]:
            async with sessions.begin() as session:
                yield session
            if not passes:  # the first transaction to end is the one storing the message id
                passes.append(1)
                await monitor.tick()

        async with sessions.begin() as session:
            job = await enqueue_job(session, new_job(5), GENEROUS, image=IMAGE)
        async with sessions() as session:
            place = await queue_position(session, job.id)
        bot.monitor = monitor
        bot.sessions = SimpleNamespace(begin=begin_then_monitor_pass)
        await post_status_message(bot, job, position=place.position, eta_seconds=place.eta_seconds)  # type: ignore[arg-type]

        assert passes == [1]
        assert len(channel.sent) == 1 and "position **1**" in channel.sent[0]
        assert channel.edits == []  # the pass saw the message as already showing this state
    finally:
        await engine.dispose()


async def test_retention_pass_prunes_old_bytes_and_their_disk_copies_only(sqlite_url: str, tmp_path: Path) -> None:
    """The monitor's retention pass: jobs finished before RETENTION_DAYS lose their stored image and video and
    the bot's disk copy; a recent job keeps all three; the rows stay."""
    from datetime import timedelta

    from bot.delivery import output_filename
    from jobs.blobs import DATABASE_BLOBS
    from jobs.models import utcnow
    from jobs.transitions import claim_next_job, finish_job, mark_delivered
    from tests.store_reads import kept_bytes_of_user

    engine = make_engine(sqlite_url)
    outputs = tmp_path / "outputs"
    outputs.mkdir()
    try:
        sessions = make_sessionmaker(engine)
        now = utcnow()
        ids = []
        for user, age_days in ((1, 40.0), (2, 1.0)):
            finished = now - timedelta(days=age_days)
            async with sessions.begin() as session:
                job = await enqueue_job(session, new_job(user), GENEROUS, image=IMAGE, now=finished)
                claimed = await claim_next_job(session, "w1", lease_seconds=60, now=finished)
                assert claimed is not None and claimed.id == job.id
                assert await finish_job(session, job.id, 1, worker_id="w1", video=b"mp4", gpu_seconds=1.0,
                                        now=finished)
                copy = outputs / output_filename(job.id, finished)
                copy.write_bytes(b"mp4")
                assert await mark_delivered(session, job.id, result_message_id=9, output_path=str(copy), now=finished)
            ids.append(job.id)
        bot = SimpleNamespace(sessions=sessions, readers=sessions, monitor=None, settings=SimpleNamespace(
            retention_days=30.0, output_dir=outputs))
        monitor = JobMonitor(bot)  # type: ignore[arg-type]
        assert await monitor.prune() == [ids[0]]
        assert await monitor.prune() == []
        async with sessions() as session:
            assert await kept_bytes_of_user(session, 1) == (0, 0)
            assert await kept_bytes_of_user(session, 2) == (1, 1)
            assert await DATABASE_BLOBS.read_input(session, new_job(2).input_sha256) == IMAGE
        assert sorted(p.name for p in outputs.iterdir()) == [output_filename(ids[1], now - timedelta(days=1))]
    finally:
        await engine.dispose()
