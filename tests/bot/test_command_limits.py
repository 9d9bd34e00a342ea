"""The bot's application commands against Discord's limits: ``python -m bot check`` refuses a command tree Discord
would refuse before anything is sent, and a sync Discord refuses at start is logged with the field it named while
the bot runs on with the commands it synced before."""

from __future__ import annotations

import warnings
from pathlib import Path

import discord
import pytest

from bot.app import I2VBot
from bot.check import run_check
from bot.command_sync import STATE_FILE_NAME
from bot.discord_limits import problems
from bot.modals import AnimateModal, VaryModal
from generator.model_spaces import DEFAULT_MODEL, SPACES
from generator.params import MAX_PROMPT_CHARS
from jobs.models import Job
from tests.bot.harness import TOKEN, BotProcess, slash
from tests.fakediscord.limits import MODAL
from tests.fakediscord.server import FakeDiscord

LONG_DESCRIPTION = "Says hello. " * 9  # 108 characters; Discord allows 100


def test_the_bots_modals_keep_discords_limits() -> None:
    """Every form the bot shows, for every model, at its longest (the prompt prefilled to the full length), built
    without any of discord.py's deprecations (a text input's own label is one: Discord wants a Label around it)."""
    with warnings.catch_warnings(record=True) as caught:  # discord.py forces its deprecations to "always" show
        forms = _every_form()
        bodies = [form.to_dict() for form in forms]
    assert [str(w.message) for w in caught] == []
    for body in bodies:
        assert problems(MODAL, body) == [], body
        assert {item["type"] for item in body["components"]} == {18}, body  # each field is a Label


def _every_form() -> list[discord.ui.Modal]:
    forms: list[discord.ui.Modal] = [
        AnimateModal(
            image_url="https://cdn.discordapp.com/a.png",
            image_size=1,
            message_id=1,
            prefill="p" * MAX_PROMPT_CHARS,
            models=models,
        )
        for models in (tuple(SPACES), (DEFAULT_MODEL,))  # with the model select, and without
    ]
    for made_by in SPACES:
        job = Job(  # not stored: the form reads only these
            id=2**53 - 1,
            model=made_by,
            prompt="p" * MAX_PROMPT_CHARS,
            preset=None,
            frames=16,
            fps=8,
            steps=50,
            seed=2**32 - 1,
        )
        forms += [VaryModal(job, model=model) for model in SPACES]
    return forms


async def test_check_refuses_an_over_long_description_before_any_request(
    fake_discord: FakeDiscord, tmp_path: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    load_cogs = I2VBot.load_extensions

    async def with_a_long_description(self: I2VBot) -> None:
        await load_cogs(self)

        @self.tree.command(name="hello", description=LONG_DESCRIPTION)
        async def hello(interaction: discord.Interaction) -> None:
            """Never called: the tree is only checked."""

    monkeypatch.setattr(I2VBot, "load_extensions", with_a_long_description)
    env = {
        "DISCORD_TOKEN": TOKEN,
        "DISCORD_API_BASE": fake_discord.api_base,
        "DISCORD_GATEWAY_URL": fake_discord.gateway_url,
        "DATABASE_URL": sqlite_url,
        "I2V_MODEL": "tiny",
        "OUTPUT_DIR": str(tmp_path / "outputs"),
        "DATA_DIR": str(tmp_path / "data"),
    }

    report = await run_check(env)

    assert report.exit_status == 2
    assert report.problems == [
        "application commands: Discord would refuse command 'hello': description: Must be 100 or fewer in length."
    ]
    assert fake_discord.requests == []  # nothing was sent to Discord
    monkeypatch.setattr(I2VBot, "load_extensions", load_cogs)
    fine = await run_check(env)
    assert fine.exit_status == 0, fine.problems
    assert any(
        line.startswith("application commands: ") and line.endswith("keep Discord's limits") for line in fine.fine
    )


@pytest.mark.slow
@pytest.mark.timeout(180)
async def test_a_refused_sync_at_start_is_logged_and_the_bot_runs_on(tmp_path: Path) -> None:
    fake = FakeDiscord(bot_token=TOKEN)
    await fake.start()
    bot = BotProcess(fake, tmp_path)
    try:
        await bot.start()
        synced = [c["name"] for c in fake.commands()]
        assert "animate" in synced
        assert await bot.stop() == 0
        (tmp_path / "data" / STATE_FILE_NAME).unlink()  # as after a change of the commands: the next start syncs

        # Discord refuses a field the bot's own rules let through: the bot must not depend on their being complete.
        refusal = fake.fail(
            status=400,
            code=50035,
            message="Invalid Form Body",
            method="PUT",
            path=r"^/applications/\d+/commands$",
            errors={
                "0": {
                    "description": {
                        "_errors": [{"code": "BASE_TYPE_BAD_LENGTH", "message": "Must be between 1 and 100 in length."}]
                    }
                }
            },
        )
        await bot.start()
        assert refusal.hits == 1
        sent = next(r for r in reversed(fake.requests) if r.method == "PUT" and r.path.endswith("/commands"))
        first = sent.json[0]["name"]
        log = bot.log_path.read_text()
        assert "Discord refused the application commands (HTTP 400, code 50035)" in log
        assert f"command '{first}': description: Must be between 1 and 100 in length." in log
        assert [c["name"] for c in fake.commands()] == synced  # Discord keeps what was synced before
        assert not (tmp_path / "data" / STATE_FILE_NAME).exists()  # the next start tries again

        answer = await slash(fake, "quota", {}, fake.member)  # the bot runs on and answers
        assert "GPU-seconds" in answer.text, answer
    finally:
        code = await bot.stop()
        await fake.stop()
    assert code == 0, bot.tail()
