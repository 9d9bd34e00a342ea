"""Human-readable durations for the messages the store and the bot show ('42 s', '3 min 5 s', '2 h 10 min')."""

from __future__ import annotations

SECONDS_PER_MINUTE = 60
MINUTES_PER_HOUR = 60
HOURS_PER_DAY = 24
DAYS_FROM_HOURS = 48  # from this many hours on, durations are shown in days and hours


def format_duration(seconds: float | None) -> str:
    """'—' for None, else '42 s', '3 min 5 s', '2 h 10 min' or '3 d 4 h' (negative values count as 0)."""
    if seconds is None:
        return "—"
    whole = max(0, int(round(seconds)))
    if whole < SECONDS_PER_MINUTE:
        return f"{whole} s"
    minutes, sec = divmod(whole, SECONDS_PER_MINUTE)
    if minutes < MINUTES_PER_HOUR:
        return f"{minutes} min {sec} s" if sec else f"{minutes} min"
    hours, minutes = divmod(minutes, MINUTES_PER_HOUR)
    if hours < DAYS_FROM_HOURS:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, HOURS_PER_DAY)
    return f"{days} d {hours} h" if hours else f"{days} d"
