"""Prompt blocklists (jobs.safety): the one matching function on hostile text, the stored lists, and admission
refusing a blocked prompt in the enqueue transaction with nothing written."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from generator.params import DEFAULT_NEGATIVE_PROMPT
from jobs.admission import enqueue_job
from jobs.errors import PromptBlocked
from jobs.models import AuditLog, Job, QuotaLedger, utcnow
from jobs.quota import QuotaPolicy
from jobs.safety import (
    LIST_BOT,
    LIST_SERVER,
    BlocklistError,
    add_term,
    blocked_count,
    blocked_term,
    check_prompt,
    list_terms,
    normalize_term,
    parse_blocklist,
    prompt_texts,
    record_blocked,
    remove_term,
)
from tests.jobs.storehelpers import GUILD, IMAGE, new_job

OTHER_GUILD = 333
ADMIN = 77


@pytest.mark.parametrize(
    "text",
    [
        "a cat",
        "CAT",
        "Cat!",
        "(cat)",
        "the cat's toy",
        "a CAT_walk",
        "cat-like",
        "ｃａｔ",
        "ÇAT",
        "c\u200bat",
        "ca\u0301t",
        "\tcat\n",
        "cat.",
    ],
)
def test_a_word_matches_whole_in_any_case_and_form(text: str) -> None:
    assert blocked_term([text], ["cat"]) == "cat"


@pytest.mark.parametrize("text", ["category", "concat", "scatter", "cats", "c a t", "dog", ""])
def test_a_word_does_not_match_inside_other_words(text: str) -> None:
    assert blocked_term([text], ["cat"]) is None


def test_phrases_match_their_words_in_order_with_any_separators() -> None:
    assert blocked_term(["a Big,  CAT here"], ["big cat"]) == "big cat"
    assert blocked_term(["big-cat"], ["big cat"]) == "big cat"
    assert blocked_term(["big fat cat"], ["big cat"]) is None
    assert blocked_term(["cat big"], ["big cat"]) is None


def test_case_folding_goes_beyond_lower_case() -> None:
    assert blocked_term(["STRASSE"], ["straße"]) == "straße"  # casefold: ß -> ss on both sides
    assert blocked_term(["ΣΊΣΥΦΟΣ"], ["σίσυφος"]) == "σίσυφος"  # final sigma, accent dropped on both


def test_the_first_listed_term_found_in_any_text_is_named() -> None:
    assert blocked_term(["clean", "has dog"], ["cat", "dog", "has"]) == "dog"
    assert blocked_term(["x"], ["!!!", ""]) is None  # a term without letters never matches


def test_terms_are_normalised_and_bad_ones_refused() -> None:
    assert normalize_term("  Big   CAT!! ") == "big cat"
    for bad in ("", "  ", "!!!", "x" * 101):
        with pytest.raises(BlocklistError):
            normalize_term(bad)
    assert parse_blocklist("Gore, big  cat,,gore ,") == ("gore", "big cat")
    with pytest.raises(BlocklistError, match="'!!'"):
        parse_blocklist("ok, !!")


def test_the_default_negative_prompt_is_never_checked() -> None:
    assert prompt_texts("p", DEFAULT_NEGATIVE_PROMPT) == ("p",)
    assert prompt_texts("p", "") == ("p",)
    assert prompt_texts("p", "ugly") == ("p", "ugly")


async def test_lists_per_server_and_bot_wide(db_sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    async with db_sessionmaker.begin() as s:
        assert await add_term(s, GUILD, "Dragon", by=ADMIN) == ("dragon", True)
        assert await add_term(s, GUILD, "DRAGON!", by=ADMIN) == ("dragon", False)
        assert await add_term(s, None, "zombie horde", by=ADMIN) == ("zombie horde", True)
    async with db_sessionmaker() as s:
        assert await list_terms(s, GUILD) == ["dragon"]
        assert await list_terms(s, OTHER_GUILD) == []
        assert await list_terms(s, None) == ["zombie horde"]
        with pytest.raises(PromptBlocked) as caught:
            await check_prompt(s, guild_id=GUILD, texts=["A dragon flies"])
        assert caught.value.scope == LIST_SERVER and "this server's" in str(caught.value)
        assert "dragon" not in str(caught.value).lower()  # the message repeats nothing of the prompt
        await check_prompt(s, guild_id=OTHER_GUILD, texts=["A dragon flies"])  # another server's list: not here
        await check_prompt(s, guild_id=None, texts=["A dragon flies"])
        with pytest.raises(PromptBlocked) as caught:
            await check_prompt(s, guild_id=OTHER_GUILD, texts=["ok", "a ZOMBIE  horde"])
        assert caught.value.scope == LIST_BOT and "the bot's" in str(caught.value)
        with pytest.raises(PromptBlocked) as caught:
            await check_prompt(s, guild_id=None, texts=["Gore"], setting_terms=("gore",))
        assert caught.value.scope == LIST_BOT
    async with db_sessionmaker.begin() as s:
        assert await remove_term(s, GUILD, "dragon", by=ADMIN) is True
        assert await remove_term(s, GUILD, "dragon", by=ADMIN) is False
        assert await remove_term(s, GUILD, "!!", by=ADMIN) is False
    async with db_sessionmaker() as s:
        await check_prompt(s, guild_id=GUILD, texts=["A dragon flies"])
        actions = list(await s.scalars(select(AuditLog.action).order_by(AuditLog.id)))
    assert actions == ["blocklist_add", "blocklist_add", "blocklist_remove"]


async def test_admission_refuses_a_blocked_prompt_and_writes_nothing(
    db_sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    async with db_sessionmaker.begin() as s:
        await add_term(s, GUILD, "dragon", by=ADMIN)
    policy = QuotaPolicy(daily_gpu_seconds=1e9, max_pending=10, prompt_blocklist=("gore",))
    refused: list[PromptBlocked] = []
    for job in (
        new_job(1, prompt="lots of GORE"),
        new_job(1, negative_prompt="no Dragons, no DRAGON"),
        new_job(1, prompt="a dragon", guild_id=GUILD),
    ):
        with pytest.raises(PromptBlocked) as caught:
            async with db_sessionmaker.begin() as s:
                await enqueue_job(s, job, policy, image=IMAGE)
        refused.append(caught.value)
    assert [r.scope for r in refused] == [LIST_BOT, LIST_SERVER, LIST_SERVER]
    async with db_sessionmaker() as s:
        assert await s.scalar(select(func.count(Job.id))) == 0
        assert await s.scalar(select(func.count(QuotaLedger.id))) == 0
    async with db_sessionmaker.begin() as s:  # clean prompts go through, in another server too
        await enqueue_job(s, new_job(1, prompt="a dragonfly over gorge"), policy, image=IMAGE)
        await enqueue_job(s, new_job(1, prompt="a dragon", guild_id=OTHER_GUILD), policy, image=IMAGE)
        await record_blocked(s, refused[0], user_id=1, guild_id=GUILD, source="slash")
        await record_blocked(s, refused[1], user_id=1, guild_id=OTHER_GUILD, source="mention")
    async with db_sessionmaker() as s:
        assert await s.scalar(select(func.count(Job.id))) == 2
        now = utcnow()
        since, until = now - timedelta(hours=1), now + timedelta(seconds=1)
        assert await blocked_count(s, since=since, until=until) == 2
        assert await blocked_count(s, guild_id=GUILD, since=since, until=until) == 1
        row = await s.scalar(select(AuditLog).where(AuditLog.action == "prompt_blocked", AuditLog.guild_id == GUILD))
        assert row is not None and row.detail == {"list": "bot", "term": "gore", "source": "slash"}
