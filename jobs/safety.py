"""Content safety in the store: prompt blocklists, the image classifier's verdicts, and members' reports.

Blocklists. A prompt is refused when it holds a listed word or phrase as whole words (:func:`blocked_term`, the one
pure function every path uses): the bot-wide list (the PROMPT_BLOCKLIST setting plus the operator's run-time list,
kept as :class:`~jobs.models.BlockedTerm` rows under :data:`~jobs.models.BOT_WIDE_LIST`) and the server's own list.
Front ends call :func:`check_prompt` before they download anything, and admission (``jobs.admission``) calls it
again in the enqueue transaction, so a list changed in between still holds. A refusal is
:class:`~jobs.errors.PromptBlocked`; the caller records it with :func:`record_blocked` (a separate transaction:
the refused one is rolled back) for the audit log and ``/admin stats``.

Matching is on words, not characters: both the text and the term are normalised (compatibility forms such as
full-width letters folded, accents and invisible format characters such as zero-width spaces dropped, Unicode case
folding) and split into runs of letters and digits; every other character (spaces, punctuation, underscores,
symbols) separates words. A term matches when its words appear consecutively in the text's words: ``cat`` matches
"Cat!" and "a CAT_walk" but not "category"; ``big cat`` matches "big, cat" but not "big fat cat".
"""

from __future__ import annotations

import enum
import unicodedata
from collections.abc import Iterable
from datetime import datetime
from typing import Any, cast

from sqlalchemy import delete, func, select, update
from sqlalchemy.engine import CursorResult, Result
from sqlalchemy.ext.asyncio import AsyncSession

from generator.params import DEFAULT_NEGATIVE_PROMPT
from jobs.audit import record_action
from jobs.blobs import DATABASE_BLOBS, BlobStore
from jobs.db import locked_row
from jobs.errors import PromptBlocked
from jobs.models import BOT_WIDE_LIST, AuditLog, BlockedTerm, GuildSettings, Job, JobStatus, Report, utcnow
from jobs.transitions import JOBS, fenced

LIST_BOT = "bot"
LIST_SERVER = "server"
MAX_TERM_CHARS = 100  # characters of one normalised term (the column's width)
MAX_TERMS_PER_LIST = 500  # terms in one stored list (a server's, or the operator's run-time one)
AUDIT_PROMPT_BLOCKED = "prompt_blocked"
AUDIT_BLOCKLIST_ADD = "blocklist_add"
AUDIT_BLOCKLIST_REMOVE = "blocklist_remove"
AUDIT_SERVER_SAFETY = "set_server_safety"
_DROPPED_CATEGORIES = frozenset({"Mn", "Me", "Cf"})  # accents and other marks, zero-width and format characters


STAGE_INPUT = "input"
STAGE_OUTPUT = "output"


class Verdict(str, enum.Enum):
    """The image classifier's verdict on a job's input image or video (``Job.input_verdict``/``output_verdict``;
    NULL: not checked)."""

    SAFE = "safe"
    UNSAFE = "unsafe"


class UnsafePolicy(str, enum.Enum):
    """Where a video the classifier called unsafe may be posted: the operator's default (UNSAFE_VIDEOS), which a
    server's admins may tighten (``GuildSettings.unsafe_policy``), never loosen."""

    AGE_RESTRICTED = "age_restricted"  # only in an age-restricted channel, as a spoiler
    REFUSE = "refuse"  # nowhere


WITHHELD_MESSAGE = "The safety check flagged this video, so it was not posted and has been deleted."
WITHHELD_MESSAGE_AGE_RESTRICTED = (
    "The safety check flagged this video: it may only be posted in an "
    "age-restricted channel, so it was not posted here and has been deleted."
)


REPORT_DELETED = "deleted"  # Report.resolution: the video was deleted
REPORT_BANNED = "banned"  # its maker was banned (and the video deleted)
REPORT_DISMISSED = "dismissed"
REPORT_RESOLUTIONS = (REPORT_DELETED, REPORT_BANNED, REPORT_DISMISSED)
AUDIT_REPORT = "report_video"
AUDIT_REPORT_RESOLVED = "report_resolved"
DEFAULT_REPORTS_SHOWN = 10


class ReportRefused(ValueError):
    """A report that cannot be made (no such result, one's own video, reported already); ``str()`` says why."""


class BlocklistError(ValueError):
    """A term that cannot be listed (no letters or digits, too long) or a full list; ``str()`` is the message."""


# ------------------------------------------------------------------------------------------------ matching


def words(text: str) -> tuple[str, ...]:
    """The words of ``text`` as the blocklist compares them: compatibility-folded (NFKD), marks and format
    characters dropped, case-folded, recomposed (NFKC), split into runs of letters, digits and spacing marks."""
    decomposed = unicodedata.normalize("NFKD", text)
    kept = "".join(ch for ch in decomposed if unicodedata.category(ch) not in _DROPPED_CATEGORIES)
    folded = unicodedata.normalize("NFKC", kept.casefold())
    found: list[str] = []
    current: list[str] = []
    for ch in folded:
        category = unicodedata.category(ch)
        if category[0] in "LN" or category == "Mc":
            current.append(ch)
        elif current:
            found.append("".join(current))
            current = []
    if current:
        found.append("".join(current))
    return tuple(found)


def blocked_term(texts: Iterable[str], terms: Iterable[str]) -> str | None:
    """The first of ``terms`` that occurs as whole words in any of ``texts`` (see the module's docstring), or
    None. Pure: the same answer for the same arguments, nothing read or written. A term without any letter or
    digit never matches."""
    text_words = [words(text) for text in texts]
    for term in terms:
        needle = words(term)
        if not needle:
            continue
        size = len(needle)
        for haystack in text_words:
            if any(haystack[i : i + size] == needle for i in range(len(haystack) - size + 1)):
                return term
    return None


def normalize_term(raw: str) -> str:
    """A term as it is listed: its words joined by single spaces. Raises :class:`BlocklistError`."""
    term = " ".join(words(raw))
    if not term:
        raise BlocklistError("A blocked term needs at least one letter or digit.")
    if len(term) > MAX_TERM_CHARS:
        raise BlocklistError(f"A blocked term may have at most {MAX_TERM_CHARS} characters.")
    return term


def parse_blocklist(value: str) -> tuple[str, ...]:
    """The PROMPT_BLOCKLIST setting (comma-separated words or phrases; empty items skipped), normalised, in
    order, without repeats. Raises :class:`BlocklistError` naming the bad item."""
    terms: dict[str, None] = {}
    for item in value.split(","):
        if not item.strip():
            continue
        try:
            terms[normalize_term(item)] = None
        except BlocklistError as exc:
            raise BlocklistError(f"{item.strip()!r}: {exc}") from None
    return tuple(terms)


def prompt_texts(prompt: str, negative_prompt: str | None) -> tuple[str, ...]:
    """The texts of a request the blocklists apply to: the prompt and a negative prompt the user wrote (the
    built-in default negative prompt is the bot's own text, never refused)."""
    if not negative_prompt or negative_prompt == DEFAULT_NEGATIVE_PROMPT:
        return (prompt,)
    return (prompt, negative_prompt)


# ------------------------------------------------------------------------------------------------ the lists


def _list_id(guild_id: int | None) -> int:
    return BOT_WIDE_LIST if guild_id is None else guild_id


async def list_terms(session: AsyncSession, guild_id: int | None) -> list[str]:
    """The stored terms of one server's list, or of the operator's run-time bot-wide list (``guild_id=None``),
    in alphabetical order."""
    rows = await session.scalars(
        select(BlockedTerm.term).where(BlockedTerm.guild_id == _list_id(guild_id)).order_by(BlockedTerm.term)
    )
    return list(rows)


async def add_term(
    session: AsyncSession, guild_id: int | None, raw: str, *, by: int, now: datetime | None = None
) -> tuple[str, bool]:
    """List ``raw`` (normalised) on a server's list or the bot-wide one (``guild_id=None``), audited; returns the
    term and whether it was new. Raises :class:`BlocklistError` for a bad term or a full list."""
    term = normalize_term(raw)
    list_id = _list_id(guild_id)
    if await session.get(BlockedTerm, (list_id, term)) is not None:
        return term, False
    count = await session.scalar(select(func.count()).select_from(BlockedTerm).where(BlockedTerm.guild_id == list_id))
    if (count or 0) >= MAX_TERMS_PER_LIST:
        raise BlocklistError(f"This blocklist is full ({MAX_TERMS_PER_LIST} terms); remove some first.")
    now = now or utcnow()
    session.add(BlockedTerm(guild_id=list_id, term=term, added_by=by, created_at=now))
    await record_action(
        session, actor_id=by, action=AUDIT_BLOCKLIST_ADD, guild_id=guild_id, detail={"term": term}, now=now
    )
    return term, True


def _rows_matched(result: Result[Any]) -> int:
    """How many rows an UPDATE or DELETE matched. ``session.execute`` returns a ``CursorResult`` for those, which
    its stubs declare as a plain ``Result`` (no ``rowcount``)."""
    return cast(CursorResult[Any], result).rowcount


async def remove_term(session: AsyncSession, guild_id: int | None, raw: str, *, by: int) -> bool:
    """Take a term off a server's list or the bot-wide one, audited; False when it was not listed."""
    try:
        term = normalize_term(raw)
    except BlocklistError:
        return False
    result = await session.execute(
        delete(BlockedTerm).where(BlockedTerm.guild_id == _list_id(guild_id), BlockedTerm.term == term)
    )
    if not _rows_matched(result):
        return False
    await record_action(session, actor_id=by, action=AUDIT_BLOCKLIST_REMOVE, guild_id=guild_id, detail={"term": term})
    return True


async def check_prompt(
    session: AsyncSession, *, guild_id: int | None, texts: Iterable[str], setting_terms: Iterable[str] = ()
) -> None:
    """Raise :class:`~jobs.errors.PromptBlocked` when ``texts`` hold a term of the bot-wide list (the setting's
    ``setting_terms`` and the stored run-time list) or of the server ``guild_id``'s list. Reads only."""
    texts = tuple(texts)
    bot_wide = [*setting_terms, *await list_terms(session, None)]
    if (term := blocked_term(texts, bot_wide)) is not None:
        raise PromptBlocked(LIST_BOT, term)
    if guild_id is not None and (term := blocked_term(texts, await list_terms(session, guild_id))) is not None:
        raise PromptBlocked(LIST_SERVER, term)


async def record_blocked(
    session: AsyncSession, refused: PromptBlocked, *, user_id: int, guild_id: int | None, source: str
) -> None:
    """Audit one blocked prompt (who, where, which list and term, from which path; never the prompt itself)."""
    await record_action(
        session,
        actor_id=user_id,
        action=AUDIT_PROMPT_BLOCKED,
        target_user_id=user_id,
        guild_id=guild_id,
        detail={"list": refused.scope, "term": refused.term, "source": source},
    )


async def blocked_count(session: AsyncSession, *, since: datetime, until: datetime, guild_id: int | None = None) -> int:
    """Prompts refused by a blocklist in ``[since, until)``, in one server or (``None``) everywhere."""
    query = (
        select(func.count())
        .select_from(AuditLog)
        .where(AuditLog.action == AUDIT_PROMPT_BLOCKED, AuditLog.created_at >= since, AuditLog.created_at < until)
    )
    if guild_id is not None:
        query = query.where(AuditLog.guild_id == guild_id)
    return int(await session.scalar(query) or 0)


# ------------------------------------------------------------------------------------------------ verdicts


async def record_verdict(
    session: AsyncSession, job_id: int, attempt: int, *, worker_id: str, stage: str, verdict: Verdict, seconds: float
) -> bool:
    """The worker's verdict on its running attempt's input or output (fenced like every worker write); the
    classifier's seconds add up in ``safety_seconds``, apart from the GPU time of generation."""
    column = {STAGE_INPUT: "input_verdict", STAGE_OUTPUT: "output_verdict"}[stage]
    row = (
        await session.execute(
            update(JOBS)
            .where(*fenced(job_id, attempt, worker_id))
            .values(
                {
                    column: Verdict(verdict).value,
                    "safety_seconds": func.coalesce(JOBS.c.safety_seconds, 0.0) + max(0.0, float(seconds)),
                }
            )
            .returning(JOBS.c.id)
        )
    ).first()
    return row is not None


# ------------------------------------------------------------------------------------------------ policy


def stricter(first: UnsafePolicy, second: UnsafePolicy | str | None) -> UnsafePolicy:
    """The stricter of two policies (``None``: no second opinion)."""
    if second is None:
        return first
    return UnsafePolicy.REFUSE if UnsafePolicy.REFUSE in (first, UnsafePolicy(second)) else first


async def server_safety(
    session: AsyncSession, guild_id: int | None, default: UnsafePolicy
) -> tuple[UnsafePolicy, bool]:
    """A server's effective policy for unsafe videos (the operator's default, tightened by the server) and whether
    it makes every result a spoiler."""
    if guild_id is None:
        return default, False
    row = (
        await session.execute(
            select(GuildSettings.unsafe_policy, GuildSettings.spoiler_all).where(GuildSettings.guild_id == guild_id)
        )
    ).first()
    if row is None:
        return default, False
    return stricter(default, row.unsafe_policy), bool(row.spoiler_all)


async def set_server_safety(
    session: AsyncSession,
    guild_id: int,
    *,
    by: int,
    policy: UnsafePolicy | None = None,
    spoiler_all: bool | None = None,
) -> GuildSettings:
    """Set a server's own unsafe-video policy (it can only tighten the operator's default when applied, see
    :func:`server_safety`) and/or whether every result there is a spoiler; ``None`` keeps a value. Audited."""
    row = await locked_row(
        session, GuildSettings, guild_id, guild_id=guild_id, paused=False, mention_replies=False, spoiler_all=False
    )
    before = {"unsafe_policy": row.unsafe_policy, "spoiler_all": bool(row.spoiler_all)}
    if policy is not None:
        row.unsafe_policy = UnsafePolicy(policy).value
    if spoiler_all is not None:
        row.spoiler_all = spoiler_all
    row.updated_by, row.updated_at = by, utcnow()
    after = {"unsafe_policy": row.unsafe_policy, "spoiler_all": bool(row.spoiler_all)}
    await record_action(
        session, actor_id=by, action=AUDIT_SERVER_SAFETY, guild_id=guild_id, detail={"before": before, "after": after}
    )
    return row


def may_post_unsafe(policy: UnsafePolicy, *, age_restricted_channel: bool) -> bool:
    """Whether an unsafe video may be posted (then always as a spoiler): only under the age-restricted policy and
    only in an age-restricted channel."""
    return policy is UnsafePolicy.AGE_RESTRICTED and age_restricted_channel


def withheld_message(policy: UnsafePolicy) -> str:
    """What the requester is told (privately) about their unsafe video that was not posted."""
    return WITHHELD_MESSAGE_AGE_RESTRICTED if policy is UnsafePolicy.AGE_RESTRICTED else WITHHELD_MESSAGE


async def withhold_video(
    session: AsyncSession, job_id: int, message: str, *, now: datetime | None = None, blobs: BlobStore = DATABASE_BLOBS
) -> bool:
    """An unsafe video that may not be posted: its stored bytes go at once, the job keeps its verdict, and
    ``error`` carries ``message`` where ``/queue`` and the page show it. False when it was withheld already."""
    now = now or utcnow()
    result = await session.execute(
        update(Job)
        .where(Job.id == job_id, Job.withheld_at.is_(None))
        .values(withheld_at=now, error=message)
        .execution_options(synchronize_session=False)
    )
    await blobs.delete_video(session, job_id)
    return bool(_rows_matched(result))


# ------------------------------------------------------------------------------------------------ reports


async def add_report(session: AsyncSession, job_id: int, *, reporter_id: int, now: datetime | None = None) -> Report:
    """A member's report of a delivered result (once per member and job), audited without the member's name in
    any public place. Raises :class:`ReportRefused` with the reason to show the member."""
    job = await session.get(Job, job_id)
    if job is None or job.status != JobStatus.SUCCEEDED:
        raise ReportRefused("There is no such video to report.")
    if job.user_id == reporter_id:
        raise ReportRefused("This is your own video: use Delete to remove it.")
    existing = await session.scalar(select(Report.id).where(Report.job_id == job_id, Report.reporter_id == reporter_id))
    if existing is not None:
        raise ReportRefused("You have already reported this video; the admins will look at it.")
    now = now or utcnow()
    report = Report(
        job_id=job_id, guild_id=job.guild_id, reporter_id=reporter_id, reported_user_id=job.user_id, created_at=now
    )
    session.add(report)
    await session.flush()
    await record_action(
        session,
        actor_id=reporter_id,
        action=AUDIT_REPORT,
        target_user_id=job.user_id,
        guild_id=job.guild_id,
        job_id=job_id,
        now=now,
    )
    return report


async def open_reports(
    session: AsyncSession, guild_id: int | None, *, limit: int = DEFAULT_REPORTS_SHOWN
) -> list[tuple[Job, int, datetime]]:
    """Reported results not yet resolved, in one server or (``None``, the operator's view) everywhere: each job
    with how many members reported it and when first, most reported first."""
    query = (
        select(Job, func.count(Report.id).label("reports"), func.min(Report.created_at).label("first"))
        .join(Report, Report.job_id == Job.id)
        .where(Report.resolved_at.is_(None))
        .group_by(Job.id)
        .order_by(func.count(Report.id).desc(), func.min(Report.created_at), Job.id)
        .limit(limit)
    )
    if guild_id is not None:
        query = query.where(Report.guild_id == guild_id)
    return [(row[0], int(row[1]), row[2]) for row in (await session.execute(query)).all()]


async def resolve_reports(
    session: AsyncSession,
    job_id: int,
    *,
    by: int,
    resolution: str,
    guild_id: int | None = None,
    now: datetime | None = None,
) -> int:
    """Close the open reports of one job (``deleted``, ``banned`` or ``dismissed``), audited with the scope of
    who acted (``guild_id``: a server admin; None: the operator). Returns how many were open."""
    if resolution not in REPORT_RESOLUTIONS:
        raise ValueError(f"resolution must be one of {REPORT_RESOLUTIONS}, got {resolution!r}")
    now = now or utcnow()
    result = await session.execute(
        update(Report)
        .where(Report.job_id == job_id, Report.resolved_at.is_(None))
        .values(resolved_at=now, resolved_by=by, resolution=resolution)
        .execution_options(synchronize_session=False)
    )
    job = await session.get(Job, job_id)
    await record_action(
        session,
        actor_id=by,
        action=AUDIT_REPORT_RESOLVED,
        target_user_id=job.user_id if job else None,
        guild_id=guild_id,
        job_id=job_id,
        detail={"resolution": resolution, "reports": _rows_matched(result)},
        now=now,
    )
    return _rows_matched(result)


async def forget_safety_data(session: AsyncSession, user_id: int) -> int:
    """A user's delete-my-data: the reports they made and received go, and the classifier's verdicts on their
    jobs are cleared. Returns the reports deleted."""
    result = await session.execute(
        delete(Report).where((Report.reporter_id == user_id) | (Report.reported_user_id == user_id))
    )
    await session.execute(
        update(Job)
        .where(Job.user_id == user_id)
        .values(input_verdict=None, output_verdict=None, safety_seconds=None)
        .execution_options(synchronize_session=False)
    )
    return _rows_matched(result)


async def prune_safety_data(session: AsyncSession, *, before: datetime) -> int:
    """Retention: resolved reports older than ``before`` go (open ones stay until an admin acts), and the verdicts
    of jobs that finished before it are cleared. Returns the reports deleted."""
    result = await session.execute(delete(Report).where(Report.resolved_at.is_not(None), Report.created_at < before))
    await session.execute(
        update(Job)
        .where(Job.finished_at < before, (Job.input_verdict.is_not(None)) | (Job.output_verdict.is_not(None)))
        .values(input_verdict=None, output_verdict=None)
        .execution_options(synchronize_session=False)
    )
    return _rows_matched(result)
