"""Why a request was refused, with messages fit to show the user as they are."""

from __future__ import annotations

from datetime import datetime

from config.units import HOURS_PER_DAY, MINUTES_PER_HOUR, SECONDS_PER_MINUTE

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


def discord_time(when: datetime, style: str = "R") -> str:
    """A Discord timestamp tag that every client renders in its own time zone, e.g. '<t:1700000000:R>' ("in 2
    hours"; style 'f' shows the date and time)."""
    return f"<t:{int(when.timestamp())}:{style}>"


class Sentence(Exception):
    """An error whose ``str()`` is its ``message``, one sentence fit to show the user as it is (the refusals here,
    and the bot's ``bot.errors.UserFacingError``)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class RequestRefused(Sentence):
    """Base of every refusal of a new job; ``str()`` is the user-facing message."""

    code = "refused"


class Banned(RequestRefused):
    """The user is banned from the bot."""

    code = "banned"

    def __init__(self, reason: str | None) -> None:
        self.reason = reason
        text = "You are not allowed to make videos with this bot"
        super().__init__(f"{text}: {reason}." if reason else f"{text}.")


class OverBudget(RequestRefused):
    """The job's estimated cost does not fit in the user's remaining rolling 24 h GPU budget."""

    code = "over_budget"

    def __init__(self, remaining: float, needed: float, refill_at: datetime | None) -> None:
        self.remaining = remaining
        self.needed = needed
        self.refill_at = refill_at
        text = (
            f"Not enough GPU time left: this video needs about {format_duration(needed)}, "
            f"you have {format_duration(remaining)} left in your 24-hour budget."
        )
        if refill_at is not None:
            text += f" Enough will be free again {discord_time(refill_at)}."
        else:
            text += " Wait for your queued videos to finish, or choose fewer frames, steps or a lower resolution."
        super().__init__(text)


class TooManyPending(RequestRefused):
    """The user already has the maximum number of queued or running jobs."""

    code = "too_many_pending"

    def __init__(self, limit: int) -> None:
        self.limit = limit
        plural = "video" if limit == 1 else "videos"
        super().__init__(
            f"You already have {limit} {plural} waiting or in progress, the most allowed. "
            "Wait for one to finish or cancel one."
        )


class QueueFull(RequestRefused):
    """The global queue holds its maximum number of waiting jobs."""

    code = "queue_full"

    def __init__(self, limit: int) -> None:
        self.limit = limit
        super().__init__(f"The queue is full ({limit} videos waiting). Try again in a few minutes.")


class OverGuildCap(RequestRefused):
    """A parameter is above this server's cap set by an admin."""

    code = "over_guild_cap"

    def __init__(self, field: str, value: int | str, cap: int | str) -> None:
        self.field = field
        self.value = value
        self.cap = cap
        super().__init__(f"This server allows {field} up to {cap}; you asked for {value}.")


class ModelNotAllowed(RequestRefused):
    """The chosen model is not enabled on this bot, or this server's admins do not allow it."""

    code = "model_not_allowed"

    def __init__(self, model: str, allowed: list[str], *, by_server: bool) -> None:
        self.model = model
        self.allowed = allowed
        where = "This server's admins do not allow" if by_server else "This bot does not offer"
        choices = ", ".join(allowed) if allowed else "none"
        super().__init__(f"{where} the model {model}; the models you can use here: {choices}.")


class JobNotFound(LookupError):
    """No job with this id."""

    def __init__(self, job_id: int) -> None:
        self.job_id = job_id
        super().__init__(f"no job with id {job_id}")


class InputGone(RequestRefused):
    """A re-roll or variation of a job whose input image is no longer kept (retention or a deletion)."""

    code = "input_gone"

    def __init__(self, job_id: int | None = None) -> None:
        self.job_id = job_id
        what = f"job #{job_id}" if job_id is not None else "that job"
        super().__init__(
            f"The image of {what} is gone: stored images are deleted after a while or on request. "
            "Upload the image again to make a new video."
        )


class PromptBlocked(RequestRefused):
    """The prompt or negative prompt holds a word or phrase of a blocklist (``jobs.safety``). The message names
    the list, never the prompt or the word, so a public reply repeats nothing of it."""

    code = "prompt_blocked"

    def __init__(self, scope: str, term: str) -> None:
        self.scope = scope  # jobs.safety.LIST_BOT or LIST_SERVER
        self.term = term  # for the audit log, never for the user's message
        whose = "this server's" if scope == "server" else "the bot's"
        super().__init__(f"This prompt was blocked: it contains a word or phrase on {whose} blocklist.")
