"""What the bot needs in a channel to post a job's status and result, checked before any GPU time is spent.

:data:`POST_PERMISSIONS` is the one list: see the channel, send messages there (in a thread or forum post:
*Send Messages in Threads*, which Discord checks there instead), attach the MP4, and read the message history (a
status or result message replies to the request, and delivery reads the channel back to never post twice). No
message the bot posts in a channel carries an embed (embeds go only into ephemeral answers, which need no channel
permission), so *Embed Links* is not asked for. The invite URL's permissions integer is built from the same list
(:func:`invite_url`).

Every request path (``/animate``, *Apps → Animate*, a mention, Re-roll, Vary) calls :func:`check_can_post` with the
permissions Discord resolved for the bot in that channel (``interaction.app_permissions``; for a mention, the
channel's computed permissions for the bot's member) before downloading or queueing anything.
"""

from __future__ import annotations

import discord

from bot.errors import UserFacingError
from bot.render import missing_permissions_text

POST_PERMISSIONS = discord.Permissions(
    view_channel=True,
    send_messages=True,
    send_messages_in_threads=True,
    attach_files=True,
    read_message_history=True,
)
"""Everything posting a job's status and result needs; in a given channel, one of the two "send" permissions
applies (:func:`needed_in`). The invite URL asks for all of them."""

INVITE_SCOPES = ("bot", "applications.commands")
THREAD_TYPES = frozenset(
    {discord.ChannelType.public_thread, discord.ChannelType.private_thread, discord.ChannelType.news_thread}
)
PERMISSION_NAMES = {
    "view_channel": "View Channel",
    "send_messages": "Send Messages",
    "send_messages_in_threads": "Send Messages in Threads",
    "attach_files": "Attach Files",
    "read_message_history": "Read Message History",
}
"""Each permission of :data:`POST_PERMISSIONS` as Discord's server settings name it."""


class MissingPermissions(UserFacingError):
    """The bot may not post a job's status or result in this channel; nothing was queued."""

    def __init__(self, missing: list[str]) -> None:
        super().__init__(missing_permissions_text(missing))
        self.missing = missing


def is_thread(channel: object) -> bool:
    """Whether ``channel`` is a thread (a forum post is one too)."""
    return getattr(channel, "type", None) in THREAD_TYPES


def needed_in(channel: object) -> discord.Permissions:
    """:data:`POST_PERMISSIONS` as they apply in ``channel``: a thread needs *Send Messages in Threads* and not
    *Send Messages*; any other channel the reverse."""
    needed = discord.Permissions(POST_PERMISSIONS.value)
    if is_thread(channel):
        needed.send_messages = False
    else:
        needed.send_messages_in_threads = False
    return needed


def missing_in(channel: object, have: discord.Permissions) -> list[str]:
    """The names (as Discord shows them) of what the bot lacks in ``channel`` to post there, in a fixed order."""
    needed = needed_in(channel)
    return [PERMISSION_NAMES[name] for name, wanted in needed if wanted and not getattr(have, name)]


def check_can_post(channel: object, have: discord.Permissions) -> None:
    """Raise :class:`MissingPermissions` (one sentence naming each missing permission) unless the bot may post a
    job's status and result in ``channel`` with permissions ``have``."""
    missing = missing_in(channel, have)
    if missing:
        raise MissingPermissions(missing)


def invite_url(application_id: int) -> str:
    """The OAuth2 URL that adds the bot to a server with exactly :data:`POST_PERMISSIONS`."""
    return discord.utils.oauth_url(application_id, permissions=POST_PERMISSIONS, scopes=INVITE_SCOPES)
