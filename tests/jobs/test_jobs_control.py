"""Pause holds and server bans (``jobs.control``) on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from jobs.admission import enqueue_job
from jobs.audit import record_action
from jobs.control import (
    BannedHere,
    ban_from_guild,
    pause_guild,
    pause_queue,
    pause_state,
    resume_guild,
    resume_queue,
    unban_from_guild,
)
from jobs.models import AuditLog, Job, JobStatus
from jobs.transitions import claim_next_job
from tests.jobs.storehelpers import GENEROUS, IMAGE, new_job
from tests.store_reads import list_actions

Sessions = async_sessionmaker[AsyncSession]
LEASE = 60.0
GUILD_A, GUILD_B = 111, 222


async def _enqueue(sessions: Sessions, user_id: int, guild_id: int) -> int:
    async with sessions() as s, s.begin():
        return (await enqueue_job(s, new_job(user_id, guild_id=guild_id), GENEROUS, image=IMAGE)).id


async def _claim(sessions: Sessions, worker: str = "w1") -> Job | None:
    async with sessions() as s, s.begin():
        return await claim_next_job(s, worker, lease_seconds=LEASE)


async def test_server_pause_holds_only_that_servers_jobs(db_sessionmaker: Sessions) -> None:
    async with db_sessionmaker() as s, s.begin():
        assert await pause_guild(s, GUILD_A, by=900, reason="tuning")
        assert not await pause_guild(s, GUILD_A, by=900)
    held = await _enqueue(db_sessionmaker, 1, GUILD_A)  # accepted while paused
    other = await _enqueue(db_sessionmaker, 2, GUILD_B)
    async with db_sessionmaker() as s:
        state = await pause_state(s, GUILD_A)
        assert (state.bot_paused, state.guild_paused, state.held) == (False, True, True)
        assert not (await pause_state(s, GUILD_B)).held
    claimed = await _claim(db_sessionmaker)
    assert claimed is not None and claimed.id == other  # B's job runs although A's is older
    assert await _claim(db_sessionmaker, "w2") is None  # A's stays held
    async with db_sessionmaker() as s, s.begin():
        assert await resume_guild(s, GUILD_A, by=900)
    claimed = await _claim(db_sessionmaker, "w2")
    assert claimed is not None and claimed.id == held
    async with db_sessionmaker() as s:
        rows = await list_actions(s, guild_id=GUILD_A)
    assert [(r.action, r.scope) for r in rows] == [
        ("resume_server", "server"),
        ("pause_server", "server"),
        ("pause_server", "server"),
    ]


async def test_bot_pause_holds_every_server_and_reports_its_reason(db_sessionmaker: Sessions) -> None:
    async with db_sessionmaker() as s, s.begin():
        assert await pause_queue(s, by=900, reason="GPU maintenance")
    job_a = await _enqueue(db_sessionmaker, 1, GUILD_A)
    async with db_sessionmaker() as s:
        state = await pause_state(s, GUILD_A)
    assert (state.bot_paused, state.bot_reason, state.guild_paused) == (True, "GPU maintenance", False)
    assert await _claim(db_sessionmaker) is None
    async with db_sessionmaker() as s, s.begin():
        assert await resume_queue(s, by=900)
    claimed = await _claim(db_sessionmaker)
    assert claimed is not None and claimed.id == job_a
    async with db_sessionmaker() as s:
        scopes = {r.action: r.scope for r in await list_actions(s)}
    assert scopes == {"pause_queue": "bot", "resume_queue": "bot"}


async def test_server_ban_refuses_there_cancels_queued_there_and_lifts(db_sessionmaker: Sessions) -> None:
    here = await _enqueue(db_sessionmaker, 7, GUILD_A)
    there = await _enqueue(db_sessionmaker, 7, GUILD_B)
    async with db_sessionmaker() as s, s.begin():
        newly, cancelled = await ban_from_guild(s, GUILD_A, 7, reason="spam", by=900)
    assert (newly, cancelled) == (True, [here])
    with pytest.raises(BannedHere, match="in this server: spam"):
        await _enqueue(db_sessionmaker, 7, GUILD_A)
    await _enqueue(db_sessionmaker, 7, GUILD_B)  # other servers are not affected
    async with db_sessionmaker() as s:
        statuses = {j.id: j.status for j in (await s.scalars(select(Job).where(Job.id.in_([here, there])))).all()}
    assert statuses == {here: JobStatus.CANCELLED, there: JobStatus.QUEUED}
    async with db_sessionmaker() as s, s.begin():
        again, _ = await ban_from_guild(s, GUILD_A, 7, reason="still spam", by=900)
        assert again is False
        assert await unban_from_guild(s, GUILD_A, 7, by=900)
        assert not await unban_from_guild(s, GUILD_A, 7, by=900)
    await _enqueue(db_sessionmaker, 7, GUILD_A)
    async with db_sessionmaker() as s:
        rows = await list_actions(s, guild_id=GUILD_A)
    assert [(r.action, r.scope, r.target_user_id) for r in rows] == [
        ("unban_from_server", "server", 7),
        ("ban_from_server", "server", 7),
        ("ban_from_server", "server", 7),
    ]


async def test_audit_scope_defaults_from_guild_and_is_checked(db_sessionmaker: Sessions) -> None:
    async with db_sessionmaker() as s, s.begin():
        bot_wide = await record_action(s, actor_id=1, action="x")
        server = await record_action(s, actor_id=1, action="y", guild_id=GUILD_A)
        explicit = await record_action(s, actor_id=1, action="z", guild_id=GUILD_A, scope="bot")
        with pytest.raises(ValueError, match="scope"):
            await record_action(s, actor_id=1, action="w", scope="everything")
    async with db_sessionmaker() as s:
        scopes = dict((await s.execute(select(AuditLog.action, AuditLog.scope))).all())
    assert (bot_wide.scope, server.scope, explicit.scope) == ("bot", "server", "bot")
    assert scopes == {"x": "bot", "y": "server", "z": "bot"}


async def test_a_servers_audit_page_leaves_out_bot_wide_and_other_servers_rows(db_sessionmaker: Sessions) -> None:
    from jobs.listings import audit_page

    async with db_sessionmaker() as s, s.begin():
        await record_action(s, actor_id=1, action="ban_user")
        await record_action(s, actor_id=2, action="set_guild_limits", guild_id=GUILD_A)
        await record_action(s, actor_id=3, action="set_guild_limits", guild_id=GUILD_B)
    async with db_sessionmaker() as s:
        own = await audit_page(s, guild_id=GUILD_A, with_bot_wide=False)
        with_bot = await audit_page(s, guild_id=GUILD_A)
    assert [r.actor_id for r in own.rows] == [2]
    assert sorted(r.actor_id or 0 for r in with_bot.rows) == [1, 2]
