"""``python -m bot backup DEST``, ``prune`` and ``web-link``: one-shot maintenance, safe while the bot runs.

``backup``: an online copy of the SQLite job store (:func:`jobs.db.backup_sqlite`); for PostgreSQL it says to use
pg_dump and exits with :data:`EXIT_FAILED`. ``prune``: one maintenance pass (:func:`jobs.maintenance.maintain`, as the
bot runs every few seconds with retention every RETENTION_INTERVAL_SECONDS): dead workers' jobs requeued, and the stored
bytes and disk copies of jobs past RETENTION_DAYS removed; then it prints what went.
``web-link``: a fresh operator sign-in link for the web page (:func:`web.auth.operator_link`).
"""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path

from bot.settings import BotSettings
from jobs.db import BackupError, backup_sqlite, make_engine, make_sessionmaker
from jobs.maintenance import maintain

EXIT_FAILED = 1
EXIT_USAGE = 2
SHOWN_IDS = 50  # job ids printed at most


def backup(settings: BotSettings, dest: Path) -> int:
    """Run the backup; prints one line; returns the exit status."""
    try:
        written, size = backup_sqlite(settings.database_url, dest)
    except BackupError as error:
        print(f"i2v-bot: {error}", file=sys.stderr)
        return EXIT_FAILED
    print(f"backed up the job store to {written} ({size:,} bytes)")
    return 0


async def prune(settings: BotSettings, now: datetime | None = None) -> int:
    """One maintenance pass over the whole store (see the module's docstring); prints what retention removed; returns
    the exit status."""
    if settings.retention_days <= 0:
        print("RETENTION_DAYS=0: finished jobs keep their image and video forever; nothing pruned")
        return 0
    engine = make_engine(settings.database_url)
    try:
        done = await maintain(
            make_sessionmaker(engine),
            dead_after_s=settings.worker_dead_after,
            retention_days=settings.retention_days,
            output_dir=settings.output_dir,
            now=now,
        )
    finally:
        await engine.dispose()
    pruned, removed, cutoff = done.pruned, done.copies_removed, done.cutoff
    assert cutoff is not None  # retention_days > 0
    if not pruned:
        print(f"nothing to prune: no delivered job finished before {cutoff:%Y-%m-%d %H:%M} UTC still keeps its bytes")
        return 0
    shown = ", ".join(str(i) for i in pruned[:SHOWN_IDS]) + (" ..." if len(pruned) > SHOWN_IDS else "")
    print(
        f"pruned the stored image and video of {len(pruned)} job(s) finished before {cutoff:%Y-%m-%d %H:%M} UTC: "
        f"{shown}; removed {removed} disk cop{'y' if removed == 1 else 'ies'} from {settings.output_dir}"
    )
    return 0


async def web_link(settings: BotSettings, user_id: int | None = None) -> int:
    """``python -m bot web-link [--user ID]``: a fresh single-use sign-in link from the store alone (no Discord):
    the operator's (acting as the first operator), or ``user_id``'s with that user's own rights."""
    from jobs.db import make_engine, make_sessionmaker, migrate
    from web.auth import operator_link
    from web.config import WebConfig

    if user_id is not None and user_id <= 0:
        print(f"i2v-bot: --user must be a Discord user id, got {user_id}", file=sys.stderr)
        return EXIT_USAGE
    config = WebConfig.from_settings(settings)
    await migrate(settings.database_url)
    engine = make_engine(settings.database_url)
    try:
        link, who = await operator_link(make_sessionmaker(engine), config, user_id=user_id)
    finally:
        await engine.dispose()
    if user_id is None:
        print(f"Operator sign-in: {link}")
    else:
        print(f"Sign-in link for Discord user {who.user_id} ({who.source}): {link}")
    if not config.public_url and config.port == 0:
        print(
            "i2v-bot: WEB_PORT is 0 (any free port): put the port the app logged at start in this link", file=sys.stderr
        )
    return 0
