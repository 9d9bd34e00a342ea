"""Payload factories shaped like Discord's documented API v10 objects (users, members, guilds, messages, ...).

Every dispatch the fake sends is built here, so the shapes discord.py 2.7 requires (``attachment_size_limit``,
``member.flags``, ``message.content``, ...) live in one tested place. Snowflakes are real ones (timestamped), so
``created_at`` values make sense on the bot side.
"""

from __future__ import annotations

import datetime as dt
import itertools
import mimetypes
import threading
import time
from typing import Any

DISCORD_EPOCH_MS = 1_420_070_400_000
"""Discord's snowflake epoch (2015-01-01T00:00:00Z) in milliseconds."""

PERM_ADMINISTRATOR = 1 << 3
PERM_MANAGE_GUILD = 1 << 5
PERM_VIEW_CHANNEL = 1 << 10
PERM_SEND_MESSAGES = 1 << 11
PERM_SEND_TTS_MESSAGES = 1 << 12
PERM_EMBED_LINKS = 1 << 14
PERM_ATTACH_FILES = 1 << 15
PERM_READ_MESSAGE_HISTORY = 1 << 16
PERM_MENTION_EVERYONE = 1 << 17
PERM_SEND_MESSAGES_IN_THREADS = 1 << 38
PERMS_NEED_SEND = PERM_SEND_TTS_MESSAGES | PERM_MENTION_EVERYONE | PERM_EMBED_LINKS | PERM_ATTACH_FILES
"""What Discord implicitly denies where one may not send messages (in a thread: Send Messages in Threads)."""
PERM_USE_APPLICATION_COMMANDS = 1 << 31
PERMS_MEMBER = (
    PERM_VIEW_CHANNEL
    | PERM_SEND_MESSAGES
    | PERM_EMBED_LINKS
    | PERM_ATTACH_FILES
    | PERM_READ_MESSAGE_HISTORY
    | PERM_USE_APPLICATION_COMMANDS
)
"""What an ordinary member gets in the fake's default guild."""
PERMS_ALL = (1 << 51) - 1
"""Every permission bit Discord defines today (what an administrator's computed permissions look like)."""
PERMS_BOT_ROLE = PERMS_ALL & ~PERM_ADMINISTRATOR
"""The bot's own role in each fake guild: every permission but Administrator, so channel overwrites apply to it."""
CHANNEL_TEXT, CHANNEL_DM, CHANNEL_PUBLIC_THREAD, CHANNEL_PRIVATE_THREAD, CHANNEL_FORUM = 0, 1, 11, 12, 15
THREAD_TYPES = frozenset({10, CHANNEL_PUBLIC_THREAD, CHANNEL_PRIVATE_THREAD})
OVERWRITE_ROLE, OVERWRITE_MEMBER = 0, 1

DEFAULT_ATTACHMENT_SIZE_LIMIT_BYTES = 10 * 1024 * 1024
"""Upload limit of an unboosted guild since January 2025 (``attachment_size_limit`` in interactions)."""
PREMIUM_TIER_UPLOAD_LIMIT_BYTES = {0: 10 * 1024 * 1024, 1: 10 * 1024 * 1024, 2: 50 * 1024 * 1024, 3: 100 * 1024 * 1024}

MESSAGE_FLAG_EPHEMERAL = 1 << 6
MESSAGE_FLAG_LOADING = 1 << 7

_counter = itertools.count()
_counter_lock = threading.Lock()


def snowflake() -> int:
    """A new, unique, time-ordered Discord snowflake."""
    with _counter_lock:
        increment = next(_counter) & 0xFFF
    ms = int(time.time() * 1000) - DISCORD_EPOCH_MS
    return (ms << 22) | (1 << 17) | increment


def iso_now() -> str:
    """The current UTC time in Discord's ISO-8601 form."""
    return dt.datetime.now(dt.UTC).isoformat()


def content_type_for(filename: str) -> str:
    """The MIME type Discord would report for ``filename`` (uploaded parts arrive as octet-stream)."""
    guessed, _ = mimetypes.guess_type(filename)
    return guessed or "application/octet-stream"


def user_payload(user_id: int, username: str, *, bot: bool = False, global_name: str | None = None) -> dict[str, Any]:
    """A user object."""
    return {
        "id": str(user_id),
        "username": username,
        "discriminator": "0",
        "global_name": global_name if global_name is not None else (None if bot else username.title()),
        "avatar": None,
        "bot": bot,
        "public_flags": 0,
        "flags": 0,
    }


def member_payload(
    user: dict[str, Any],
    *,
    roles: list[int],
    permissions: int | None,
    flags: int = 0,
    nick: str | None = None,
    joined_at: str,
) -> dict[str, Any]:
    """A guild member; ``permissions`` is only present in interaction payloads (computed, as a string)."""
    data: dict[str, Any] = {
        "user": user,
        "nick": nick,
        "avatar": None,
        "roles": [str(r) for r in roles],
        "joined_at": joined_at,
        "premium_since": None,
        "deaf": False,
        "mute": False,
        "flags": flags,
        "pending": False,
        "communication_disabled_until": None,
    }
    if permissions is not None:
        data["permissions"] = str(permissions)
    return data


def role_payload(role_id: int, name: str, permissions: int, *, position: int = 0) -> dict[str, Any]:
    """A role object."""
    return {
        "id": str(role_id),
        "name": name,
        "color": 0,
        "colors": {"primary_color": 0, "secondary_color": None, "tertiary_color": None},
        "hoist": False,
        "icon": None,
        "unicode_emoji": None,
        "position": position,
        "permissions": str(permissions),
        "managed": False,
        "mentionable": False,
        "flags": 0,
    }


def text_channel_payload(
    channel_id: int,
    guild_id: int,
    name: str,
    *,
    position: int = 0,
    nsfw: bool = False,
    channel_type: int = CHANNEL_TEXT,
) -> dict[str, Any]:
    """A guild text channel (type 0), or a forum channel (type 15: its posts are threads); ``nsfw``:
    age-restricted."""
    return {
        "id": str(channel_id),
        "type": channel_type,
        "guild_id": str(guild_id),
        "name": name,
        "position": position,
        "permission_overwrites": [],
        "nsfw": nsfw,
        "topic": None,
        "last_message_id": None,
        "rate_limit_per_user": 0,
        "parent_id": None,
        "flags": 0,
    }


def thread_payload(
    thread_id: int, guild_id: int, parent_id: int, name: str, *, owner_id: int, private: bool = False
) -> dict[str, Any]:
    """A thread (type 11 public, 12 private); a thread in a forum channel is a forum post. Threads have no
    overwrites of their own: permissions come from the parent channel."""
    return {
        "id": str(thread_id),
        "type": CHANNEL_PRIVATE_THREAD if private else CHANNEL_PUBLIC_THREAD,
        "guild_id": str(guild_id),
        "parent_id": str(parent_id),
        "owner_id": str(owner_id),
        "name": name,
        "last_message_id": None,
        "rate_limit_per_user": 0,
        "message_count": 0,
        "member_count": 1,
        "total_message_sent": 0,
        "flags": 0,
        "thread_metadata": {
            "archived": False,
            "auto_archive_duration": 1440,
            "archive_timestamp": iso_now(),
            "locked": False,
            "create_timestamp": iso_now(),
        },
    }


def dm_channel_payload(channel_id: int, recipient: dict[str, Any]) -> dict[str, Any]:
    """A DM channel (type 1)."""
    return {"id": str(channel_id), "type": 1, "last_message_id": None, "recipients": [recipient], "flags": 0}


def attachment_payload(
    attachment_id: int,
    filename: str,
    size: int,
    url: str,
    *,
    content_type: str | None = None,
    width: int | None = None,
    height: int | None = None,
    description: str | None = None,
) -> dict[str, Any]:
    """An attachment object whose ``url``/``proxy_url`` point at the fake's CDN route."""
    data: dict[str, Any] = {
        "id": str(attachment_id),
        "filename": filename,
        "size": size,
        "url": url,
        "proxy_url": url,
        "content_type": content_type or content_type_for(filename),
    }
    if width is not None and height is not None:
        data["width"] = width
        data["height"] = height
    if description is not None:
        data["description"] = description
    return data


def message_payload(
    *,
    message_id: int,
    channel_id: int,
    author: dict[str, Any],
    content: str = "",
    attachments: list[dict[str, Any]] | None = None,
    embeds: list[dict[str, Any]] | None = None,
    components: list[dict[str, Any]] | None = None,
    mentions: list[dict[str, Any]] | None = None,
    mention_roles: list[int] | None = None,
    flags: int = 0,
    message_type: int = 0,
    webhook_id: int | None = None,
    application_id: int | None = None,
    message_reference: dict[str, Any] | None = None,
    referenced_message: dict[str, Any] | None = None,
    nonce: str | int | None = None,
    timestamp: str | None = None,
) -> dict[str, Any]:
    """A full message object (what REST returns; gateway events add ``guild_id`` and ``member``)."""
    data: dict[str, Any] = {
        "id": str(message_id),
        "channel_id": str(channel_id),
        "type": message_type,
        "author": author,
        "content": content,
        "timestamp": timestamp or iso_now(),
        "edited_timestamp": None,
        "tts": False,
        "mention_everyone": False,
        "mentions": mentions or [],
        "mention_roles": [str(r) for r in (mention_roles or [])],
        "attachments": attachments or [],
        "embeds": embeds or [],
        "components": components or [],
        "reactions": [],
        "pinned": False,
        "flags": flags,
    }
    if webhook_id is not None:
        data["webhook_id"] = str(webhook_id)
    if application_id is not None:
        data["application_id"] = str(application_id)
    if message_reference is not None:
        data["message_reference"] = message_reference
        data["referenced_message"] = referenced_message
    if nonce is not None:
        data["nonce"] = nonce
    return data
