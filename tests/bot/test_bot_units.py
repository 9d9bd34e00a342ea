"""Pure parts of the bot: mention flags, status text, the command-payload hash."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from bot.cogs.mentions import FlagError, parse_request, strip_mentions
from bot.command_sync import payload_hash
from bot.render import progress_bar, render_status, status_key
from jobs.models import Job, JobPhase, JobStatus


def test_parse_request_flags_and_prompt() -> None:
    prompt, options = parse_request(
        "a cat turns its head --preset quick --frames 12 --steps 30 --seed 5 --fps 8 --guidance 10 "
        '--resolution 512p --neg "blurry, static" slowly'
    )
    assert prompt == "a cat turns its head slowly"
    assert options == {
        "preset": "quick",
        "frames": 12,
        "steps": 30,
        "seed": 5,
        "fps": 8,
        "guidance": 10.0,
        "resolution": "512p",
        "negative_prompt": "blurry, static",
    }


def test_parse_request_keeps_apostrophes_and_dashes_in_prompt() -> None:
    prompt, options = parse_request("the dog's tail - wagging")
    assert (prompt, options) == ("the dog's tail - wagging", {})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("go --frames many", "--frames 'many' is not a whole number"),
        ("go --guidance high", "--guidance 'high' is not a number"),
        ("go --zoom 2", "Unknown flag --zoom"),
        ("go --seed", "--seed needs a value"),
    ],
)
def test_parse_request_errors_name_the_flag(text: str, message: str) -> None:
    with pytest.raises(FlagError, match=message):
        parse_request(text)


def test_strip_mentions() -> None:
    assert strip_mentions("<@42> hello <@!42> there", 42) == "hello   there"


def test_progress_bar() -> None:
    assert progress_bar(0, 10, cells=10) == "░░░░░░░░░░   0%"
    assert progress_bar(5, 10, cells=10) == "█████░░░░░  50%"
    assert progress_bar(10, 10, cells=10) == "██████████ 100%"
    assert progress_bar(3, 0, cells=4) == "░░░░   0%"


def _job(**changes: object) -> Job:
    """A job as the store returns it (not added to any session)."""
    base: dict[str, object] = dict(
        id=7,
        user_id=99,
        prompt="waves <@1>",
        model="i2vgenxl",
        preset=None,
        resolution="256p",
        width=320,
        height=256,
        frames=8,
        fps=8,
        steps=10,
        guidance=9.0,
        seed=3,
        status=JobStatus.QUEUED,
        attempt=0,
        phase=JobPhase.QUEUED,
        progress_step=0,
        progress_total=10,
        cancel_requested=False,
        error=None,
    )
    base.update(changes)
    return Job(**base)


def test_render_status_queued_and_running() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    queued = render_status(_job(), position=3, eta_seconds=60, now=now)
    assert "position **3**" in queued and f"<t:{int(now.timestamp()) + 60}:R>" in queued
    assert "<@1>" not in queued  # mentions in prompts are neutralised
    running = render_status(_job(status=JobStatus.RUNNING, phase=JobPhase.DENOISING, progress_step=4), now=now)
    assert "step 4/10" in running and "40%" in running
    assert "Cancelling" in render_status(_job(status=JobStatus.RUNNING, cancel_requested=True), now=now)


def test_status_key_ignores_the_clock_but_not_progress() -> None:
    assert status_key(_job(), 2) == status_key(_job(), 2)
    assert status_key(_job(), 2) != status_key(_job(), 1)
    assert status_key(_job(status=JobStatus.RUNNING, progress_step=1), 0) != status_key(
        _job(status=JobStatus.RUNNING, progress_step=2), 0
    )


def test_payload_hash_is_order_independent_and_sensitive() -> None:
    a = {"name": "animate", "options": [{"name": "image"}]}
    b = {"name": "queue"}
    assert payload_hash([a, b]) == payload_hash([b, a])
    assert payload_hash([a, b]) != payload_hash([a, {"name": "queue", "description": "x"}])


def test_loop_lag_summary_covers_the_latest_window_and_the_whole_run(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Past the window the quantiles follow the newest probes (a long-running bot's summary describes its
    end, not its first half hour); the probe count and the max cover the whole run."""
    from bot import lag

    monkeypatch.setattr(lag, "WINDOW_SAMPLES", 4)
    monitor = lag.LoopLagMonitor()
    assert monitor.summary() == {"samples": 0, "window": 0, "p50_ms": 0.0, "p99_ms": 0.0, "max_ms": 0.0}
    with caplog.at_level("WARNING", logger="bot.lag"):
        for seconds in (0.5, 0.001, 0.001, 0.002, 0.002, 0.010, 0.020, 0.040):
            monitor.record(seconds)
    summary = monitor.summary()
    assert summary["samples"] == 8 and summary["window"] == 4
    assert summary["p50_ms"] == pytest.approx(10.0) and summary["p99_ms"] == pytest.approx(40.0)
    assert summary["max_ms"] == pytest.approx(500.0)  # the early stall is still the run's max
    assert [r.getMessage() for r in caplog.records] == ["event loop was blocked for 500 ms"]
