"""Custom ids and the layout of every message's components: the buttons under a status message, a result, a
notice, and the admin listings.

Every custom id carries everything its click needs (``i2v:<action>:<job>`` for a job's buttons,
``i2va:<what>:...`` for the admin listings), so a click after a restart is parsed from it and nothing about a
button lives in memory. What a click does is ``bot.views``: one ``DynamicItem`` per template below, registered
once at start. The views built here are layouts only: each is stopped before it is sent, so discord.py routes a
click through those registered items instead of keeping a callback-less copy of every message's view.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import discord

from bot.render import is_final
from generator.model_spaces import SPACES

if TYPE_CHECKING:
    from jobs.models import Job

JOB_PREFIX = "i2v"  # a job's own buttons: i2v:<action>:<job id>
ADMIN_PREFIX = "i2va"  # the admin listings' buttons
CANCEL_BUTTONS_PER_ROW = 5  # Discord allows five buttons in one action row
MAX_ROWS = 5  # and five action rows in one message

# a job's buttons: action -> (label, emoji, style)
JOB_BUTTONS: dict[str, tuple[str, str, discord.ButtonStyle]] = {
    "cancel": ("Cancel", "🛑", discord.ButtonStyle.danger),
    "reroll": ("Re-roll", "🎲", discord.ButtonStyle.primary),
    "vary": ("Vary", "🎛️", discord.ButtonStyle.secondary),
    "delete": ("Delete", "🗑️", discord.ButtonStyle.danger),
    "info": ("Info", "ℹ️", discord.ButtonStyle.secondary),
    "report": ("Report", "🚩", discord.ButtonStyle.secondary),
}
RESULT_ACTIONS = ("reroll", "vary", "delete", "info", "report")  # under a delivered video: one row of five
VARY_MODEL_ACTION = "varymodel"  # the select under a delivered video: Vary with another model (i2v:varymodel:<job>)
VARY_MODEL_PLACEHOLDER = "Vary with another model…"

# the admin listings: listing segment -> {kind: label}; "o..." are the operator's bot-wide listings
QUEUE_PAGE_LABELS = {"prev": "◀ Previous", "refresh": "Refresh", "next": "Next ▶"}
LOG_PAGE_LABELS = {"prev": "◀ Newer", "next": "Older ▶"}
PAGE_LISTINGS = {
    "queue": QUEUE_PAGE_LABELS,
    "oqueue": QUEUE_PAGE_LABELS,
    "log": LOG_PAGE_LABELS,
    "olog": LOG_PAGE_LABELS,
}
PAGE_STEP = {"prev": -1, "refresh": 0, "next": 1}


def job_custom_id(action: str, job_id: int) -> str:
    """``i2v:<action>:<job id>``."""
    return f"{JOB_PREFIX}:{action}:{job_id}"


def job_template(action: str) -> str:
    """The custom-id pattern of one job button (group ``job``)."""
    return rf"{JOB_PREFIX}:{action}:(?P<job>[0-9]+)"


def page_custom_id(listing: str, page: int, kind: str) -> str:
    """``i2va:<listing>:<page>:<kind>`` (kind: prev, refresh, next)."""
    return f"{ADMIN_PREFIX}:{listing}:{page}:{kind}"


# the paging buttons of every listing (groups listing, page, kind); a kind the listing lacks is refused on parsing
PAGE_TEMPLATE = (
    rf"{ADMIN_PREFIX}:(?P<listing>{'|'.join(PAGE_LISTINGS)}):(?P<page>[0-9]{{1,6}}):(?P<kind>{'|'.join(PAGE_STEP)})"
)


# a reported video in /admin reports (scope "s": this server's admins) or /operator reports ("o": bot-wide)
REPORT_ACTION_LABELS = {"delete": "Delete video #{job}", "ban": "Ban maker of #{job}", "dismiss": "Dismiss #{job}"}
REPORT_ACTION_STYLES = {
    "delete": discord.ButtonStyle.danger,
    "ban": discord.ButtonStyle.danger,
    "dismiss": discord.ButtonStyle.secondary,
}
REPORT_TEMPLATE = ADMIN_PREFIX + r":rep:(?P<scope>[so]):(?P<action>delete|ban|dismiss):(?P<job>[0-9]{1,20})"


def report_custom_id(scope: str, action: str, job_id: int) -> str:
    """``i2va:rep:<s|o>:<action>:<job>`` (at most 41 characters)."""
    return f"{ADMIN_PREFIX}:rep:{scope}:{action}:{job_id}"


ADMIN_CANCEL_TEMPLATE = ADMIN_PREFIX + r":cancel:(?P<job>[0-9]{1,20})"
CLEAR_CONFIRM_TEMPLATE = ADMIN_PREFIX + r":clear:(?P<expires>[0-9]{1,12})"


def _layout(*items: discord.ui.Item[discord.ui.View]) -> discord.ui.View:
    """A view of ``items`` that only describes the layout (stopped: clicks go to ``bot.views``' items)."""
    view = discord.ui.View(timeout=None)
    for item in items:
        view.add_item(item)
    view.stop()
    return view


def _job_button(action: str, job_id: int) -> discord.ui.Button:
    label, emoji, style = JOB_BUTTONS[action]
    return discord.ui.Button(label=label, emoji=emoji, style=style, custom_id=job_custom_id(action, job_id))


def status_view(job: Job) -> discord.ui.View | None:
    """The Cancel button while the job can still be cancelled, else no components."""
    if is_final(job):
        return None
    return _layout(_job_button("cancel", job.id))


def result_view(job_id: int, models: Sequence[str] = ()) -> discord.ui.View:
    """The buttons under a delivered video: Re-roll, Vary, Delete, Info, Report; with several enabled ``models``,
    a second row with a select that opens the Vary form for the model chosen (the form holds five fields, Discord's
    most, so the model cannot be one of them)."""
    items: list[discord.ui.Item[discord.ui.View]] = [_job_button(action, job_id) for action in RESULT_ACTIONS]
    if len(models) > 1:
        items.append(
            discord.ui.Select(
                custom_id=job_custom_id(VARY_MODEL_ACTION, job_id),
                placeholder=VARY_MODEL_PLACEHOLDER,
                row=1,
                options=[discord.SelectOption(label=SPACES[key].display_name, value=key) for key in models],
            )
        )
    return _layout(*items)


def notice_view(job_id: int) -> discord.ui.View:
    """The Info button under a failure, cancel or could-not-post notice (it also marks the job's message)."""
    return _layout(_job_button("info", job_id))


def queue_listing_view(job_ids: list[int], page: int, pages: int, *, bot_wide: bool) -> discord.ui.View:
    """A queue listing's buttons: Cancel #N per job (five a row), then Previous / Refresh / Next."""
    buttons: list[discord.ui.Item[discord.ui.View]] = [
        discord.ui.Button(
            label=f"Cancel #{job_id}",
            style=discord.ButtonStyle.danger,
            custom_id=f"{ADMIN_PREFIX}:cancel:{job_id}",
            row=index // CANCEL_BUTTONS_PER_ROW,
        )
        for index, job_id in enumerate(job_ids)
    ]
    nav_row = (len(job_ids) + CANCEL_BUTTONS_PER_ROW - 1) // CANCEL_BUTTONS_PER_ROW
    listing = "oqueue" if bot_wide else "queue"
    disabled = {"prev": page == 0, "refresh": False, "next": page + 1 >= pages}
    for kind, label in QUEUE_PAGE_LABELS.items():
        buttons.append(
            discord.ui.Button(
                label=label,
                style=discord.ButtonStyle.secondary,
                row=nav_row,
                custom_id=page_custom_id(listing, page, kind),
                disabled=disabled[kind],
            )
        )
    return _layout(*buttons)


def log_listing_view(page: int, pages: int, *, bot_wide: bool) -> discord.ui.View:
    """An audit-log listing's buttons: Newer / Older."""
    listing = "olog" if bot_wide else "log"
    disabled = {"prev": page == 0, "next": page + 1 >= pages}
    return _layout(
        *(
            discord.ui.Button(
                label=label,
                style=discord.ButtonStyle.secondary,
                custom_id=page_custom_id(listing, page, kind),
                disabled=disabled[kind],
            )
            for kind, label in LOG_PAGE_LABELS.items()
        )
    )


def reports_view(job_ids: list[int], *, bot_wide: bool) -> discord.ui.View | None:
    """A reports listing's buttons: one row per reported video (Delete, Ban maker, Dismiss); at most five rows."""
    if not job_ids:
        return None
    scope = "o" if bot_wide else "s"
    return _layout(
        *(
            discord.ui.Button(
                label=label.format(job=job_id),
                style=REPORT_ACTION_STYLES[action],
                row=row,
                custom_id=report_custom_id(scope, action, job_id),
            )
            for row, job_id in enumerate(job_ids[:MAX_ROWS])
            for action, label in REPORT_ACTION_LABELS.items()
        )
    )


def clear_confirm_view(expires_at: int) -> discord.ui.View:
    """The ``/admin clear`` confirmation, valid until the unix time ``expires_at``."""
    return _layout(
        discord.ui.Button(
            label="Yes, cancel them all",
            style=discord.ButtonStyle.danger,
            custom_id=f"{ADMIN_PREFIX}:clear:{expires_at}",
        )
    )
