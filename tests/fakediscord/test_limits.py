"""The fake enforces Discord's limits on what a bot sends: a body that breaks one gets 400 / 50035 "Invalid Form
Body" with the field named in ``errors``, as from Discord; bodies inside the limits pass."""

from __future__ import annotations

from typing import Any

import discord
import pytest
from discord import app_commands
from discord.http import Route

from bot.discord_limits import INT53_MAX, command_list_problems, slash_name_problem
from tests.fakediscord.client import running_client
from tests.fakediscord.limits import message_problems
from tests.fakediscord.server import FakeDiscord

OLD_PRESET_LABEL = "Preset (quick, standard, high); empty = standard"  # 48 characters


class Client(discord.Client):
    """A bare discord.py client with a command tree; its ``modal`` is shown by ``/form``."""

    def __init__(self) -> None:
        super().__init__(intents=discord.Intents.default(), guild_ready_timeout=0.05, chunk_guilds_at_startup=False)
        self.tree = app_commands.CommandTree(self)
        self.modal_errors: list[Exception] = []


def command(**fields: Any) -> dict[str, Any]:
    return {"type": 1, "name": "job", "description": "Show a job.", **fields}


def integer_option(**fields: Any) -> dict[str, Any]:
    return {"type": 4, "name": "job", "description": "The job's number.", "required": True, **fields}


def errors_at(fake: FakeDiscord, *path: str) -> list[dict[str, Any]]:
    """The ``_errors`` the fake's last answer names at ``path``."""
    node = fake.requests[-1].response["errors"]
    for key in path:
        node = node[key]
    return node["_errors"]


async def refused(client: Client, route: Route, body: Any) -> discord.HTTPException:
    with pytest.raises(discord.HTTPException) as caught:
        await client.http.request(route, json=body)
    assert caught.value.status == 400 and caught.value.code == 50035
    return caught.value


def sync_route(client: Client) -> Route:
    """The bulk overwrite's route (built while the client points at the fake: a Route reads the base URL then)."""
    return Route("PUT", "/applications/{application_id}/commands", application_id=client.application_id)


@pytest.mark.parametrize(
    ("commands", "path", "code"),
    [
        (
            [command(options=[integer_option(min_value=1, max_value=2**53)])],
            ("0", "options", "0", "max_value"),
            "NUMBER_TYPE_MAX",
        ),
        ([command(description="d" * 101)], ("0", "description"), "BASE_TYPE_MAX_LENGTH"),
        (
            [command(options=[integer_option(choices=[{"name": f"n{i}", "value": i} for i in range(26)])])],
            ("0", "options", "0", "choices"),
            "BASE_TYPE_MAX_LENGTH",
        ),
        ([command(name="Job")], ("0", "name"), "APPLICATION_COMMAND_INVALID_NAME"),
        ([command(name="job number")], ("0", "name"), "APPLICATION_COMMAND_INVALID_NAME"),
        ([command(name="j" * 33)], ("0", "name"), "BASE_TYPE_BAD_LENGTH"),
        (
            [command(options=[integer_option(name=f"o{i}") for i in range(26)])],
            ("0", "options"),
            "BASE_TYPE_MAX_LENGTH",
        ),
        (
            [command(options=[integer_option(name="a", required=False), integer_option(name="b")])],
            ("0", "options", "1", "required"),
            "APPLICATION_COMMAND_OPTIONS_REQUIRED_INVALID",
        ),
        (
            [
                command(
                    options=[
                        {"type": 3, "name": "p", "description": "x", "choices": [{"name": "c" * 101, "value": "v"}]}
                    ]
                )
            ],
            ("0", "options", "0", "choices", "0", "name"),
            "BASE_TYPE_BAD_LENGTH",
        ),
        ([command(description="")], ("0", "description"), "BASE_TYPE_REQUIRED"),
        ([command(), command()], ("0",), None),  # the second of two same names: checked below
    ],
    ids=[
        "max_value 2^53",
        "description 101",
        "26 choices",
        "upper case name",
        "name with a space",
        "name 33",
        "26 options",
        "required after optional",
        "choice name 101",
        "no description",
        "duplicate names",
    ],
)
async def test_sync_breaking_a_limit_is_refused(
    fake_discord: FakeDiscord, commands: list[dict[str, Any]], path: tuple[str, ...], code: str | None
) -> None:
    async with running_client(Client(), fake_discord) as client:
        await refused(client, sync_route(client), commands)
    if code is None:
        assert errors_at(fake_discord, "1", "name")[0]["code"] == "APPLICATION_COMMANDS_DUPLICATE_NAME"
    else:
        assert errors_at(fake_discord, *path)[0]["code"] == code
    assert fake_discord.requests[-1].response["message"] == "Invalid Form Body"
    assert fake_discord.commands() == []  # nothing of a refused sync is kept


async def test_sync_inside_the_limits_passes(fake_discord: FakeDiscord) -> None:
    commands = [
        command(name="जॉब", options=[integer_option(min_value=1, max_value=INT53_MAX)]),  # Devanagari
        command(name="งาน-ที่_1"),  # Thai, with its vowel marks
        command(
            name="job",
            description="d" * 100,
            options=[integer_option(choices=[{"name": "n" * 100, "value": i} for i in range(25)])],
        ),
        {"type": 3, "name": "Animate This", "description": ""},
    ]
    async with running_client(Client(), fake_discord) as client:
        stored = await client.http.request(sync_route(client), json=commands)
    assert [c["name"] for c in stored] == ["जॉब", "งาน-ที่_1", "job", "Animate This"]


async def test_the_real_tree_refused_through_discord_py_names_the_option(fake_discord: FakeDiscord) -> None:
    client = Client()

    @client.tree.command(name="cancel", description="Cancel a job.")
    async def cancel(interaction: discord.Interaction, job: app_commands.Range[int, 1, 2**53]) -> None:
        """Not called."""

    async with running_client(client, fake_discord):
        with pytest.raises(app_commands.CommandSyncFailure) as caught:
            await client.tree.sync()
    assert "In command 'cancel'" in str(caught.value) and "job" in str(caught.value)
    assert errors_at(fake_discord, "0", "options", "0", "max_value")[0]["message"] == (
        f"int value should be less than or equal to {INT53_MAX}."
    )


async def test_a_modal_with_the_old_48_character_label_is_refused(fake_discord: FakeDiscord) -> None:
    client = Client()

    class Form(discord.ui.Modal, title="Animate this image"):
        prompt: discord.ui.TextInput[Form] = discord.ui.TextInput(label="Prompt")
        preset: discord.ui.TextInput[Form] = discord.ui.TextInput(label=OLD_PRESET_LABEL, required=False)

    @client.tree.command(name="form", description="Show the form.")
    async def form(interaction: discord.Interaction) -> None:
        try:
            await interaction.response.send_modal(Form())
        except discord.HTTPException as error:
            client.modal_errors.append(error)

    async with running_client(client, fake_discord):
        await client.tree.sync()
        interaction = await fake_discord.inject_slash("form", {})
        await fake_discord.wait_until(lambda: client.modal_errors or None, what="the refused modal")
    error = client.modal_errors[0]
    assert isinstance(error, discord.HTTPException) and (error.status, error.code) == (400, 50035)
    label_errors = errors_at(fake_discord, "data", "components", "1", "components", "0", "label")
    assert label_errors == [{"code": "BASE_TYPE_BAD_LENGTH", "message": "Must be between 1 and 45 in length."}]
    assert interaction.modal is None and interaction.response_type is None


async def test_a_component_with_a_101_character_custom_id_is_refused(fake_discord: FakeDiscord) -> None:
    row: dict[str, Any] = {"type": 1, "components": [{"type": 2, "style": 1, "label": "Go", "custom_id": "x" * 101}]}
    async with running_client(Client(), fake_discord) as client:
        route = Route("POST", "/channels/{channel_id}/messages", channel_id=fake_discord.channel_id)
        await refused(client, route, {"content": "hi", "components": [row]})
        assert errors_at(fake_discord, "components", "0", "components", "0", "custom_id")[0]["code"] == (
            "BASE_TYPE_BAD_LENGTH"
        )
        row["components"][0]["custom_id"] = "x" * 100
        sent = await client.http.request(route, json={"content": "hi", "components": [row]})
    assert sent["components"] == [row]
    assert fake_discord.channel_messages(fake_discord.channel_id)[-1]["id"] == sent["id"]


async def test_a_refused_edit_leaves_the_message_as_it_was(fake_discord: FakeDiscord) -> None:
    async with running_client(Client(), fake_discord) as client:
        route = Route("POST", "/channels/{channel_id}/messages", channel_id=fake_discord.channel_id)
        sent = await client.http.request(route, json={"content": "before"})
        edit = Route(
            "PATCH",
            "/channels/{channel_id}/messages/{message_id}",
            channel_id=fake_discord.channel_id,
            message_id=sent["id"],
        )
        await refused(client, edit, {"content": "x" * 2001})
    assert errors_at(fake_discord, "content")[0]["code"] == "BASE_TYPE_MAX_LENGTH"
    assert fake_discord.messages[int(sent["id"])]["content"] == "before"


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({"content": "x" * 2001}, ("content",)),
        ({"embeds": [{"title": "t" * 257}]}, ("embeds", "0", "title")),
        ({"embeds": [{"description": "d" * 4096}, {"description": "d" * 2000}]}, ("embeds",)),
        ({"embeds": [{"fields": [{"name": "n", "value": "v"}] * 26}]}, ("embeds", "0", "fields")),
        ({"embeds": [{}] * 11}, ("embeds",)),
        ({"allowed_mentions": {"parse": ["users"], "users": ["1"]}}, ("allowed_mentions", "parse")),
        ({"allowed_mentions": {"parse": ["here"]}}, ("allowed_mentions", "parse", "0")),
        (
            {
                "components": [
                    {
                        "type": 1,
                        "components": [{"type": 2, "style": 1, "label": "a", "custom_id": str(i)} for i in range(6)],
                    }
                ]
            },
            ("components", "0", "components"),
        ),
        (
            {"components": [{"type": 1, "components": [{"type": 2, "style": 1, "label": "a", "custom_id": "1"}]}] * 6},
            ("components",),
        ),
        (
            {
                "components": [
                    {
                        "type": 1,
                        "components": [
                            {"type": 2, "style": 1, "label": "a", "custom_id": "same"},
                            {"type": 2, "style": 2, "label": "b", "custom_id": "same"},
                        ],
                    }
                ]
            },
            ("components", "0", "components", "1", "custom_id"),
        ),
        (
            {"components": [{"type": 1, "components": [{"type": 2, "style": 5, "label": "a", "custom_id": "c"}]}]},
            ("components", "0", "components", "0", "url"),
        ),
        (
            {"components": [{"type": 1, "components": [{"type": 2, "style": 1, "custom_id": "c"}]}]},
            ("components", "0", "components", "0", "label"),
        ),
        (
            {"components": [{"type": 1, "components": [{"type": 2, "style": 1, "label": "l" * 81, "custom_id": "c"}]}]},
            ("components", "0", "components", "0", "label"),
        ),
        (
            {
                "components": [
                    {
                        "type": 1,
                        "components": [
                            {
                                "type": 3,
                                "custom_id": "s",
                                "placeholder": "p" * 151,
                                "options": [{"label": "a", "value": "a"}],
                            }
                        ],
                    }
                ]
            },
            ("components", "0", "components", "0", "placeholder"),
        ),
        (
            {"components": [{"type": 1, "components": [{"type": 3, "custom_id": "s", "options": []}]}]},
            ("components", "0", "components", "0", "options"),
        ),
    ],
    ids=[
        "content 2001",
        "embed title 257",
        "embeds over 6000",
        "26 fields",
        "11 embeds",
        "users twice",
        "parse here",
        "6 buttons in a row",
        "6 rows",
        "duplicate custom ids",
        "link without url",
        "button without label",
        "button label 81",
        "placeholder 151",
        "select without options",
    ],
)
def test_message_rules_name_the_field(body: dict[str, Any], path: tuple[str, ...]) -> None:
    found = message_problems(body, route="create")
    assert found and found[0].path == path, found


def test_command_name_rule() -> None:
    assert slash_name_problem("delete-my-data") is None
    assert slash_name_problem("quota_2") is None
    for bad in ("", "a" * 33, "Quota", "two words", "emoji🙂", "dot."):
        assert slash_name_problem(bad) is not None, bad


def test_context_menu_commands_take_no_description_or_options() -> None:
    found = command_list_problems([{"type": 3, "name": "Animate", "description": "Animate it."}])
    assert [p.path for p in found] == [("0", "description")]


async def test_a_modal_with_a_labelled_select_is_shown_and_its_submit_read(fake_discord: FakeDiscord) -> None:
    client = Client()
    chosen: list[tuple[str, list[str]]] = []

    class Form(discord.ui.Modal, title="Animate this image"):
        prompt: discord.ui.Label[Form] = discord.ui.Label(text="Prompt", component=discord.ui.TextInput())
        preset: discord.ui.Label[Form] = discord.ui.Label(
            text="Preset",
            description="How long and how fine; standard when none is chosen",
            component=discord.ui.Select(
                options=[discord.SelectOption(label=n, value=n) for n in ("quick", "high")], required=False
            ),
        )

        async def on_submit(self, interaction: discord.Interaction) -> None:
            assert isinstance(self.prompt.component, discord.ui.TextInput)
            assert isinstance(self.preset.component, discord.ui.Select)
            chosen.append((self.prompt.component.value, self.preset.component.values))
            await interaction.response.send_message("ok", ephemeral=True)

    @client.tree.command(name="form", description="Show the form.")
    async def form(interaction: discord.Interaction) -> None:
        await interaction.response.send_modal(Form())

    async with running_client(client, fake_discord):
        await client.tree.sync()
        shown = await fake_discord.inject_slash("form", {})
        modal = await fake_discord.wait_until(lambda: shown.modal, what="the modal")
        assert [c["type"] for c in modal["components"]] == [18, 18]
        select_id = modal["components"][1]["component"]["custom_id"]
        prompt_id = modal["components"][0]["component"]["custom_id"]
        await fake_discord.inject_modal_submit(modal["custom_id"], {prompt_id: "the sea", select_id: "quick"})
        await fake_discord.wait_until(lambda: chosen or None, what="the submit")
    assert chosen == [("the sea", ["quick"])]
    assert fake_discord.refused_bodies() == []
