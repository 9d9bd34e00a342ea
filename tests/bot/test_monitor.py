"""The job monitor against a real store, with Discord's side reduced to what a status message needs (the
end-to-end flows in test_bot_flows.py run the same code through the fake Discord server, where a race shows
up only now and then)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, cast

from bot.monitor import JobMonitor
from bot.requests import announce_queued, hold_notice
from bot.status import post_status_message
from generator.model_spaces import display_name
from jobs.admission import enqueue_job
from jobs.db import make_engine, make_sessionmaker
from jobs.queue import queue_position
from jobs.workers import record_download, register_worker
from tests.jobs.storehelpers import GENEROUS, IMAGE, new_job

if TYPE_CHECKING:
    from bot.app import I2VBot

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
        stand_in = SimpleNamespace(
            sessions=sessions,
            readers=sessions,
            monitor=None,
            supervisor=None,
            settings=SimpleNamespace(
                status_edit_interval=0.5,
                poll_interval=1.0,
                worker_dead_after=15.0,
                retention_days=30.0,
                retention_interval=3600.0,
                output_dir=Path("unused"),
            ),
            get_partial_messageable=lambda channel_id, guild_id=None: channel,
        )
        bot = cast("I2VBot", stand_in)  # a stand-in: only what these calls read
        monitor = JobMonitor(bot)
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
        stand_in.monitor = monitor
        stand_in.sessions = SimpleNamespace(begin=begin_then_monitor_pass)
        await post_status_message(bot, job, position=place.position, eta_seconds=place.eta_seconds)

        assert passes == [1]
        assert len(channel.sent) == 1 and "position **1**" in channel.sent[0]
        assert channel.edits == []  # the pass saw the message as already showing this state
    finally:
        await engine.dispose()


async def test_a_queued_jobs_status_says_its_model_is_downloading_instead_of_an_estimate(sqlite_url: str) -> None:
    engine = make_engine(sqlite_url)
    try:
        sessions = make_sessionmaker(engine)
        channel = _Channel()
        stand_in = SimpleNamespace(
            sessions=sessions,
            readers=sessions,
            monitor=None,
            supervisor=None,
            settings=SimpleNamespace(
                status_edit_interval=0.0,
                poll_interval=1.0,
                worker_dead_after=15.0,
                retention_days=30.0,
                retention_interval=3600.0,
                output_dir=Path("unused"),
            ),
            get_partial_messageable=lambda channel_id, guild_id=None: channel,
        )
        bot = cast("I2VBot", stand_in)  # a stand-in: only what these calls read
        monitor = JobMonitor(bot)
        stand_in.monitor = monitor
        async with sessions.begin() as session:
            job = await enqueue_job(session, new_job(5), GENEROUS, image=IMAGE)
            await register_worker(session, "gpu-0", host="gpu-box", pid=4321, model="x", loadable_models=[job.model])
            await record_download(
                session, "gpu-0", model=job.model, done_bytes=1_234_000_000, total_bytes=5_100_000_000
            )
        line = (
            f"⬇️ The {display_name(job.model)} model is downloading for its first use: 1.2 of 5.1 GB (24 %). "
            "This job starts once it has loaded."
        )
        # the request path: the requester is told, and the status message is posted without an estimate
        notice = await hold_notice(bot, job.guild_id, job.model)
        assert notice == line
        await announce_queued(bot, job, notice)
        assert channel.sent[0].endswith("⏳ Queued: position **1**.\n" + line)

        await monitor.tick()  # the monitor shows the same
        shown = channel.edits[-1] if channel.edits else channel.sent[0]
        assert "⏳ Queued: position **1**." in shown and "video expected" not in shown and line in shown

        async with sessions.begin() as session:
            await record_download(
                session, "gpu-0", model=job.model, done_bytes=2_600_000_000, total_bytes=5_100_000_000
            )
        await monitor.tick()
        assert "2.6 of 5.1 GB (51 %)" in channel.edits[-1]

        async with sessions.begin() as session:  # loaded: the download line goes
            await record_download(session, "gpu-0", model=None)
        await monitor.tick()
        assert "downloading" not in channel.edits[-1] and "position **1**" in channel.edits[-1]
    finally:
        await engine.dispose()
