"""The fake's world: guilds, channels, roles, members, attachments on the CDN, and interactions it injected."""

from __future__ import annotations

import dataclasses
from typing import Any

from . import payloads


@dataclasses.dataclass
class FakeMember:
    """A guild member. ``permissions`` overrides what interactions report for them; None computes it from the
    guild's roles like Discord (owner or an Administrator role: everything; else @everyone | their roles)."""

    guild_id: int
    user_id: int
    username: str
    permissions: int | None
    roles: list[int] = dataclasses.field(default_factory=list)
    flags: int = 0
    nick: str | None = None
    bot: bool = False
    joined_at: str = dataclasses.field(default_factory=payloads.iso_now)

    @property
    def user(self) -> dict[str, Any]:
        """The member's user object."""
        return payloads.user_payload(self.user_id, self.username, bot=self.bot)

    def payload(self, *, permissions: int | None = None) -> dict[str, Any]:
        """The member object; interactions carry the computed ``permissions``, GUILD_CREATE members do not."""
        return payloads.member_payload(
            self.user,
            roles=self.roles,
            permissions=permissions,
            flags=self.flags,
            nick=self.nick,
            joined_at=self.joined_at,
        )

    @property
    def mention(self) -> str:
        """``<@id>``, as a user types it."""
        return f"<@{self.user_id}>"


@dataclasses.dataclass
class FakeGuild:
    """A guild with its channels, roles and members."""

    id: int
    name: str
    owner_id: int
    premium_tier: int = 0
    bot_role_id: int = 0
    """The bot's managed role (set by ``FakeWorld.add_guild``)."""
    channels: dict[int, dict[str, Any]] = dataclasses.field(default_factory=dict)
    threads: dict[int, dict[str, Any]] = dataclasses.field(default_factory=dict)
    """Active threads (forum posts included), apart from ``channels`` as in GUILD_CREATE."""
    roles: dict[int, dict[str, Any]] = dataclasses.field(default_factory=dict)
    members: dict[int, FakeMember] = dataclasses.field(default_factory=dict)

    def permissions_of(self, member: FakeMember) -> int:
        """The guild-level permissions an interaction reports for ``member`` (its override, else computed)."""
        if member.permissions is not None:
            return member.permissions
        return self.base_permissions(member)

    def base_permissions(self, member: FakeMember) -> int:
        """The member's guild-wide permissions from roles alone (owner or Administrator: everything), ignoring
        the ``permissions`` override that interactions report for an invoking member."""
        if member.user_id == self.owner_id:
            return payloads.PERMS_ALL
        value = int(self.roles[self.id]["permissions"])
        for role_id in member.roles:
            value |= int(self.roles[role_id]["permissions"])
        return payloads.PERMS_ALL if value & payloads.PERM_ADMINISTRATOR else value

    def channel_permissions(self, member: FakeMember, channel: dict[str, Any]) -> int:
        """The member's permissions in ``channel`` as Discord computes them: base permissions; Administrator
        ignores overwrites; else the @everyone overwrite, then the member's role overwrites together (denies,
        then allows), then the member's own overwrite. A thread takes its parent's overwrites. Implicitly: no
        View Channel, nothing; where the member may not send (in a thread: Send Messages in Threads), no
        attachments, embeds, TTS or @everyone either."""
        base = self.base_permissions(member)
        if base & payloads.PERM_ADMINISTRATOR:
            return payloads.PERMS_ALL
        thread = int(channel.get("type", 0)) in payloads.THREAD_TYPES
        source = self.channels.get(int(channel["parent_id"])) if thread else channel
        overwrites = {(int(o["id"]), int(o["type"])): o for o in (source or {}).get("permission_overwrites", [])}
        value = base

        def apply(overwrite: dict[str, Any] | None) -> None:
            nonlocal value
            if overwrite is not None:
                value = (value & ~int(overwrite["deny"])) | int(overwrite["allow"])

        apply(overwrites.get((self.id, payloads.OVERWRITE_ROLE)))
        allow = deny = 0
        for role_id in member.roles:
            overwrite = overwrites.get((role_id, payloads.OVERWRITE_ROLE))
            if overwrite is not None:
                allow |= int(overwrite["allow"])
                deny |= int(overwrite["deny"])
        value = (value & ~deny) | allow
        apply(overwrites.get((member.user_id, payloads.OVERWRITE_MEMBER)))
        if not value & payloads.PERM_VIEW_CHANNEL:
            return 0
        send = payloads.PERM_SEND_MESSAGES_IN_THREADS if thread else payloads.PERM_SEND_MESSAGES
        if not value & send:
            value &= ~payloads.PERMS_NEED_SEND
        return value

    @property
    def upload_limit(self) -> int:
        """The per-file upload limit for this guild's boost tier, in bytes."""
        return payloads.PREMIUM_TIER_UPLOAD_LIMIT_BYTES[self.premium_tier]

    def payload(self) -> dict[str, Any]:
        """The GUILD_CREATE payload (available guild, all channels, roles and members)."""
        return {
            "id": str(self.id),
            "name": self.name,
            "icon": None,
            "splash": None,
            "discovery_splash": None,
            "owner_id": str(self.owner_id),
            "afk_channel_id": None,
            "afk_timeout": 300,
            "verification_level": 0,
            "default_message_notifications": 0,
            "explicit_content_filter": 0,
            "roles": list(self.roles.values()),
            "emojis": [],
            "stickers": [],
            "features": [],
            "mfa_level": 0,
            "application_id": None,
            "system_channel_id": None,
            "system_channel_flags": 0,
            "rules_channel_id": None,
            "vanity_url_code": None,
            "description": None,
            "banner": None,
            "premium_tier": self.premium_tier,
            "premium_subscription_count": 0,
            "preferred_locale": "en-US",
            "public_updates_channel_id": None,
            "nsfw_level": 0,
            "premium_progress_bar_enabled": False,
            "joined_at": payloads.iso_now(),
            "large": False,
            "unavailable": False,
            "member_count": len(self.members),
            "voice_states": [],
            "members": [m.payload() for m in self.members.values()],
            "channels": list(self.channels.values()),
            "threads": list(self.threads.values()),
            "presences": [],
            "stage_instances": [],
            "guild_scheduled_events": [],
            "soundboard_sounds": [],
        }


@dataclasses.dataclass
class FakeAttachment:
    """Bytes served from the fake's CDN route, with the attachment object that points at them."""

    id: int
    filename: str
    data: bytes
    content_type: str
    url: str
    width: int | None = None
    height: int | None = None
    description: str | None = None

    @property
    def size(self) -> int:
        """Length of the bytes."""
        return len(self.data)

    def payload(self) -> dict[str, Any]:
        """The attachment object (as in ``resolved.attachments`` and ``message.attachments``)."""
        return payloads.attachment_payload(
            self.id,
            self.filename,
            self.size,
            self.url,
            content_type=self.content_type,
            width=self.width,
            height=self.height,
            description=self.description,
        )


@dataclasses.dataclass
class FakeInteraction:
    """An interaction the fake injected, and what the bot has done with it so far."""

    id: int
    token: str
    type: int
    """1 ping, 2 application command, 3 component, 4 autocomplete, 5 modal submit."""
    application_id: int
    guild_id: int | None
    channel_id: int
    user_id: int
    payload: dict[str, Any]
    created_at: float
    """``time.monotonic()`` when it was dispatched; token expiry counts from here."""
    attachment_size_limit: int
    message_id: int | None = None
    """For component and modal interactions: the message the component sits on."""
    response_type: int | None = None
    """The callback type the bot answered with (None until it answers)."""
    original_message_id: int | None = None
    followup_ids: list[int] = dataclasses.field(default_factory=list)
    modal: dict[str, Any] | None = None
    """The modal the bot opened (callback type 9)."""
    expired: bool = False

    @property
    def acknowledged(self) -> bool:
        """Whether the bot has sent its one interaction callback."""
        return self.response_type is not None
