"""Injecting events the way Discord sends them: INTERACTION_CREATE (slash commands with options, message context
menus, component clicks, modal submits) and MESSAGE_CREATE (mentions, attachments, replies)."""

from __future__ import annotations

import secrets
import time
from collections.abc import Mapping, Sequence
from typing import Any

from . import payloads
from .gateway import FakeGateway
from .options import build_options
from .state import FakeAttachment, FakeInteraction, FakeMember
from .world import DEFAULT_TIMEOUT_SECONDS

APPLICATION_COMMAND, MESSAGE_COMPONENT, AUTOCOMPLETE, MODAL_SUBMIT = 2, 3, 4, 5
"""Interaction types."""


def _leaf_schema(command: dict[str, Any] | None, path: list[str]) -> dict[str, dict[str, Any]]:
    """Option name -> synced option of the leaf (sub)command at ``path``; {} when the command is not synced."""
    options: list[dict[str, Any]] = (command or {}).get("options") or []
    for part in path:
        options = next((o.get("options") or [] for o in options if o.get("name") == part), [])
    return {o["name"]: o for o in options if o.get("type") not in (1, 2)}


def _submitted(modal: dict[str, Any] | None, values: Mapping[str, str | Sequence[str]]) -> list[dict[str, Any]]:
    """The ``data.components`` of a modal submit, as Discord builds them: the shown modal's layout (action rows
    and labels, with their ids) holding each text input's ``value`` and each select's ``values`` from ``values``
    (by custom id; what is not given is empty). Without a shown modal: one action row per text input."""
    if modal is None:
        return [
            {"type": 1, "id": i + 1, "components": [{"type": 4, "id": 100 + i, "custom_id": k, "value": v}]}
            for i, (k, v) in enumerate(values.items())
        ]

    def answer(component: dict[str, Any]) -> dict[str, Any]:
        given = values.get(component["custom_id"])
        answered = {"type": component["type"], "id": component.get("id"), "custom_id": component["custom_id"]}
        if component["type"] == 4:
            answered["value"] = given if isinstance(given, str) else ""
        else:
            answered["values"] = [given] if isinstance(given, str) else list(given or [])
        return answered

    submitted: list[dict[str, Any]] = []
    for item in modal.get("components") or []:
        if item["type"] == 1:
            submitted.append({"type": 1, "id": item.get("id"), "components": [answer(c) for c in item["components"]]})
        elif item["type"] == 18:
            submitted.append({"type": 18, "id": item.get("id"), "component": answer(item["component"])})
    return submitted


class FakeInjector(FakeGateway):
    """Event injection on top of the gateway."""

    def _interaction_base(
        self,
        interaction_type: int,
        *,
        member: FakeMember | None,
        channel_id: int | None,
        guild_id: int | None,
        app_permissions: int | None,
        attachment_size_limit: int | None,
        locale: str,
    ) -> FakeInteraction:
        """``app_permissions``: what the interaction reports as the bot's permissions in the channel; None
        computes them as Discord does (the bot's roles and the channel's overwrites; a thread's parent's)."""
        member = member or self.member
        guild = self._guild(guild_id or member.guild_id)
        channel_id = channel_id or next(iter(guild.channels))
        channel = self.channels.get(channel_id)
        if channel is None:
            raise ValueError(f"no channel {channel_id} in the fake")
        interaction_id = payloads.snowflake()
        token = f"fake-interaction-{interaction_id}-{secrets.token_urlsafe(24)}"
        limit = attachment_size_limit if attachment_size_limit is not None else guild.upload_limit
        payload: dict[str, Any] = {
            "id": str(interaction_id),
            "application_id": str(self.application_id),
            "type": interaction_type,
            "token": token,
            "version": 1,
            "guild_id": str(guild.id),
            "guild": {"id": str(guild.id), "locale": "en-US", "features": []},
            "channel_id": str(channel_id),
            "channel": channel,
            "member": member.payload(permissions=guild.permissions_of(member)),
            "app_permissions": str(self.bot_permissions(channel_id) if app_permissions is None else app_permissions),
            "locale": locale,
            "guild_locale": "en-US",
            "entitlements": [],
            "authorizing_integration_owners": {"0": str(guild.id)},
            "context": 0,
            "attachment_size_limit": limit,
        }
        return FakeInteraction(
            id=interaction_id,
            token=token,
            type=interaction_type,
            application_id=self.application_id,
            guild_id=guild.id,
            channel_id=channel_id,
            user_id=member.user_id,
            payload=payload,
            created_at=0.0,
            attachment_size_limit=limit,
        )

    async def set_overwrite(
        self,
        channel_id: int,
        target: FakeMember | int,
        *,
        allow: int = 0,
        deny: int = 0,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
    ) -> None:
        """:meth:`overwrite` on a connected bot: change the channel's overwrite and dispatch CHANNEL_UPDATE, as
        Discord does when an admin edits a channel's permissions."""
        self.overwrite(channel_id, target, allow=allow, deny=deny)
        await self.dispatch("CHANNEL_UPDATE", self.channels[channel_id], timeout=timeout)

    async def delete_channel(self, channel_id: int, *, timeout: float = DEFAULT_TIMEOUT_SECONDS) -> None:
        """Delete a guild channel (and its threads): later calls on it get 404 Unknown Channel; dispatches
        CHANNEL_DELETE."""
        channel = self.channels.pop(channel_id)
        guild = self._guild(int(channel["guild_id"]))
        guild.channels.pop(channel_id, None)
        guild.threads.pop(channel_id, None)
        for thread_id in [t for t, data in guild.threads.items() if int(data["parent_id"]) == channel_id]:
            self.channels.pop(thread_id, None)
            guild.threads.pop(thread_id)
        await self.dispatch("CHANNEL_DELETE", channel, timeout=timeout)

    async def announce_thread(self, thread: dict[str, Any], *, timeout: float = DEFAULT_TIMEOUT_SECONDS) -> None:
        """Dispatch THREAD_CREATE for a thread made with :meth:`add_thread` after the bot connected."""
        await self.dispatch("THREAD_CREATE", {**thread, "newly_created": True}, timeout=timeout)

    async def _inject(self, interaction: FakeInteraction, timeout: float) -> FakeInteraction:
        await self.wait_until_connected(timeout)
        interaction.created_at = time.monotonic()
        self.interactions[interaction.id] = interaction
        await self._send_dispatch("INTERACTION_CREATE", interaction.payload)
        return interaction

    async def inject_slash(
        self,
        command: str,
        options: Mapping[str, Any] | None = None,
        *,
        member: FakeMember | None = None,
        channel_id: int | None = None,
        guild_id: int | None = None,
        app_permissions: int | None = None,
        attachment_size_limit: int | None = None,
        locale: str = "en-US",
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
    ) -> FakeInteraction:
        """Dispatch a slash command: ``command`` is ``"name"``, ``"name sub"`` or ``"name group sub"``.

        ``options`` maps option names to values (str/int/float/bool, FakeAttachment, FakeMember, or
        :class:`options.Option`); types come from the synced schema when there is one.
        """
        name, *path = command.split()
        interaction = self._interaction_base(
            APPLICATION_COMMAND,
            member=member,
            channel_id=channel_id,
            guild_id=guild_id,
            app_permissions=app_permissions,
            attachment_size_limit=attachment_size_limit,
            locale=locale,
        )
        synced = self.find_command(name, command_type=1, guild_id=interaction.guild_id)
        built, resolved = build_options(synced, path, options or {}, guild=self.guilds.get(interaction.guild_id or 0))
        data: dict[str, Any] = {
            "id": synced["id"] if synced else str(payloads.snowflake()),
            "name": name,
            "type": 1,
            "options": built,
        }
        if resolved:
            data["resolved"] = resolved
        if synced and synced.get("guild_id"):
            data["guild_id"] = synced["guild_id"]
        interaction.payload["data"] = data
        return await self._inject(interaction, timeout)

    async def inject_autocomplete(
        self,
        command: str,
        options: Mapping[str, Any],
        focused: str,
        *,
        member: FakeMember | None = None,
        channel_id: int | None = None,
        guild_id: int | None = None,
        app_permissions: int = payloads.PERMS_ALL,
        locale: str = "en-US",
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
    ) -> FakeInteraction:
        """Dispatch an autocomplete interaction (type 4) while the user types into option ``focused`` of ``command``.

        As Discord sends it: the command's options filled so far, the focused one marked ``"focused": true`` with
        the raw text typed so far as its value (a string whatever the option's type, "" before the first key).
        The bot answers with callback type 8 and its choices (read them from the recorded callback).
        """
        if focused not in options:
            raise ValueError(f"the focused option {focused!r} must be among the options")
        name, *path = command.split()
        interaction = self._interaction_base(
            AUTOCOMPLETE,
            member=member,
            channel_id=channel_id,
            guild_id=guild_id,
            app_permissions=app_permissions,
            attachment_size_limit=None,
            locale=locale,
        )
        synced = self.find_command(name, command_type=1, guild_id=interaction.guild_id)
        typed = {key: value for key, value in options.items() if key != focused}
        built, _ = build_options(synced, path, typed, guild=self.guilds.get(interaction.guild_id or 0))
        leaf = built
        for _part in path:
            leaf = leaf[0]["options"]
        schema = _leaf_schema(synced, path)
        option_type = schema.get(focused, {}).get("type", 3)
        if schema and not schema.get(focused, {}).get("autocomplete"):
            raise ValueError(f"option {focused!r} of /{command} does not have autocomplete in the synced schema")
        leaf.append({"name": focused, "type": option_type, "value": str(options[focused]), "focused": True})
        data: dict[str, Any] = {
            "id": synced["id"] if synced else str(payloads.snowflake()),
            "name": name,
            "type": 1,
            "options": built,
        }
        if synced and synced.get("guild_id"):
            data["guild_id"] = synced["guild_id"]
        interaction.payload["data"] = data
        return await self._inject(interaction, timeout)

    async def inject_message_command(
        self,
        name: str,
        message: dict[str, Any],
        *,
        member: FakeMember | None = None,
        channel_id: int | None = None,
        app_permissions: int | None = None,
        attachment_size_limit: int | None = None,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
    ) -> FakeInteraction:
        """Dispatch a message context-menu command (Apps -> ``name``) on ``message`` (from :meth:`add_message`)."""
        interaction = self._interaction_base(
            APPLICATION_COMMAND,
            member=member,
            channel_id=channel_id or int(message["channel_id"]),
            guild_id=None,
            app_permissions=app_permissions,
            attachment_size_limit=attachment_size_limit,
            locale="en-US",
        )
        synced = self.find_command(name, command_type=3, guild_id=interaction.guild_id)
        data: dict[str, Any] = {
            "id": synced["id"] if synced else str(payloads.snowflake()),
            "name": name,
            "type": 3,
            "target_id": message["id"],
            "resolved": {"messages": {message["id"]: message}},
        }
        if synced and synced.get("guild_id"):
            data["guild_id"] = synced["guild_id"]
        interaction.payload["data"] = data
        return await self._inject(interaction, timeout)

    async def inject_component(
        self,
        custom_id: str,
        message: dict[str, Any] | int,
        *,
        component_type: int = 2,
        values: Sequence[str] | None = None,
        member: FakeMember | None = None,
        app_permissions: int | None = None,
        attachment_size_limit: int | None = None,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
    ) -> FakeInteraction:
        """Dispatch a component click (button: type 2; selects take ``values``) on a message the bot sent.

        ``message`` is a message id or payload; its id must be the one the fake returned for the bot's message.
        """
        stored = self._message_for(message)
        interaction = self._interaction_base(
            MESSAGE_COMPONENT,
            member=member,
            channel_id=int(stored["channel_id"]),
            guild_id=None,
            app_permissions=app_permissions,
            attachment_size_limit=attachment_size_limit,
            locale="en-US",
        )
        data: dict[str, Any] = {"custom_id": custom_id, "component_type": component_type}
        if values is not None:
            data["values"] = list(values)
        interaction.payload["data"] = data
        interaction.payload["message"] = stored
        interaction.message_id = int(stored["id"])
        return await self._inject(interaction, timeout)

    async def inject_modal_submit(
        self,
        custom_id: str,
        values: Mapping[str, str | Sequence[str]],
        *,
        member: FakeMember | None = None,
        message: dict[str, Any] | int | None = None,
        channel_id: int | None = None,
        app_permissions: int | None = None,
        attachment_size_limit: int | None = None,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
    ) -> FakeInteraction:
        """Dispatch a modal submit: ``custom_id`` of the modal, ``values`` component custom_id -> a text input's
        value or a select's values. The components follow the last modal the bot showed with that custom id."""
        stored = self._message_for(message) if message is not None else None
        interaction = self._interaction_base(
            MODAL_SUBMIT,
            member=member,
            channel_id=int(stored["channel_id"]) if stored else channel_id,
            guild_id=None,
            app_permissions=app_permissions,
            attachment_size_limit=attachment_size_limit,
            locale="en-US",
        )
        shown = next(
            (
                i.modal
                for i in reversed(self.interactions.values())
                if i.modal is not None and i.modal.get("custom_id") == custom_id
            ),
            None,
        )
        interaction.payload["data"] = {"custom_id": custom_id, "components": _submitted(shown, values)}
        if stored is not None:
            interaction.payload["message"] = stored
            interaction.message_id = int(stored["id"])
        return await self._inject(interaction, timeout)

    async def inject_message(
        self,
        content: str,
        *,
        author: FakeMember | None = None,
        channel_id: int | None = None,
        attachments: Sequence[FakeAttachment] = (),
        mentions: Sequence[FakeMember] = (),
        reply_to: dict[str, Any] | int | None = None,
        embeds: Sequence[dict[str, Any]] = (),
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        queue: bool = False,
    ) -> dict[str, Any]:
        """Store and dispatch MESSAGE_CREATE; returns the full stored message.

        Without the MESSAGE_CONTENT intent the bot receives empty content/embeds/attachments/components unless
        the message mentions it (and a replied-to message is blanked the same way), as Discord does.
        """
        author = author or self.member
        channel_id = channel_id or self.channel_id
        reference = referenced = None
        if reply_to is not None:
            referenced = self._message_for(reply_to)
            reference = {
                "type": 0,
                "message_id": referenced["id"],
                "channel_id": referenced["channel_id"],
                "guild_id": str(author.guild_id),
                "fail_if_not_exists": True,
            }
        message = payloads.message_payload(
            message_id=payloads.snowflake(),
            channel_id=channel_id,
            author=author.user,
            content=content,
            attachments=[a.payload() for a in attachments],
            embeds=list(embeds),
            mentions=[m.user for m in mentions],
            message_type=19 if reply_to is not None else 0,
            message_reference=reference,
            referenced_message=referenced,
        )
        self.messages[int(message["id"])] = message
        await self.dispatch(
            "MESSAGE_CREATE", self._gateway_message(message, author.guild_id), timeout=timeout, queue=queue
        )
        return message

    def _gateway_message(self, message: dict[str, Any], guild_id: int | None) -> dict[str, Any]:
        event = self._visible(message)
        if event.get("referenced_message"):
            event["referenced_message"] = self._visible(event["referenced_message"])
        if guild_id is not None:
            event["guild_id"] = str(guild_id)
            member = self.guilds[guild_id].members.get(int(message["author"]["id"]))
            if member is not None:
                event["member"] = {k: v for k, v in member.payload().items() if k != "user"}
        return event
