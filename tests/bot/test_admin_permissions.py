"""``bot.permissions``' two scopes on real discord.py objects built from interaction payloads (no network).

The end-to-end tests in test_admin.py go through the fake Discord; these pin down each rule on its own, including
the cases a guild interaction cannot produce (a DM, a bare member, a wrong argument).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import discord
import pytest
import pytest_asyncio

from bot.errors import NotYours
from bot.permissions import check_job_access, is_operator, is_server_admin, may_act_on_job
from jobs.errors import format_duration
from tests.fakediscord import payloads

if TYPE_CHECKING:  # discord.types is for type checkers: importing it at run time hits its own import cycle
    from discord.types.interactions import Interaction as InteractionPayload
    from discord.types.user import User as UserPayload

GUILD_ID = 4242
CHANNEL_ID = 4343
OTHER_GUILD_ID = 4244
OPERATOR_ID = 777
OPERATOR_ROLE_ID = 555
OTHER_ROLE_ID = 556


@dataclass(frozen=True)
class Settings:
    """The two fields ``is_operator`` reads from ``BotSettings``."""

    operator_user_ids: frozenset[int] = frozenset({OPERATOR_ID})
    operator_role_ids: frozenset[int] = frozenset({OPERATOR_ROLE_ID})


SETTINGS = Settings()


@pytest_asyncio.fixture
async def client() -> AsyncIterator[discord.Client]:
    """A discord.py client that never connects; its connection state turns payloads into objects."""
    client = discord.Client(intents=discord.Intents.default())
    # As after login: the state knows the bot user (Interaction adds it to the guild as ``me``).
    bot_user = payloads.user_payload(1, "bot", bot=True)
    # The payload helpers build plain JSON dicts; discord.py types them as TypedDicts.
    client._connection.user = discord.ClientUser(state=client._connection, data=cast("UserPayload", bot_user))
    try:
        yield client
    finally:
        await client.close()


def _member(user_id: int, *, permissions: int | None, roles: tuple[int, ...] = ()) -> dict[str, Any]:
    return payloads.member_payload(
        payloads.user_payload(user_id, f"user{user_id}"),
        roles=list(roles),
        permissions=permissions,
        joined_at=payloads.iso_now(),
    )


def guild_interaction(
    client: discord.Client, user_id: int, *, permissions: int, roles: tuple[int, ...] = ()
) -> discord.Interaction:
    """A slash-command interaction in a guild, as Discord sends it."""
    data = {
        "id": str(payloads.snowflake()),
        "application_id": "1",
        "type": 2,
        "token": "t",
        "version": 1,
        "guild_id": str(GUILD_ID),
        "guild": {"id": str(GUILD_ID), "locale": "en-US", "features": []},
        "channel_id": str(CHANNEL_ID),
        "channel": payloads.text_channel_payload(CHANNEL_ID, GUILD_ID, "general"),
        "member": _member(user_id, permissions=permissions, roles=roles),
        "app_permissions": str(payloads.PERMS_ALL),
        "locale": "en-US",
        "entitlements": [],
        "authorizing_integration_owners": {},
        "context": 0,
        "attachment_size_limit": 10 * 1024 * 1024,
        "data": {"id": "9", "name": "admin", "type": 1},
    }
    return discord.Interaction(data=cast("InteractionPayload", data), state=client._connection)


def dm_interaction(client: discord.Client, user_id: int) -> discord.Interaction:
    """A slash-command interaction in a DM: a user, no member, no permissions."""
    user = payloads.user_payload(user_id, f"user{user_id}")
    data = {
        "id": str(payloads.snowflake()),
        "application_id": "1",
        "type": 2,
        "token": "t",
        "version": 1,
        "channel_id": "99",
        "channel": payloads.dm_channel_payload(99, user),
        "user": user,
        "app_permissions": "0",
        "locale": "en-US",
        "entitlements": [],
        "authorizing_integration_owners": {},
        "context": 1,
        "attachment_size_limit": 10 * 1024 * 1024,
        "data": {"id": "9", "name": "admin", "type": 1},
    }
    return discord.Interaction(data=cast("InteractionPayload", data), state=client._connection)


@pytest.mark.parametrize(
    ("user_id", "permissions", "roles", "operator", "server_admin"),
    [
        (1, payloads.PERMS_MEMBER | payloads.PERM_MANAGE_GUILD, (), False, True),  # Manage Server: this server only
        (2, payloads.PERM_ADMINISTRATOR, (), False, True),  # Administrator implies Manage Server
        (3, payloads.PERMS_ALL, (), False, True),  # what Discord reports for the owner
        (OPERATOR_ID, 0, (), True, False),  # OPERATOR_USER_IDS, whatever the permissions
        (4, 0, (OTHER_ROLE_ID, OPERATOR_ROLE_ID), True, False),  # OPERATOR_ROLE_IDS
        (5, 0, (), False, False),  # permissions 0
        (6, payloads.PERMS_MEMBER, (OTHER_ROLE_ID,), False, False),  # an ordinary member with an unrelated role
    ],
)
async def test_guild_interactions(
    client: discord.Client, user_id: int, permissions: int, roles: tuple[int, ...], operator: bool, server_admin: bool
) -> None:
    interaction = guild_interaction(client, user_id, permissions=permissions, roles=roles)
    assert isinstance(interaction.user, discord.Member)
    assert is_operator(interaction, SETTINGS) is operator
    assert is_operator(interaction.user, SETTINGS) is operator
    # Manage Server counts for the guild the interaction comes from, never for another one.
    assert is_server_admin(interaction) is server_admin
    assert is_server_admin(interaction, GUILD_ID) is server_admin
    assert is_server_admin(interaction, OTHER_GUILD_ID) is False


async def test_dm_only_operator_user_ids_count(client: discord.Client) -> None:
    assert is_operator(dm_interaction(client, OPERATOR_ID), SETTINGS) is True
    stranger = dm_interaction(client, 12345)
    assert isinstance(stranger.user, discord.User) and not isinstance(stranger.user, discord.Member)
    assert is_operator(stranger, SETTINGS) is False
    assert is_operator(stranger.user, SETTINGS) is False
    assert is_server_admin(stranger) is False


async def test_empty_settings_leave_no_operator(client: discord.Client) -> None:
    nobody = Settings(operator_user_ids=frozenset(), operator_role_ids=frozenset())
    assert is_operator(guild_interaction(client, OPERATOR_ID, permissions=0), nobody) is False
    assert is_operator(guild_interaction(client, 8, permissions=0, roles=(OPERATOR_ROLE_ID,)), nobody) is False
    assert is_operator(guild_interaction(client, 9, permissions=payloads.PERM_ADMINISTRATOR), nobody) is False


@dataclass
class FakeJob:
    """The two fields the job checks read."""

    id: int
    user_id: int
    guild_id: int | None


@pytest.mark.parametrize(
    ("user_id", "permissions", "job_guild", "cancel", "reroll"),
    [
        (10, 0, GUILD_ID, True, True),  # the requester
        (OPERATOR_ID, 0, OTHER_GUILD_ID, True, True),  # the operator, any server
        (11, payloads.PERM_MANAGE_GUILD, GUILD_ID, True, False),  # this server's admin: cancel/delete only
        (11, payloads.PERM_MANAGE_GUILD, OTHER_GUILD_ID, False, False),  # ... never another server's job
        (12, payloads.PERMS_MEMBER, GUILD_ID, False, False),  # anyone else
    ],
)
async def test_job_access(
    client: discord.Client, user_id: int, permissions: int, job_guild: int, cancel: bool, reroll: bool
) -> None:
    interaction = guild_interaction(client, user_id, permissions=permissions)
    job: Any = FakeJob(id=5, user_id=10, guild_id=job_guild)
    assert may_act_on_job(interaction, SETTINGS, job, server_admins=True) is cancel
    assert may_act_on_job(interaction, SETTINGS, job, server_admins=False) is reroll
    if not reroll:
        with pytest.raises(NotYours, match=r"^There is no such job of yours \(#5\)\.$"):
            check_job_access(interaction, SETTINGS, job, "vary")


def test_bad_actor_is_named() -> None:
    with pytest.raises(TypeError, match="actor must be an Interaction, Member or User, not int"):
        is_operator(42, SETTINGS)  # type: ignore[arg-type]  # the wrong type on purpose


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (None, "—"),
        (0, "0 s"),
        (59.4, "59 s"),
        (60, "1 min"),
        (125, "2 min 5 s"),
        (3600, "1 h"),
        (7320, "2 h 2 min"),
        (47 * 3600 + 59 * 60, "47 h 59 min"),
        (3 * 86400 + 4 * 3600, "3 d 4 h"),
        (-5, "0 s"),
    ],
)
def test_format_duration(seconds: float | None, text: str) -> None:
    assert format_duration(seconds) == text
