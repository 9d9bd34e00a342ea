"""Who may do what: the two scopes of power, checked at run time on every interaction.

- The bot's **operator**: the Discord application's owner (or its team's admins and developers, read at start:
  :mod:`bot.operators`), a user listed in ``OPERATOR_USER_IDS`` (or the older ``ADMIN_USER_IDS``), or a member
  holding a role listed in ``OPERATOR_ROLE_IDS`` (or ``ADMIN_ROLE_IDS``). Bot-wide powers: ``/operator ...``
  (pause and resume every server, bans, quotas, tiers, the whole queue and audit log) and queue priority.
- A **server admin**: a member with *Manage Server* (or *Administrator*) in the guild the interaction comes
  from, according to the permissions Discord resolved for that very interaction. Powers over that server only:
  ``/admin ...`` (its pause, caps, jobs, bans from it, its stats and log), and Cancel/Delete on its jobs. Anyone
  can invite the bot to a server of their own and be its admin there, so nothing a server admin can do reaches
  another server or the bot as a whole.

Checks: :func:`operator_only` and :func:`server_admin_only` on commands, :func:`require_operator` and
:func:`require_server_admin` first in admin buttons, :func:`check_job_access` for buttons and commands that act on
one job. ``default_permissions`` on a command group only hides it in Discord's UI: a server can change that hint,
and a forged interaction ignores it.

Every refusal is logged (who, what, which guild, which scope it needed) and answered with an ephemeral message.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import discord
from discord import app_commands

from bot.errors import NotYours

if TYPE_CHECKING:
    from jobs.models import Job

__all__ = (
    "OPERATOR_REFUSAL",
    "SERVER_REFUSAL",
    "NotAllowed",
    "ScopeSettings",
    "check_job_access",
    "command_scope",
    "no_such_job",
    "is_operator",
    "is_server_admin",
    "may_act_on_job",
    "may_use",
    "operator_only",
    "require_operator",
    "require_server_admin",
    "server_admin_only",
)

log = logging.getLogger(__name__)

#: What a member who is not the operator sees (ephemeral) for an ``/operator`` command or button.
OPERATOR_REFUSAL = "Only the bot's operator can do that: it acts on every server the bot is in."
#: What a member who is not an admin of this server (nor the operator) sees for an ``/admin`` command or button.
SERVER_REFUSAL = "Only an admin of this server (Manage Server) or the bot's operator can do that."

SCOPE_OPERATOR = "operator"
SCOPE_SERVER = "server"

T = TypeVar("T")


class ScopeSettings(Protocol):
    """The part of :class:`bot.settings.BotSettings` this module reads."""

    @property
    def operator_user_ids(self) -> Collection[int]: ...

    @property
    def operator_role_ids(self) -> Collection[int]: ...


class NotAllowed(app_commands.CheckFailure):
    """Raised by the command checks; ``str()`` is the user-facing refusal."""

    def __init__(self, message: str, user_id: int, action: str) -> None:
        super().__init__(message)
        self.user_id = user_id
        self.action = action


def _member_role_ids(member: discord.Member) -> set[int]:
    """The role ids Discord sent with the member.

    ``Member.roles`` resolves ids through the guild's role cache and silently drops ids it does not know; the
    interaction payload's ``member.roles`` is the authority, and discord.py keeps it in ``_roles``.
    """
    return {int(role_id) for role_id in member._roles}


def member_role_ids(actor: discord.Interaction | discord.Member | discord.User) -> frozenset[int]:
    """The role ids Discord sent with ``actor`` (an interaction's user, a member or a user): none outside a server.
    They select quota tiers, in Discord and on the web page (``/web`` stores them with the sign-in link)."""
    user = actor.user if isinstance(actor, discord.Interaction) else actor
    return frozenset(_member_role_ids(user)) if isinstance(user, discord.Member) else frozenset()


def is_operator(actor: discord.Interaction | discord.Member | discord.User, settings: ScopeSettings) -> bool:
    """Whether ``actor`` (an interaction's user, a member or a user) is the bot's operator."""
    if isinstance(actor, discord.Interaction):
        user: discord.Member | discord.User = actor.user
    elif isinstance(actor, (discord.Member, discord.User)):
        user = actor
    else:
        raise TypeError(f"is_operator: actor must be an Interaction, Member or User, not {type(actor).__name__}")
    if user.id in settings.operator_user_ids:
        return True
    return isinstance(user, discord.Member) and bool(_member_role_ids(user) & set(settings.operator_role_ids))


def is_server_admin(interaction: discord.Interaction, guild_id: int | None = None) -> bool:
    """Whether the interaction's member has Manage Server (or Administrator) in the guild it comes from, and that
    guild is ``guild_id`` when one is given (a job's server, say)."""
    if interaction.guild_id is None or not isinstance(interaction.user, discord.Member):
        return False
    if guild_id is not None and guild_id != interaction.guild_id:
        return False
    permissions = interaction.permissions
    return permissions.administrator or permissions.manage_guild


def _settings_of(interaction: discord.Interaction) -> ScopeSettings:
    """Who the operator is: ``interaction.client.operators`` (the application's owner and the settings; see
    :mod:`bot.operators`), else a client's ``.settings`` alone."""
    scope = getattr(interaction.client, "operators", None) or getattr(interaction.client, "settings", None)
    if scope is None:
        raise RuntimeError("permission check: the client has no .operators (expected bot.app.I2VBot)")
    return scope


def _action_name(interaction: discord.Interaction) -> str:
    command = interaction.command
    if command is not None:
        return "/" + command.qualified_name
    data: object = interaction.data or {}
    custom_id = data.get("custom_id") if isinstance(data, dict) else None
    return f"button {custom_id}" if custom_id else "interaction"


def log_refusal(interaction: discord.Interaction, action: str, needs: str) -> None:
    """One warning line per refusal: who tried what, where, and which scope it needed."""
    log.warning(
        "refusal: user %s (%s) tried %r in guild %s channel %s (needs %s)",
        interaction.user.id,
        interaction.user,
        action,
        interaction.guild_id,
        interaction.channel_id,
        needs,
    )


def _allowed(interaction: discord.Interaction, scope: str) -> bool:
    if is_operator(interaction, _settings_of(interaction)):
        return True
    return scope == SCOPE_SERVER and is_server_admin(interaction)


class ScopeCheck:
    """An app-command check that lets only ``scope`` through; :func:`command_scope` reads it back, so /help lists
    exactly the commands these checks would let the user run."""

    def __init__(self, scope: str, message: str) -> None:
        self.scope = scope
        self.message = message

    async def __call__(self, interaction: discord.Interaction) -> bool:
        if _allowed(interaction, self.scope):
            return True
        action = _action_name(interaction)
        log_refusal(interaction, action, self.scope)
        raise NotAllowed(self.message, interaction.user.id, action)


def _check(scope: str, message: str) -> Callable[[T], T]:
    return app_commands.check(ScopeCheck(scope, message))


def command_scope(command: app_commands.Command[Any, ..., Any]) -> str | None:
    """The scope ``command``'s checks require (``operator`` or ``server``), or None when anyone may run it."""
    scopes = {check.scope for check in command.checks if isinstance(check, ScopeCheck)}
    if SCOPE_OPERATOR in scopes:
        return SCOPE_OPERATOR
    return SCOPE_SERVER if scopes else None


def may_use(interaction: discord.Interaction, command: app_commands.Command[Any, ..., Any]) -> bool:
    """Whether the interaction's user passes ``command``'s scope check (nothing is logged: this only asks)."""
    scope = command_scope(command)
    return scope is None or _allowed(interaction, scope)


def operator_only() -> Callable[[T], T]:
    """An app-command check: only the bot's operator (the tree's error handler answers the refusal ephemerally)."""
    return _check(SCOPE_OPERATOR, OPERATOR_REFUSAL)


def server_admin_only() -> Callable[[T], T]:
    """An app-command check: an admin of the guild the command comes from, or the operator."""
    return _check(SCOPE_SERVER, SERVER_REFUSAL)


async def _require(interaction: discord.Interaction, scope: str, message: str) -> bool:
    if _allowed(interaction, scope):
        return True
    log_refusal(interaction, _action_name(interaction), scope)
    if interaction.response.is_done():
        await interaction.followup.send(message, ephemeral=True)
    else:
        await interaction.response.send_message(message, ephemeral=True)
    return False


async def require_operator(interaction: discord.Interaction) -> bool:
    """For buttons: ``True`` for the operator; otherwise log, answer ephemerally and return ``False``."""
    return await _require(interaction, SCOPE_OPERATOR, OPERATOR_REFUSAL)


async def require_server_admin(interaction: discord.Interaction) -> bool:
    """For buttons: ``True`` for an admin of the interaction's guild or the operator; otherwise log, answer
    ephemerally and return ``False``. The button's own job or listing must then belong to that guild."""
    return await _require(interaction, SCOPE_SERVER, SERVER_REFUSAL)


def may_act_on_job(interaction: discord.Interaction, settings: ScopeSettings, job: Job, *, server_admins: bool) -> bool:
    """The job's requester, the operator, or (when ``server_admins``) an admin of the job's own server."""
    if interaction.user.id == job.user_id or is_operator(interaction, settings):
        return True
    return server_admins and job.guild_id is not None and is_server_admin(interaction, job.guild_id)


def check_job_access(
    interaction: discord.Interaction, settings: ScopeSettings, job: Job, action: str, *, server_admins: bool = False
) -> None:
    """Raise :class:`~bot.errors.NotYours` (logged) unless :func:`may_act_on_job`.

    ``server_admins``: cancel and delete are also open to an admin of the job's server; re-roll, vary and info
    are not (they spend the requester's quota or show their request). The refusal reads as for a job that does
    not exist, so walking job numbers names nobody.
    """
    if may_act_on_job(interaction, settings, job, server_admins=server_admins):
        return
    log_refusal(interaction, f"{action} job {job.id}", "requester" + (" or server admin" if server_admins else ""))
    raise NotYours(no_such_job(job.id))


def no_such_job(job_id: int) -> str:
    """The answer about a job the user may not act on, or that does not exist: the same sentence for both."""
    return f"There is no such job of yours (#{job_id})."
