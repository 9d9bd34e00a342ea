"""Who may run the bot's admin commands and press its admin-only buttons.

An admin is, in the guild where the interaction happens, a member with *Manage Server* (or *Administrator*)
according to the permissions Discord resolved for that interaction, or a user listed in ``ADMIN_USER_IDS``, or a
member holding a role listed in ``ADMIN_ROLE_IDS``.

The check runs at call time, in every admin command (:func:`admin_only`) and in every admin-only button handler
(:func:`require_admin`). ``default_permissions`` on the ``/admin`` group only hides the commands in Discord's UI:
it is a hint that a server can change and that a forged interaction ignores.

Every refusal is logged (who, which command or button, which guild) and answered with an ephemeral message.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection
from typing import Protocol, TypeVar

import discord
from discord import app_commands

__all__ = (
    "REFUSAL_MESSAGE",
    "AdminSettings",
    "NotAdmin",
    "admin_only",
    "is_admin",
    "require_admin",
)

log = logging.getLogger(__name__)

#: What a refused member sees (ephemeral).
REFUSAL_MESSAGE = "Only a server admin (Manage Server, or listed in the bot's admin settings) can do that."

T = TypeVar("T")


class AdminSettings(Protocol):
    """The part of :class:`bot.settings.BotSettings` this module reads."""

    @property
    def admin_user_ids(self) -> Collection[int]: ...

    @property
    def admin_role_ids(self) -> Collection[int]: ...


class NotAdmin(app_commands.CheckFailure):
    """Raised by :func:`admin_only` when the invoker is not an admin; ``str()`` is the user-facing refusal."""

    def __init__(self, user_id: int, action: str) -> None:
        super().__init__(REFUSAL_MESSAGE)
        self.user_id = user_id
        self.action = action


def _member_role_ids(member: discord.Member) -> set[int]:
    """The role ids Discord sent with the member.

    ``Member.roles`` resolves ids through the guild's role cache and silently drops ids it does not know; the
    interaction payload's ``member.roles`` is the authority, and discord.py keeps it in ``_roles``.
    """
    return {int(role_id) for role_id in member._roles}


def _has_manage_guild(permissions: discord.Permissions) -> bool:
    """Manage Server, or Administrator (which implies every permission)."""
    return permissions.administrator or permissions.manage_guild


def is_admin(actor: discord.Interaction | discord.Member | discord.User, settings: AdminSettings) -> bool:
    """Whether ``actor`` may use the admin commands.

    Parameters
    ----------
    actor:
        An interaction (preferred: its member's permissions are the ones Discord resolved for this very
        interaction), a guild member, or a plain user (a DM or an unknown guild: only ``ADMIN_USER_IDS`` count).
    settings:
        Anything with ``admin_user_ids`` and ``admin_role_ids`` (see :class:`bot.settings.BotSettings`).
    """
    if isinstance(actor, discord.Interaction):
        user: discord.Member | discord.User = actor.user
        permissions: discord.Permissions | None = actor.permissions if isinstance(user, discord.Member) else None
    elif isinstance(actor, (discord.Member, discord.User)):
        user = actor
        permissions = None
        if isinstance(actor, discord.Member):
            permissions = actor.resolved_permissions or actor.guild_permissions
    else:
        raise TypeError(f"is_admin: actor must be an Interaction, Member or User, not {type(actor).__name__}")

    if user.id in settings.admin_user_ids:
        return True
    if not isinstance(user, discord.Member):
        return False
    if permissions is not None and _has_manage_guild(permissions):
        return True
    return bool(_member_role_ids(user) & set(settings.admin_role_ids))


def _settings_of(interaction: discord.Interaction) -> AdminSettings:
    """The bot's settings, from ``interaction.client.settings``."""
    settings = getattr(interaction.client, "settings", None)
    if settings is None:
        raise RuntimeError("admin check: the client has no .settings (expected bot.app.I2VBot)")
    return settings


def _log_refusal(interaction: discord.Interaction, action: str) -> None:
    log.warning(
        "admin refusal: user %s (%s) tried %r in guild %s channel %s",
        interaction.user.id,
        interaction.user,
        action,
        interaction.guild_id,
        interaction.channel_id,
    )


def _action_name(interaction: discord.Interaction) -> str:
    command = interaction.command
    if command is not None:
        return "/" + command.qualified_name
    data = interaction.data or {}
    custom_id = data.get("custom_id") if isinstance(data, dict) else None
    return f"button {custom_id}" if custom_id else "interaction"


def admin_only() -> Callable[[T], T]:
    """An app-command check: the command runs only for an admin, else :class:`NotAdmin` is raised.

    The refusal is logged here. The tree's error handler answers ``CheckFailure`` with ``str(error)``
    ephemerally; :class:`NotAdmin`'s ``str()`` is :data:`REFUSAL_MESSAGE`.
    """

    async def predicate(interaction: discord.Interaction) -> bool:
        if is_admin(interaction, _settings_of(interaction)):
            return True
        action = _action_name(interaction)
        _log_refusal(interaction, action)
        raise NotAdmin(interaction.user.id, action)

    return app_commands.check(predicate)


async def require_admin(interaction: discord.Interaction, *, settings: AdminSettings | None = None) -> bool:
    """For button and modal handlers: ``True`` for an admin; otherwise log, answer ephemerally, return ``False``.

    Call it first in every admin-only component callback, before touching anything.
    """
    if is_admin(interaction, settings if settings is not None else _settings_of(interaction)):
        return True
    _log_refusal(interaction, _action_name(interaction))
    if interaction.response.is_done():
        await interaction.followup.send(REFUSAL_MESSAGE, ephemeral=True)
    else:
        await interaction.response.send_message(REFUSAL_MESSAGE, ephemeral=True)
    return False
