"""The web package on its own: it never imports discord; the health check's verdicts; messages for the page."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime

from jobs.db import make_engine, make_sessionmaker
from jobs.workers import register_worker
from tests.bot.harness import REPO_ROOT
from web.health import health_report
from web.render import plain


def test_the_web_package_never_imports_discord() -> None:
    code = (
        "import sys, web.server, web.standalone, web.pages, web.console, web.auth, web.metrics; "
        "bad = sorted(m for m in sys.modules if m == 'discord' or m.startswith(('discord.', 'bot.', 'torch')));"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


async def test_health_needs_a_live_worker_and_reports_the_supervisors_reason(sqlite_url: str) -> None:
    engine = make_engine(sqlite_url)
    sessions = make_sessionmaker(engine)
    try:
        status, body = await health_report(sessions, dead_after=15, worker_problem=lambda: None)
        assert status == 503 and "no worker is alive" in body["reason"]
        async with sessions.begin() as session:
            await register_worker(session, "w1", host="h", pid=1, model="tiny")
        status, body = await health_report(sessions, dead_after=15, worker_problem=lambda: None)
        assert status == 200 and body["workers"][0]["id"] == "w1", body
        status, body = await health_report(
            sessions, dead_after=15, worker_problem=lambda: "I2V_MODEL /nowhere does not exist"
        )
        assert status == 503 and body["reason"].endswith("I2V_MODEL /nowhere does not exist")
    finally:
        await engine.dispose()


def test_discord_time_tags_read_as_utc_times_on_the_page() -> None:
    when = int(datetime(2026, 12, 2, 9, 30, tzinfo=UTC).timestamp())
    assert plain(f"Enough will be free again <t:{when}:R>.") == "Enough will be free again at 2026-12-02 09:30 UTC."
