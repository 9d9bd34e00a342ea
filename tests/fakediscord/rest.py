"""REST API v10 route handlers: login, gateway info, application info, command sync, interaction callbacks,
interaction webhooks, channel messages (JSON and multipart), reactions, typing, DMs, guild/member reads."""

from __future__ import annotations

import dataclasses
import json
import re
import time
from collections.abc import Callable, Mapping
from typing import Any

from aiohttp import web

from bot.discord_limits import INVALID_FORM_BODY, INVALID_FORM_BODY_MESSAGE, Problem, discord_errors

from . import payloads
from .inject import APPLICATION_COMMAND, AUTOCOMPLETE, MESSAGE_COMPONENT, MODAL_SUBMIT, FakeInjector
from .limits import (
    CB_AUTOCOMPLETE,
    CB_DEFER,
    CB_DEFER_UPDATE,
    CB_MESSAGE,
    CB_MODAL,
    CB_UPDATE,
    callback_problems,
    command_problems,
    message_problems,
    sync_problems,
)
from .records import RecordedFile, RecordedRequest
from .state import FakeInteraction

INTENT_GUILD_MESSAGES = 1 << 9
INTENT_DIRECT_MESSAGES = 1 << 12
JSON_CONTENT_TYPE = "application/json"
"""discord.py only parses bodies whose Content-Type is exactly this (no charset)."""
_ALLOWED_CALLBACKS = {
    APPLICATION_COMMAND: {CB_MESSAGE, CB_DEFER, CB_MODAL},
    MESSAGE_COMPONENT: {CB_MESSAGE, CB_DEFER, CB_DEFER_UPDATE, CB_UPDATE, CB_MODAL},
    AUTOCOMPLETE: {CB_AUTOCOMPLETE},
    MODAL_SUBMIT: {CB_MESSAGE, CB_DEFER, CB_DEFER_UPDATE, CB_UPDATE},
}


class HTTPError(Exception):
    """Raised by route handlers; answered with Discord's JSON error body ``{"message", "code"}`` (and ``errors``
    for an invalid form body)."""

    def __init__(
        self,
        status: int,
        code: int,
        message: str,
        headers: Mapping[str, str] | None = None,
        errors: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(f"{status} {code} {message}" + (f" {errors}" if errors else ""))
        self.status, self.code, self.message = status, code, message
        self.headers = dict(headers or {})
        self.errors = errors

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"message": self.message, "code": self.code}
        if self.errors is not None:
            body["errors"] = self.errors
        return body


def refuse_invalid(found: list[Problem]) -> None:
    """Raise Discord's 400 / 50035 "Invalid Form Body" naming every broken field, if any."""
    if found:
        raise HTTPError(400, INVALID_FORM_BODY, INVALID_FORM_BODY_MESSAGE, errors=discord_errors(found))


@dataclasses.dataclass
class Body:
    """A parsed request body: JSON (or ``payload_json``) plus uploaded files."""

    json: Any
    files: list[RecordedFile]


Handler = Callable[..., Any]


def json_response(status: int, body: Any, headers: Mapping[str, str] | None = None) -> web.Response:
    """A response with ``Content-Type: application/json`` exactly (aiohttp's json_response adds a charset)."""
    all_headers = {"Content-Type": JSON_CONTENT_TYPE, **(headers or {})}
    return web.Response(status=status, body=json.dumps(body).encode(), headers=all_headers)


class FakeRest(FakeInjector):
    """REST handlers; each takes (record, body, *path groups) and returns (status, json)."""

    def __init__(self, *, bot_token: str | None, application_id: int | None, bot_name: str) -> None:
        super().__init__(bot_token=bot_token, application_id=application_id, bot_name=bot_name)
        self._routes: list[tuple[str, re.Pattern[str], Handler]] = []
        self._add_routes()

    def _add_routes(self) -> None:
        snowflake, token = r"(\d+)", r"([^/]+)"
        table: list[tuple[str, str, Handler]] = [
            ("GET", r"/users/@me", self._get_me),
            ("GET", rf"/users/{snowflake}", self._get_user),
            ("POST", r"/users/@me/channels", self._create_dm),
            ("GET", r"/gateway", self._get_gateway),
            ("GET", r"/gateway/bot", self._get_gateway_bot),
            ("GET", r"/oauth2/applications/@me", self._get_application),
            ("GET", r"/applications/@me", self._get_application),
            ("GET", rf"/applications/{snowflake}/commands", self._get_commands),
            ("PUT", rf"/applications/{snowflake}/commands", self._put_commands),
            ("POST", rf"/applications/{snowflake}/commands", self._post_command),
            ("DELETE", rf"/applications/{snowflake}/commands/{snowflake}", self._delete_command),
            ("GET", rf"/applications/{snowflake}/guilds/{snowflake}/commands", self._get_commands),
            ("PUT", rf"/applications/{snowflake}/guilds/{snowflake}/commands", self._put_commands),
            ("POST", rf"/applications/{snowflake}/guilds/{snowflake}/commands", self._post_command),
            ("DELETE", rf"/applications/{snowflake}/guilds/{snowflake}/commands/{snowflake}", self._delete_command),
            ("POST", rf"/interactions/{snowflake}/{token}/callback", self._callback),
            ("POST", rf"/webhooks/{snowflake}/{token}", self._webhook_execute),
            ("GET", rf"/webhooks/{snowflake}/{token}/messages/(@original|\d+)", self._webhook_get),
            ("PATCH", rf"/webhooks/{snowflake}/{token}/messages/(@original|\d+)", self._webhook_edit),
            ("DELETE", rf"/webhooks/{snowflake}/{token}/messages/(@original|\d+)", self._webhook_delete),
            ("GET", rf"/channels/{snowflake}", self._get_channel),
            ("GET", rf"/channels/{snowflake}/messages", self._list_messages),
            ("POST", rf"/channels/{snowflake}/messages", self._create_message),
            ("GET", rf"/channels/{snowflake}/messages/{snowflake}", self._get_message),
            ("PATCH", rf"/channels/{snowflake}/messages/{snowflake}", self._edit_message),
            ("DELETE", rf"/channels/{snowflake}/messages/{snowflake}", self._delete_message),
            ("PUT", rf"/channels/{snowflake}/messages/{snowflake}/reactions/([^/]+)/@me", self._add_reaction),
            ("DELETE", rf"/channels/{snowflake}/messages/{snowflake}/reactions/([^/]+)/@me", self._remove_reaction),
            ("POST", rf"/channels/{snowflake}/typing", self._typing),
            ("GET", rf"/guilds/{snowflake}", self._get_guild),
            ("GET", rf"/guilds/{snowflake}/roles", self._get_roles),
            ("GET", rf"/guilds/{snowflake}/members/{snowflake}", self._get_member),
        ]
        self._routes = [(method, re.compile(pattern + r"/?"), handler) for method, pattern, handler in table]

    def _attachments_from(self, body: Body, existing: list[dict[str, Any]] | None, limit: int) -> list[dict[str, Any]]:
        """Attachment objects for a create/edit: kept existing ones (by id) plus uploaded ``files[n]``."""
        files = {f.field: f for f in body.files}
        for sent in body.files:
            if sent.size > limit:
                raise HTTPError(
                    413, 40005, f"Request entity too large: {sent.filename} is {sent.size} bytes, limit {limit}"
                )
        spec = (body.json or {}).get("attachments")
        if spec is None:
            spec = [{"id": i} for i in range(len(body.files))] if body.files else None
        if spec is None:
            return list(existing or [])
        kept = {a["id"]: a for a in existing or []}
        result: list[dict[str, Any]] = []
        for entry in spec:
            entry_id = str(entry.get("id"))
            upload = files.get(f"files[{entry_id}]")
            if upload is not None:
                stored = self.add_attachment(upload.data, entry.get("filename") or upload.filename)
                stored.description = entry.get("description")
                result.append(stored.payload())
            elif entry_id in kept:
                result.append(kept[entry_id])
            else:
                raise HTTPError(
                    400,
                    50035,
                    f"Invalid Form Body: attachments[{entry_id}] names no file part and no existing attachment",
                )
        return result

    def _new_message(
        self,
        body: Body,
        *,
        channel_id: int,
        author: dict[str, Any],
        limit: int,
        webhook: bool,
        flags: int = 0,
        reference: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        data = body.json or {}
        content = data.get("content") or ""
        if not (
            content
            or data.get("embeds")
            or body.files
            or data.get("components")
            or data.get("sticker_ids")
            or data.get("poll")
        ):
            raise HTTPError(400, 50006, "Cannot send an empty message")
        referenced = None
        if reference is not None:
            referenced = self.messages.get(int(reference["message_id"]))
            if referenced is None and reference.get("fail_if_not_exists", True):
                raise HTTPError(400, 50035, "Invalid Form Body: message_reference: Unknown message")
        message = payloads.message_payload(
            message_id=payloads.snowflake(),
            channel_id=channel_id,
            author=author,
            content=content,
            attachments=self._attachments_from(body, None, limit),
            embeds=data.get("embeds") or [],
            components=data.get("components") or [],
            flags=flags | int(data.get("flags") or 0),
            webhook_id=self.application_id if webhook else None,
            application_id=self.application_id if webhook else None,
            nonce=data.get("nonce"),
            message_reference=reference if referenced is not None else None,
            referenced_message=referenced,
            message_type=19 if referenced is not None else 0,
        )
        mentions = [int(m) for m in re.findall(r"<@!?(\d+)>", content)]
        message["mentions"] = [
            payloads.user_payload(m.user_id, m.username, bot=m.bot)
            for g in self.guilds.values()
            for m in g.members.values()
            if m.user_id in mentions
        ]
        self.messages[int(message["id"])] = message
        return message

    def _apply_edit(self, message: dict[str, Any], body: Body, limit: int) -> dict[str, Any]:
        data = body.json or {}
        for key in ("content", "embeds", "components"):
            if key in data:
                message[key] = data[key] if data[key] is not None else ("" if key == "content" else [])
        if "flags" in data and data["flags"] is not None:
            message["flags"] = int(data["flags"]) | (message["flags"] & payloads.MESSAGE_FLAG_EPHEMERAL)
        message["attachments"] = self._attachments_from(body, message["attachments"], limit)
        message["flags"] &= ~payloads.MESSAGE_FLAG_LOADING
        message["edited_timestamp"] = payloads.iso_now()
        return message

    def _channel(self, channel_id: str) -> dict[str, Any]:
        channel = self.channels.get(int(channel_id))
        if channel is None:
            raise HTTPError(404, 10003, "Unknown Channel")
        return channel

    def _require(
        self,
        channel: dict[str, Any],
        *,
        send: bool = False,
        attach: bool = False,
        history: bool = False,
        reply: bool = False,
    ) -> None:
        """Refuse a bot-token call in a guild channel where the bot lacks what Discord checks for it: View Channel
        (403, 50001 Missing Access), sending (Send Messages; in a thread Send Messages in Threads), attaching
        files (403, 50013 Missing Permissions), reading history (403, 50001 for one message), replying without
        Read Message History (400, 160002). DMs are not checked."""
        if "guild_id" not in channel:
            return
        have = self.bot_permissions(int(channel["id"]))
        if not have & payloads.PERM_VIEW_CHANNEL:
            raise HTTPError(403, 50001, "Missing Access")
        thread = int(channel["type"]) in payloads.THREAD_TYPES
        send_bit = payloads.PERM_SEND_MESSAGES_IN_THREADS if thread else payloads.PERM_SEND_MESSAGES
        if (send and not have & send_bit) or (attach and not have & payloads.PERM_ATTACH_FILES):
            raise HTTPError(403, 50013, "Missing Permissions")
        if history and not have & payloads.PERM_READ_MESSAGE_HISTORY:
            raise HTTPError(403, 50001, "Missing Access")
        if reply and not have & payloads.PERM_READ_MESSAGE_HISTORY:
            raise HTTPError(400, 160002, "Cannot reply without permission to read message history")

    def _channel_message(self, channel_id: str, message_id: str) -> dict[str, Any]:
        self._channel(channel_id)
        message = self.messages.get(int(message_id))
        if message is None or message["channel_id"] != channel_id:
            raise HTTPError(404, 10008, "Unknown Message")
        return message

    def _channel_upload_limit(self, channel: dict[str, Any]) -> int:
        guild = self.guilds.get(int(channel.get("guild_id", 0)))
        return guild.upload_limit if guild else payloads.DEFAULT_ATTACHMENT_SIZE_LIMIT_BYTES

    async def _echo(self, event: str, message: dict[str, Any]) -> None:
        """Tell the bot about its own message changes, as Discord does for guild/DM message intents."""
        if self._session is None:
            return
        if event != "MESSAGE_DELETE" and message["flags"] & payloads.MESSAGE_FLAG_EPHEMERAL:
            return
        channel = self.channels.get(int(message["channel_id"]), {})
        needed = INTENT_DIRECT_MESSAGES if channel.get("type") == 1 else INTENT_GUILD_MESSAGES
        if not (self.intents or 0) & needed:
            return
        guild_id = int(channel["guild_id"]) if "guild_id" in channel else None
        if event == "MESSAGE_DELETE":
            data = {"id": message["id"], "channel_id": message["channel_id"]}
            if guild_id is not None:
                data["guild_id"] = str(guild_id)
            await self._send_dispatch(event, data)
        else:
            await self._send_dispatch(event, self._gateway_message(message, guild_id))

    async def _get_me(self, record: RecordedRequest, body: Body) -> tuple[int, Any]:
        return 200, {**self.bot_user, "verified": True, "mfa_enabled": False, "locale": "en-US"}

    async def _get_user(self, record: RecordedRequest, body: Body, user_id: str) -> tuple[int, Any]:
        for guild in self.guilds.values():
            member = guild.members.get(int(user_id))
            if member is not None:
                return 200, member.user
        raise HTTPError(404, 10013, "Unknown User")

    async def _create_dm(self, record: RecordedRequest, body: Body) -> tuple[int, Any]:
        recipient_id = int((body.json or {}).get("recipient_id", 0))
        _, user = await self._get_user(record, body, str(recipient_id))
        for channel in self.channels.values():
            if channel["type"] == 1 and channel["recipients"][0]["id"] == str(recipient_id):
                return 200, channel
        channel = payloads.dm_channel_payload(payloads.snowflake(), user)
        self.channels[int(channel["id"])] = channel
        return 200, channel

    async def _get_gateway(self, record: RecordedRequest, body: Body) -> tuple[int, Any]:
        return 200, {"url": self.gateway_url}

    async def _get_gateway_bot(self, record: RecordedRequest, body: Body) -> tuple[int, Any]:
        return 200, {
            "url": self.gateway_url,
            "shards": 1,
            "session_start_limit": {"total": 1000, "remaining": 999, "reset_after": 14_400_000, "max_concurrency": 1},
        }

    async def _get_application(self, record: RecordedRequest, body: Body) -> tuple[int, Any]:
        return 200, self.application_payload()

    def _command_pool(self, application_id: str, guild_id: str | None) -> list[dict[str, Any]]:
        if int(application_id) != self.application_id:
            raise HTTPError(403, 50001, f"Missing Access: application {application_id} is not this bot's")
        if guild_id is None:
            return self.global_commands
        if int(guild_id) not in self.guilds:
            raise HTTPError(404, 10004, "Unknown Guild")
        return self.guild_commands.setdefault(int(guild_id), [])

    def _stored_command(
        self, data: dict[str, Any], guild_id: str | None, previous: list[dict[str, Any]]
    ) -> dict[str, Any]:
        name = data.get("name")
        if not isinstance(name, str) or not name:
            raise HTTPError(400, 50035, f"Invalid Form Body: command name {name!r}")
        command_type = int(data.get("type", 1))
        if command_type == 1 and not data.get("description"):
            raise HTTPError(400, 50035, f"Invalid Form Body: slash command {name!r} needs a description")
        old = next((c for c in previous if c["name"] == name and int(c["type"]) == command_type), None)
        stored = {
            **data,
            "id": old["id"] if old else str(payloads.snowflake()),
            "application_id": str(self.application_id),
            "type": command_type,
            "description": data.get("description") or "",
            "version": str(payloads.snowflake()),
            # Discord stores the bit set and returns it as a string, whatever the client sent.
            "default_member_permissions": None
            if data.get("default_member_permissions") is None
            else str(int(data["default_member_permissions"])),
            "nsfw": bool(data.get("nsfw", False)),
        }
        if guild_id is not None:
            stored["guild_id"] = guild_id
        return stored

    async def _get_commands(
        self, record: RecordedRequest, body: Body, application_id: str, guild_id: str | None = None
    ) -> tuple[int, Any]:
        return 200, list(self._command_pool(application_id, guild_id))

    async def _put_commands(
        self, record: RecordedRequest, body: Body, application_id: str, guild_id: str | None = None
    ) -> tuple[int, Any]:
        pool = self._command_pool(application_id, guild_id)
        refuse_invalid(sync_problems(body.json))
        new = [self._stored_command(c, guild_id, pool) for c in body.json]
        pool[:] = new
        return 200, new

    async def _post_command(
        self, record: RecordedRequest, body: Body, application_id: str, guild_id: str | None = None
    ) -> tuple[int, Any]:
        pool = self._command_pool(application_id, guild_id)
        refuse_invalid(command_problems(body.json))
        stored = self._stored_command(body.json or {}, guild_id, pool)
        pool[:] = [c for c in pool if c["id"] != stored["id"]] + [stored]
        return 200, stored

    async def _delete_command(
        self, record: RecordedRequest, body: Body, application_id: str, *ids: str
    ) -> tuple[int, Any]:
        guild_id, command_id = (ids[0], ids[1]) if len(ids) == 2 else (None, ids[0])
        pool = self._command_pool(application_id, guild_id)
        if not any(c["id"] == command_id for c in pool):
            raise HTTPError(404, 10063, "Unknown application command")
        pool[:] = [c for c in pool if c["id"] != command_id]
        return 204, None

    def _interaction(self, interaction_id: str, token: str) -> FakeInteraction:
        interaction = self.interactions.get(int(interaction_id))
        if interaction is None or interaction.token != token:
            raise HTTPError(404, 10062, "Unknown interaction")
        return interaction

    async def _callback(self, record: RecordedRequest, body: Body, interaction_id: str, token: str) -> tuple[int, Any]:
        interaction = self._interaction(interaction_id, token)
        refuse_invalid(callback_problems(body.json))
        if self.callback_deadline is not None and time.monotonic() - interaction.created_at > self.callback_deadline:
            raise HTTPError(404, 10062, "Unknown interaction")
        if interaction.acknowledged:
            raise HTTPError(400, 40060, "Interaction has already been acknowledged.")
        data = body.json or {}
        callback_type = int(data.get("type", 0))
        if callback_type not in _ALLOWED_CALLBACKS.get(interaction.type, set()):
            raise HTTPError(
                400,
                50035,
                f"Invalid Form Body: callback type {callback_type} is not valid for "
                f"interaction type {interaction.type}",
            )
        inner = data.get("data") or {}
        flags = int(inner.get("flags") or 0)
        author = self.bot_user
        resource: dict[str, Any] = {"type": callback_type}
        summary: dict[str, Any] = {
            "id": str(interaction.id),
            "type": interaction.type,
            "activity_instance_id": None,
            "response_message_id": None,
            "response_message_loading": False,
            "response_message_ephemeral": bool(flags & payloads.MESSAGE_FLAG_EPHEMERAL),
        }
        if callback_type in (CB_MESSAGE, CB_DEFER):
            if callback_type == CB_MESSAGE:
                message = self._new_message(
                    Body(inner, body.files),
                    channel_id=interaction.channel_id,
                    author=author,
                    limit=interaction.attachment_size_limit,
                    webhook=True,
                )
            else:
                message = payloads.message_payload(
                    message_id=payloads.snowflake(),
                    channel_id=interaction.channel_id,
                    author=author,
                    flags=payloads.MESSAGE_FLAG_LOADING | (flags & payloads.MESSAGE_FLAG_EPHEMERAL),
                    webhook_id=self.application_id,
                    application_id=self.application_id,
                )
                self.messages[int(message["id"])] = message
                summary["response_message_loading"] = True
            message["interaction_metadata"] = {
                "id": str(interaction.id),
                "type": interaction.type,
                "user": interaction.payload["member"]["user"],
                "authorizing_integration_owners": {},
            }
            interaction.original_message_id = int(message["id"])
            summary["response_message_id"] = message["id"]
            if callback_type == CB_MESSAGE:
                resource["message"] = message
        elif callback_type in (CB_UPDATE, CB_DEFER_UPDATE):
            if interaction.message_id is None:
                raise HTTPError(400, 50035, "Invalid Form Body: this interaction has no message to update")
            message = self.messages[interaction.message_id]
            interaction.original_message_id = interaction.message_id
            summary["response_message_id"] = message["id"]
            if callback_type == CB_UPDATE:
                self._apply_edit(message, Body(inner, body.files), interaction.attachment_size_limit)
                resource["message"] = message
        elif callback_type == CB_MODAL:
            if not inner.get("custom_id") or not inner.get("title") or not inner.get("components"):
                raise HTTPError(400, 50035, "Invalid Form Body: a modal needs custom_id, title and components")
            interaction.modal = inner
        interaction.response_type = callback_type
        if callback_type in (CB_MESSAGE, CB_DEFER):
            await self._echo("MESSAGE_CREATE", self.messages[interaction.original_message_id or 0])
        elif callback_type == CB_UPDATE:
            await self._echo("MESSAGE_UPDATE", self.messages[interaction.original_message_id or 0])
        return 200, {"interaction": summary, "resource": resource}

    def _webhook_interaction(self, application_id: str, token: str) -> FakeInteraction:
        if int(application_id) != self.application_id:
            raise HTTPError(404, 10015, "Unknown Webhook")
        interaction = next((i for i in self.interactions.values() if i.token == token), None)
        if interaction is None:
            raise HTTPError(401, 50027, "Invalid Webhook Token")
        age = time.monotonic() - interaction.created_at
        if interaction.expired or (self.token_lifetime is not None and age > self.token_lifetime):
            raise HTTPError(401, 50027, "Invalid Webhook Token")
        if not interaction.acknowledged:
            raise HTTPError(404, 10015, "Unknown Webhook")
        return interaction

    def _webhook_message(self, interaction: FakeInteraction, message_id: str) -> dict[str, Any]:
        wanted = interaction.original_message_id if message_id == "@original" else int(message_id)
        if wanted is None or (wanted != interaction.original_message_id and wanted not in interaction.followup_ids):
            raise HTTPError(404, 10008, "Unknown Message")
        message = self.messages.get(wanted)
        if message is None:
            raise HTTPError(404, 10008, "Unknown Message")
        return message

    async def _webhook_execute(
        self, record: RecordedRequest, body: Body, application_id: str, token: str
    ) -> tuple[int, Any]:
        interaction = self._webhook_interaction(application_id, token)
        refuse_invalid(message_problems(body.json, route="webhook"))
        original = self.messages.get(interaction.original_message_id or 0)
        if (
            original is not None
            and original["flags"] & payloads.MESSAGE_FLAG_LOADING
            and interaction.response_type == CB_DEFER
        ):
            # Discord: the first follow-up after a "thinking" defer replaces the loading message.
            message = self._apply_edit(original, body, interaction.attachment_size_limit)
            await self._echo("MESSAGE_UPDATE", message)
        else:
            message = self._new_message(
                body,
                channel_id=interaction.channel_id,
                author=self.bot_user,
                limit=interaction.attachment_size_limit,
                webhook=True,
            )
            interaction.followup_ids.append(int(message["id"]))
            await self._echo("MESSAGE_CREATE", message)
        if record.query.get("wait") in ("0", "false"):
            return 204, None
        return 200, message

    async def _webhook_get(
        self, record: RecordedRequest, body: Body, application_id: str, token: str, message_id: str
    ) -> tuple[int, Any]:
        interaction = self._webhook_interaction(application_id, token)
        return 200, self._webhook_message(interaction, message_id)

    async def _webhook_edit(
        self, record: RecordedRequest, body: Body, application_id: str, token: str, message_id: str
    ) -> tuple[int, Any]:
        interaction = self._webhook_interaction(application_id, token)
        message = self._webhook_message(interaction, message_id)
        refuse_invalid(message_problems(body.json, route="edit"))
        self._apply_edit(message, body, interaction.attachment_size_limit)
        await self._echo("MESSAGE_UPDATE", message)
        return 200, message

    async def _webhook_delete(
        self, record: RecordedRequest, body: Body, application_id: str, token: str, message_id: str
    ) -> tuple[int, Any]:
        interaction = self._webhook_interaction(application_id, token)
        message = self._webhook_message(interaction, message_id)
        del self.messages[int(message["id"])]
        await self._echo("MESSAGE_DELETE", message)
        return 204, None

    async def _get_channel(self, record: RecordedRequest, body: Body, channel_id: str) -> tuple[int, Any]:
        channel = self._channel(channel_id)
        self._require(channel)
        return 200, channel

    async def _list_messages(self, record: RecordedRequest, body: Body, channel_id: str) -> tuple[int, Any]:
        channel = self._channel(channel_id)
        self._require(channel)
        if "guild_id" in channel and not self.bot_permissions(int(channel_id)) & payloads.PERM_READ_MESSAGE_HISTORY:
            return 200, []  # Discord: without Read Message History no messages are returned
        limit = int(record.query.get("limit", 50))
        newest_first = list(reversed(self.channel_messages(int(channel_id))))
        return 200, [self._visible(m) for m in newest_first[:limit]]

    async def _create_message(self, record: RecordedRequest, body: Body, channel_id: str) -> tuple[int, Any]:
        channel = self._channel(channel_id)
        refuse_invalid(message_problems(body.json, route="create"))
        reference = (body.json or {}).get("message_reference")
        self._require(channel, send=True, attach=bool(body.files), reply=reference is not None)
        if reference is not None:
            reference = {"type": 0, "channel_id": channel_id, **reference}
        message = self._new_message(
            body,
            channel_id=int(channel_id),
            author=self.bot_user,
            limit=self._channel_upload_limit(channel),
            webhook=False,
            reference=reference,
        )
        await self._echo("MESSAGE_CREATE", message)
        return 200, message

    async def _get_message(
        self, record: RecordedRequest, body: Body, channel_id: str, message_id: str
    ) -> tuple[int, Any]:
        self._require(self._channel(channel_id), history=True)
        return 200, self._visible(self._channel_message(channel_id, message_id))

    async def _edit_message(
        self, record: RecordedRequest, body: Body, channel_id: str, message_id: str
    ) -> tuple[int, Any]:
        channel = self._channel(channel_id)
        self._require(channel, attach=bool(body.files))
        message = self._channel_message(channel_id, message_id)
        if int(message["author"]["id"]) != self.bot_user_id:
            raise HTTPError(403, 50005, "Cannot edit a message authored by another user")
        refuse_invalid(message_problems(body.json, route="edit"))
        self._apply_edit(message, body, self._channel_upload_limit(channel))
        await self._echo("MESSAGE_UPDATE", message)
        return 200, message

    async def _delete_message(
        self, record: RecordedRequest, body: Body, channel_id: str, message_id: str
    ) -> tuple[int, Any]:
        self._require(self._channel(channel_id))
        message = self._channel_message(channel_id, message_id)
        del self.messages[int(message_id)]
        await self._echo("MESSAGE_DELETE", message)
        return 204, None

    async def _add_reaction(
        self, record: RecordedRequest, body: Body, channel_id: str, message_id: str, emoji: str
    ) -> tuple[int, Any]:
        message = self._channel_message(channel_id, message_id)
        reactions = message.setdefault("reactions", [])
        existing = next((r for r in reactions if r["emoji"]["name"] == emoji), None)
        if existing is None:
            reactions.append({"count": 1, "me": True, "emoji": {"id": None, "name": emoji}})
        elif not existing["me"]:
            existing["count"] += 1
            existing["me"] = True
        return 204, None

    async def _remove_reaction(
        self, record: RecordedRequest, body: Body, channel_id: str, message_id: str, emoji: str
    ) -> tuple[int, Any]:
        message = self._channel_message(channel_id, message_id)
        for reaction in list(message.get("reactions", [])):
            if reaction["emoji"]["name"] == emoji and reaction["me"]:
                reaction["count"] -= 1
                reaction["me"] = False
                if reaction["count"] == 0:
                    message["reactions"].remove(reaction)
        return 204, None

    async def _typing(self, record: RecordedRequest, body: Body, channel_id: str) -> tuple[int, Any]:
        self._require(self._channel(channel_id), send=True)
        return 204, None

    async def _get_guild(self, record: RecordedRequest, body: Body, guild_id: str) -> tuple[int, Any]:
        guild = self.guilds.get(int(guild_id))
        if guild is None:
            raise HTTPError(404, 10004, "Unknown Guild")
        data = guild.payload()
        for key in (
            "members",
            "channels",
            "threads",
            "presences",
            "voice_states",
            "joined_at",
            "large",
            "member_count",
            "unavailable",
        ):
            data.pop(key, None)
        return 200, data

    async def _get_roles(self, record: RecordedRequest, body: Body, guild_id: str) -> tuple[int, Any]:
        guild = self.guilds.get(int(guild_id))
        if guild is None:
            raise HTTPError(404, 10004, "Unknown Guild")
        return 200, list(guild.roles.values())

    async def _get_member(self, record: RecordedRequest, body: Body, guild_id: str, user_id: str) -> tuple[int, Any]:
        guild = self.guilds.get(int(guild_id))
        if guild is None:
            raise HTTPError(404, 10004, "Unknown Guild")
        member = guild.members.get(int(user_id))
        if member is None:
            raise HTTPError(404, 10007, "Unknown Member")
        return 200, member.payload()
