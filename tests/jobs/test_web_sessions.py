"""Sign-in links and web sessions in the store: single use, expiry, sign-out, only hashes kept."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from jobs.models import WebSession, WebSignInLink, utcnow
from jobs.web_sessions import (
    LOCAL_OPERATOR_ID,
    FirstOperator,
    app_operators,
    create_link,
    current_roles,
    end_session,
    find_session,
    first_operator,
    latest_roles,
    record_app_operators,
    record_roles,
    redeem_link,
    sessions_to_recheck,
)


async def test_a_link_works_once(db_sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    async with db_sessionmaker.begin() as s:
        token = await create_link(s, 4242)
    async with db_sessionmaker.begin() as s:
        signed = await redeem_link(s, token)
    assert signed is not None and signed.user_id == 4242 and signed.csrf_token
    async with db_sessionmaker.begin() as s:
        assert await redeem_link(s, token) is None
    async with db_sessionmaker() as s:
        live = await find_session(s, signed.session_token)
        stored = list(await s.scalars(select(WebSignInLink.token_sha256))) + list(
            await s.scalars(select(WebSession.token_sha256))
        )
    assert live is not None and live.user_id == 4242
    assert token not in stored and signed.session_token not in stored  # hashes only


async def test_two_browsers_racing_for_one_link_one_wins(db_sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    async with db_sessionmaker.begin() as s:
        token = await create_link(s, 7)

    async def redeem() -> object:
        async with db_sessionmaker.begin() as s:
            return await redeem_link(s, token)

    results = await asyncio.gather(*(redeem() for _ in range(5)), return_exceptions=True)
    assert sum(1 for r in results if r is not None and not isinstance(r, BaseException)) == 1, results


async def test_links_and_sessions_expire_and_sign_out_ends_a_session(
    db_sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    now = utcnow()
    async with db_sessionmaker.begin() as s:
        old = await create_link(s, 1, ttl_seconds=60, now=now - timedelta(minutes=2))
        fresh = await create_link(s, 2, ttl_seconds=60, now=now)
    async with db_sessionmaker.begin() as s:
        assert await redeem_link(s, old, now=now) is None
        signed = await redeem_link(s, fresh, session_ttl_seconds=3600, now=now)
        assert await redeem_link(s, "not-a-token", now=now) is None
    assert signed is not None
    async with db_sessionmaker() as s:
        assert await find_session(s, signed.session_token, now=now + timedelta(minutes=59)) is not None
        assert await find_session(s, signed.session_token, now=now + timedelta(minutes=61)) is None
    async with db_sessionmaker.begin() as s:
        assert await end_session(s, signed.session_token) is True
        assert await end_session(s, signed.session_token) is False
    async with db_sessionmaker() as s:
        assert await find_session(s, signed.session_token, now=now) is None


async def test_a_link_carries_the_members_roles_into_its_session(
    db_sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    async with db_sessionmaker.begin() as s:
        token = await create_link(s, 4243, guild_id=77, role_ids=[30, 10, 30])
        bare = await create_link(s, 4244)
    async with db_sessionmaker.begin() as s:
        signed = await redeem_link(s, token)
        plain = await redeem_link(s, bare)
    assert signed is not None and (signed.guild_id, signed.role_ids) == (77, frozenset({10, 30}))
    assert plain is not None and (plain.guild_id, plain.role_ids) == (None, frozenset())
    async with db_sessionmaker() as s:
        live = await find_session(s, signed.session_token)
        other = await find_session(s, plain.session_token)
    assert live is not None and (live.guild_id, live.role_ids) == (77, [10, 30])
    assert other is not None and other.role_ids == []


async def test_a_link_refuses_a_nonsense_role_id(db_sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    with pytest.raises(ValueError, match="role ids must be positive"):
        async with db_sessionmaker.begin() as s:
            await create_link(s, 1, role_ids=[0])
    async with db_sessionmaker() as s:
        assert list(await s.scalars(select(WebSignInLink.user_id))) == [], "nothing was stored"


async def test_the_newest_live_session_names_the_users_roles(db_sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    now = utcnow()
    async with db_sessionmaker.begin() as s:
        older = await create_link(s, 55, role_ids=[1], now=now - timedelta(minutes=2))
        newer = await create_link(s, 55, role_ids=[2, 3], now=now - timedelta(minutes=1))
    async with db_sessionmaker.begin() as s:
        await redeem_link(s, older, now=now - timedelta(minutes=2))
        signed = await redeem_link(s, newer, now=now - timedelta(minutes=1))
    assert signed is not None
    async with db_sessionmaker() as s:
        assert await latest_roles(s, 55) == frozenset({2, 3})
        assert await latest_roles(s, 56) == frozenset()
    async with db_sessionmaker.begin() as s:
        await end_session(s, signed.session_token)
    async with db_sessionmaker() as s:
        assert await latest_roles(s, 55) == frozenset({1}), "an ended session no longer counts"


async def test_the_operators_link_carries_the_operators_rights_into_its_session(
    db_sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    async with db_sessionmaker.begin() as s:
        operator_token = await create_link(s, LOCAL_OPERATOR_ID, operator=True)
        member_token = await create_link(s, 77)
    async with db_sessionmaker.begin() as s:
        operator = await redeem_link(s, operator_token)
        member = await redeem_link(s, member_token)
    assert operator is not None and operator.operator and member is not None and not member.operator
    async with db_sessionmaker() as s:
        operator_session = await find_session(s, operator.session_token)
        member_session = await find_session(s, member.session_token)
        assert operator_session is not None and operator_session.operator
        assert member_session is not None and not member_session.operator


async def test_the_first_operator_is_configured_then_the_recorded_owner_then_the_local_account(
    db_sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    async with db_sessionmaker() as s:
        assert await first_operator(s, ()) == FirstOperator(LOCAL_OPERATOR_ID, "local")
        assert await app_operators(s) == frozenset()
    async with db_sessionmaker.begin() as s:
        await record_app_operators(s, [900, 300], source="team")
    async with db_sessionmaker() as s:
        assert await first_operator(s, ()) == FirstOperator(300, "team")
        assert await first_operator(s, {55, 44}) == FirstOperator(44, "setting")
    async with db_sessionmaker.begin() as s:  # the owner read at the next login replaces the team
        await record_app_operators(s, [123], source="owner")
    async with db_sessionmaker() as s:
        assert await app_operators(s) == frozenset({123})
        assert await first_operator(s, ()) == FirstOperator(123, "owner")
    async with db_sessionmaker.begin() as s:
        with pytest.raises(ValueError, match="source"):
            await record_app_operators(s, [1], source="guess")
        with pytest.raises(ValueError, match="positive"):
            await record_app_operators(s, [0], source="owner")


async def test_a_members_roles_are_due_each_period_and_lapse_unread_after_two(
    db_sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    """On one injected clock: a session's roles fall due for a re-read one re-check period after they were last
    read; a re-read without the role takes it away at once; roles not re-read lapse after two periods (what the
    page allows, ``web.config.WebConfig.roles_valid_seconds``)."""
    period = timedelta(seconds=60)
    t0 = utcnow()

    def at(seconds: float) -> datetime:
        return t0 + timedelta(seconds=seconds)

    async with db_sessionmaker.begin() as s:
        token = await create_link(s, 33, guild_id=501, role_ids=[777], now=t0)
        signed = await redeem_link(s, token, now=t0)
        plain = await redeem_link(s, await create_link(s, 34, role_ids=[777], now=t0), now=t0)  # no server: never due
    assert signed is not None and plain is not None

    async def due(now: datetime) -> list[tuple[int, int]]:
        async with db_sessionmaker() as s:
            return await sessions_to_recheck(s, checked_before=now - period, now=now)

    async def roles(now: datetime) -> frozenset[int]:
        async with db_sessionmaker() as s:
            row = await find_session(s, signed.session_token, now=now)
        assert row is not None
        return current_roles(row, valid_seconds=2 * period.total_seconds(), now=now)

    assert await due(at(59)) == [] and await roles(at(59)) == {777}  # read with the link, within a period
    assert await due(at(61)) == [(33, 501)]
    async with db_sessionmaker.begin() as s:  # re-read, the role taken away in Discord: gone from that read on
        assert await record_roles(s, 33, 501, [], now=at(61)) == 1
    assert await roles(at(61)) == frozenset() and await due(at(62)) == []
    async with db_sessionmaker.begin() as s:  # given back; then Discord cannot be asked (nothing re-read)
        await record_roles(s, 33, 501, [777], now=at(70))
    assert await due(at(129)) == [] and await due(at(131)) == [(33, 501)]
    assert await roles(at(70 + 119)) == {777}  # unread for under two periods: still valid
    assert await roles(at(70 + 121)) == frozenset()  # unread for over two periods: lapsed
