"""The fake's state and its recorder: guilds, channels, members, messages, attachments, synced commands,
injected interactions; every recorded request and gateway frame; and the wait helpers over them."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import Any

from . import payloads
from .records import GatewayFrame, RecordedRequest
from .state import FakeAttachment, FakeGuild, FakeInteraction, FakeMember

DEFAULT_TIMEOUT_SECONDS = 5.0
"""How long wait helpers and injections wait by default."""
POLL_SECONDS = 0.02
"""How often wait helpers re-check conditions the fake cannot observe (bot-side state)."""
INTENT_MESSAGE_CONTENT = 1 << 15


class FakeTimeout(AssertionError):
    """A wait helper ran out of time; the message lists what the fake did see."""


class FakeWorld:
    """State, records and waiting; the base of :class:`server.FakeDiscord`."""

    def __init__(self, *, bot_token: str | None, application_id: int | None, bot_name: str) -> None:
        self.bot_token = bot_token
        """When set, bot-authenticated calls with another token get 401 (login fails), IDENTIFY gets 4004."""
        self.application_id = application_id or payloads.snowflake()
        self.bot_user_id = self.application_id
        self.bot_name = bot_name
        self.requests: list[RecordedRequest] = []
        self.gateway_frames: list[GatewayFrame] = []
        self.token_lifetime: float | None = None
        """Seconds after which interaction webhooks answer 401/50027 (None: never; Discord: 900)."""
        self.callback_deadline: float | None = None
        """Seconds after which an interaction callback answers 404/10062 (None: never; Discord: 3)."""
        self.intents: int | None = None
        """The intents of the last IDENTIFY."""
        self.guilds: dict[int, FakeGuild] = {}
        self.channels: dict[int, dict[str, Any]] = {}
        self.messages: dict[int, dict[str, Any]] = {}
        self.attachments: dict[int, FakeAttachment] = {}
        self.interactions: dict[int, FakeInteraction] = {}
        self.global_commands: list[dict[str, Any]] = []
        self.guild_commands: dict[int, list[dict[str, Any]]] = {}
        self._changed = asyncio.Event()
        self._seed_world()

    @property
    def base_url(self) -> str:
        """``http://HOST:PORT`` (defined by the server)."""
        raise NotImplementedError

    @property
    def cdn_base(self) -> str:
        """Where attachment bytes are served."""
        return self.base_url + "/cdn/attachments"

    def _seed_world(self) -> None:
        guild = self.add_guild("Fake Guild")
        self.guild = guild
        self.channel_id = next(iter(guild.channels))
        self.bot_member = guild.members[self.bot_user_id]
        self.admin_role_id = self.add_role(guild.id, "Admin", permissions=payloads.PERM_ADMINISTRATOR)
        self.member = self.add_member(guild.id, "alice")
        self.admin = self.add_member(guild.id, "root", roles=[self.admin_role_id], owner=True)
        self.app_owner = self.add_member(guild.id, "maker")
        """Who made the bot's application (``GET /oauth2/applications/@me`` names them), an ordinary member."""
        self.app_team: dict[int, tuple[FakeMember, str, int]] | None = None
        """When set (:meth:`set_team`), a team owns the application: user id -> (member, role, membership state)."""

    def set_team(self, members: Sequence[tuple[FakeMember, str]], *, invited: Sequence[FakeMember] = ()) -> int:
        """Make the application team-owned: ``members`` are (member, role) with role "admin", "developer" or
        "read_only", accepted; ``invited`` have not accepted yet (role "developer"). Returns the team id. The first
        member is the team's owner. ``set_team([])`` is refused (a team has its owner)."""
        if not members:
            raise ValueError("set_team(members=[]): a team has at least its owner")
        for _, role in members:
            if role not in ("admin", "developer", "read_only"):
                raise ValueError(f"set_team: role {role!r} is not admin, developer or read_only")
        team = {m.user_id: (m, role, 2) for m, role in members}
        team.update({m.user_id: (m, "developer", 1) for m in invited})
        self.app_team = team
        self.app_team_id = payloads.snowflake()
        return self.app_team_id

    def application_payload(self) -> dict[str, Any]:
        """The application object (``GET /oauth2/applications/@me``): owned by :attr:`app_owner`, or by a team
        (:meth:`set_team`), whose ``owner`` is then a stand-in user for the team, as on Discord."""
        owner: dict[str, Any] = self.app_owner.user
        team = None
        if self.app_team is not None:
            team_id = self.app_team_id
            first = next(iter(self.app_team.values()))[0]
            owner = {**payloads.user_payload(team_id, f"team{team_id}"), "flags": 1024, "public_flags": 1024}
            team = {
                "id": str(team_id),
                "name": "The makers",
                "icon": None,
                "owner_user_id": str(first.user_id),
                "members": [
                    {
                        "membership_state": state,
                        "team_id": str(team_id),
                        "user": m.user,
                        "role": role,
                        "permissions": ["*"],
                    }
                    for m, role, state in self.app_team.values()
                ],
            }
        return {
            "id": str(self.application_id),
            "name": self.bot_name,
            "icon": None,
            "description": "",
            "bot_public": False,
            "bot_require_code_grant": False,
            "owner": owner,
            "team": team,
            "verify_key": "0" * 64,
            "flags": 0,
            "summary": "",
            "bot": self.bot_user,
            "approximate_guild_count": len(self.guilds),
            "redirect_uris": [],
            "tags": [],
        }

    @property
    def bot_user(self) -> dict[str, Any]:
        """The bot's user object (``GET /users/@me``, READY)."""
        return payloads.user_payload(self.bot_user_id, self.bot_name, bot=True)

    def add_guild(self, name: str, *, premium_tier: int = 0, channel_name: str = "general") -> FakeGuild:
        """A guild with an @everyone role, one text channel and the bot as a member: its managed role
        (``guild.bot_role_id``) has every permission but Administrator, so channel overwrites apply to it."""
        if premium_tier not in payloads.PREMIUM_TIER_UPLOAD_LIMIT_BYTES:
            raise ValueError(f"add_guild(premium_tier={premium_tier!r}): must be 0..3")
        guild = FakeGuild(id=payloads.snowflake(), name=name, owner_id=0, premium_tier=premium_tier)
        guild.roles[guild.id] = payloads.role_payload(guild.id, "@everyone", payloads.PERMS_MEMBER)
        self.guilds[guild.id] = guild
        self.add_channel(guild.id, channel_name)
        guild.bot_role_id = self.add_role(guild.id, self.bot_name, permissions=payloads.PERMS_BOT_ROLE)
        guild.roles[guild.bot_role_id].update(managed=True, tags={"bot_id": str(self.bot_user_id)})
        self.add_member(guild.id, self.bot_name, roles=[guild.bot_role_id], bot=True, user_id=self.bot_user_id)
        return guild

    def add_channel(self, guild_id: int, name: str, *, nsfw: bool = False, forum: bool = False) -> dict[str, Any]:
        """A text channel in ``guild_id``; ``nsfw``: an age-restricted channel; ``forum=True``: a forum channel
        (post in it with :meth:`add_thread`)."""
        guild = self._guild(guild_id)
        channel = payloads.text_channel_payload(
            payloads.snowflake(),
            guild.id,
            name,
            position=len(guild.channels),
            nsfw=nsfw,
            channel_type=payloads.CHANNEL_FORUM if forum else payloads.CHANNEL_TEXT,
        )
        guild.channels[int(channel["id"])] = channel
        self.channels[int(channel["id"])] = channel
        return channel

    def add_thread(
        self, parent_id: int, name: str, *, private: bool = False, owner: FakeMember | None = None
    ) -> dict[str, Any]:
        """A thread in channel ``parent_id`` (in a forum channel: a forum post). Add it before the bot connects
        (GUILD_CREATE lists it), or announce it with ``inject.announce_thread``."""
        parent = self.channels.get(parent_id)
        if parent is None or "guild_id" not in parent or int(parent["type"]) in payloads.THREAD_TYPES:
            raise ValueError(f"add_thread(parent_id={parent_id}): not a guild text or forum channel of the fake")
        guild = self._guild(int(parent["guild_id"]))
        thread = payloads.thread_payload(
            payloads.snowflake(), guild.id, parent_id, name, owner_id=(owner or self.member).user_id, private=private
        )
        guild.threads[int(thread["id"])] = thread
        self.channels[int(thread["id"])] = thread
        return thread

    def overwrite(self, channel_id: int, target: FakeMember | int, *, allow: int = 0, deny: int = 0) -> None:
        """Set the permission overwrite of ``target`` (a member, or a role id: the guild id is @everyone) on a
        channel, replacing any it had; ``allow=deny=0`` removes it. Threads have none (they take their parent's).
        Once the bot is connected, use ``inject.set_overwrite``, which also tells the bot (CHANNEL_UPDATE)."""
        channel = self.channels.get(channel_id)
        if channel is None or "permission_overwrites" not in channel:
            raise ValueError(f"overwrite(channel_id={channel_id}): not a guild channel with overwrites")
        if isinstance(target, FakeMember):
            target_id, kind = target.user_id, payloads.OVERWRITE_MEMBER
        else:
            target_id, kind = int(target), payloads.OVERWRITE_ROLE
            if target_id not in self._guild(int(channel["guild_id"])).roles:
                raise ValueError(f"overwrite(target={target}): no such role in the channel's guild")
        kept = [o for o in channel["permission_overwrites"] if int(o["id"]) != target_id]
        if allow or deny:
            kept.append({"id": str(target_id), "type": kind, "allow": str(allow), "deny": str(deny)})
        channel["permission_overwrites"] = kept

    def bot_permissions(self, channel_id: int) -> int:
        """The bot's permissions in a guild channel or thread, as Discord computes them (``app_permissions``)."""
        channel = self.channels[channel_id]
        guild = self._guild(int(channel["guild_id"]))
        return guild.channel_permissions(guild.members[self.bot_user_id], channel)

    def add_role(self, guild_id: int, name: str, *, permissions: int = 0) -> int:
        """A role in ``guild_id``; returns its id."""
        guild = self._guild(guild_id)
        role_id = payloads.snowflake()
        guild.roles[role_id] = payloads.role_payload(role_id, name, permissions, position=len(guild.roles))
        return role_id

    def add_member(
        self,
        guild_id: int,
        username: str,
        *,
        permissions: int | None = None,
        roles: Sequence[int] = (),
        flags: int = 0,
        bot: bool = False,
        user_id: int | None = None,
        owner: bool = False,
    ) -> FakeMember:
        """A member of ``guild_id``. ``permissions`` overrides what interactions report for them (0 is allowed);
        None computes it from ``roles`` and ownership, as Discord does."""
        guild = self._guild(guild_id)
        for role in roles:
            if role not in guild.roles:
                raise ValueError(f"add_member(roles=...): role {role} is not in guild {guild_id}")
        member = FakeMember(
            guild_id=guild.id,
            user_id=user_id or payloads.snowflake(),
            username=username,
            permissions=permissions,
            roles=list(roles),
            flags=flags,
            bot=bot,
        )
        guild.members[member.user_id] = member
        if owner:
            guild.owner_id = member.user_id
        return member

    def set_member_permissions(self, member: FakeMember, permissions: int | None) -> None:
        """Override what interactions report as ``member.permissions`` (e.g. 0); None: compute from roles."""
        if permissions is not None and permissions < 0:
            raise ValueError(f"set_member_permissions(permissions={permissions}): must be >= 0")
        member.permissions = permissions

    def add_attachment(
        self,
        data: bytes,
        filename: str,
        *,
        content_type: str | None = None,
        width: int | None = None,
        height: int | None = None,
    ) -> FakeAttachment:
        """Register bytes on the CDN route; the returned attachment goes into options, messages, resolved data."""
        if not filename or "/" in filename:
            raise ValueError(f"add_attachment(filename={filename!r}): need a plain file name")
        attachment_id = payloads.snowflake()
        attachment = FakeAttachment(
            id=attachment_id,
            filename=filename,
            data=bytes(data),
            content_type=content_type or payloads.content_type_for(filename),
            url=f"{self.cdn_base}/{attachment_id}/{filename}",
            width=width,
            height=height,
        )
        self.attachments[attachment_id] = attachment
        return attachment

    def add_message(
        self,
        *,
        author: FakeMember | None = None,
        content: str = "",
        channel_id: int | None = None,
        attachments: Sequence[FakeAttachment] = (),
        embeds: Sequence[dict[str, Any]] = (),
    ) -> dict[str, Any]:
        """Store a message (from ``author``, default ``member``) without dispatching it; returns its payload."""
        author = author or self.member
        message = payloads.message_payload(
            message_id=payloads.snowflake(),
            channel_id=channel_id or self.channel_id,
            author=author.user,
            content=content,
            attachments=[a.payload() for a in attachments],
            embeds=list(embeds),
        )
        self.messages[int(message["id"])] = message
        return message

    def commands(self, guild_id: int | None = None) -> list[dict[str, Any]]:
        """The application commands the bot synced (global, or for ``guild_id``)."""
        return list(self.global_commands if guild_id is None else self.guild_commands.get(guild_id, []))

    def find_command(self, name: str, *, command_type: int = 1, guild_id: int | None = None) -> dict[str, Any] | None:
        """A synced command by name and type: the guild's first, then global."""
        pools = ([self.guild_commands.get(guild_id, [])] if guild_id is not None else []) + [self.global_commands]
        for pool in pools:
            for command in pool:
                if command["name"] == name and int(command.get("type", 1)) == command_type:
                    return command
        return None

    def channel_messages(self, channel_id: int | None = None) -> list[dict[str, Any]]:
        """Messages currently in a channel (default: the default channel), oldest first."""
        channel_id = channel_id or self.channel_id
        return sorted(
            (m for m in self.messages.values() if int(m["channel_id"]) == channel_id), key=lambda m: int(m["id"])
        )

    def _guild(self, guild_id: int) -> FakeGuild:
        try:
            return self.guilds[guild_id]
        except KeyError:
            raise ValueError(f"no guild {guild_id} in the fake (have {sorted(self.guilds)})") from None

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait_until(
        self,
        check: Callable[[], Any],
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        what: Callable[[], str] | str = "condition",
    ) -> Any:
        """Until ``check()`` returns something other than None/False (returned); FakeTimeout naming ``what``.

        Re-checks on every change the fake sees and every ``POLL_SECONDS`` (for bot-side state).
        """
        deadline = time.monotonic() + timeout
        while True:
            result = check()
            if result is not None and result is not False:
                return result
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise FakeTimeout(what() if callable(what) else f"{what} not met within {timeout}s")
            event = self._changed
            try:
                await asyncio.wait_for(event.wait(), min(remaining, POLL_SECONDS))
            except TimeoutError:
                pass

    async def wait_for(
        self, predicate: Callable[[RecordedRequest], bool], timeout: float = DEFAULT_TIMEOUT_SECONDS, *, after: int = 0
    ) -> RecordedRequest:
        """The first answered request (from index ``after``) matching ``predicate``; FakeTimeout otherwise."""

        def check() -> RecordedRequest | None:
            return next((r for r in self.requests[after:] if r.status and predicate(r)), None)

        def what() -> str:
            seen = "\n  ".join(r.describe() for r in self.requests[after:][-25:]) or "(none)"
            return f"no request matched within {timeout}s; requests seen:\n  {seen}"

        return await self.wait_until(check, timeout, what)

    wait_for_request = wait_for

    async def wait_for_gateway(
        self, predicate: Callable[[GatewayFrame], bool], timeout: float = DEFAULT_TIMEOUT_SECONDS
    ) -> GatewayFrame:
        """The first gateway frame from the client matching ``predicate``."""
        return await self.wait_until(
            lambda: next((f for f in self.gateway_frames if predicate(f)), None),
            timeout,
            lambda: f"no gateway frame matched within {timeout}s; ops seen: {[f.op for f in self.gateway_frames]}",
        )

    def _visible(self, message: dict[str, Any]) -> dict[str, Any]:
        """What the bot may see of ``message`` given its intents (Discord blanks content without the intent)."""
        event = dict(message)
        intents = self.intents or 0
        channel = self.channels.get(int(message["channel_id"]), {})
        mentioned = any(int(u["id"]) == self.bot_user_id for u in message.get("mentions", []))
        own = int(message["author"]["id"]) == self.bot_user_id
        if not (intents & INTENT_MESSAGE_CONTENT or mentioned or own or channel.get("type") == 1):
            event.update(content="", embeds=[], attachments=[], components=[])
        return event

    def _message_for(self, message: dict[str, Any] | int) -> dict[str, Any]:
        message_id = int(message["id"]) if isinstance(message, dict) else int(message)
        try:
            return self.messages[message_id]
        except KeyError:
            raise ValueError(f"no message {message_id} in the fake (was it sent through the fake?)") from None
