"""Model choice through the fake Discord: the real ``python -m bot`` with every tiny model enabled and an embedded
worker that may load I2VGen-XL only (``WORKER_MODELS``), so the other models' jobs show what a user is told while
no worker can run them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from sqlalchemy import select

from bot.cogs.mentions import parse_request
from jobs.models import Job, JobStatus, WorkerState
from tests.bot.harness import (
    TOKEN,
    BotProcess,
    answer_of,
    callback_of,
    custom_ids,
    followup_text,
    job_id_from,
    modal_inputs,
    modal_selects,
    png_bytes,
    running_bot,
    wait_result,
)
from tests.fakediscord.server import FakeDiscord

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.slow, pytest.mark.timeout(240)]

MANAGE_GUILD = 0x20
SMALL_I2V = {"resolution": "256p", "frames": 8, "steps": 10}
SMALL_WAN = {"model": "wan22-5b", "resolution": "480p", "frames": 9, "steps": 10}


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def world(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[tuple[FakeDiscord, BotProcess]]:
    fake = FakeDiscord(bot_token=TOKEN)
    await fake.start()
    bot = BotProcess(fake, tmp_path_factory.mktemp("bot"), extra_env={"WORKER_MODELS": "i2vgenxl"})
    async with running_bot(fake, bot):
        yield fake, bot


async def _animate(fake: FakeDiscord, member: Any, **options: Any) -> str:
    attachment = fake.add_attachment(png_bytes(seed=member.user_id % 97), "pic.png")
    interaction = await fake.inject_slash(
        "animate", {"image": attachment, "prompt": "waves roll in", **options}, member=member
    )
    return await followup_text(fake, interaction)


async def _open_form(fake: FakeDiscord, member: Any) -> tuple[dict[str, Any], int]:
    """Open the Apps -> Animate form on a new image post: the modal callback's body and the image's id."""
    image = fake.add_attachment(png_bytes(seed=member.user_id % 89), "menu.png")
    message = fake.add_message(author=fake.member, content="the sea", attachments=[image])
    form = (await callback_of(fake, await fake.inject_message_command("Animate", message, member=member))).json
    assert form["type"] == 9, form
    return form, image.id


async def _submit_form(fake: FakeDiscord, member: Any, form: dict[str, Any], choices: dict[str, Any]) -> Any:
    """Submit ``form`` with the prompt "the sea" and ``choices`` (select name -> value or values; the others are
    left as shown); the bot's answer to the submission."""
    selects = modal_selects(form)
    values = {modal_inputs(form)["prompt"]["custom_id"]: "the sea"}
    values |= {selects[name]["custom_id"]: value for name, value in choices.items()}
    submit = await fake.inject_modal_submit(
        form["data"]["custom_id"], values, member=member, channel_id=fake.channel_id
    )
    return await answer_of(fake, submit)


async def _jobs_of(bot: BotProcess, user_id: int) -> list[Job]:
    return list(await bot.select_all(select(Job).where(Job.user_id == user_id).order_by(Job.id)))


async def test_outside_a_models_space_is_refused_before_queueing(world: tuple[FakeDiscord, BotProcess]) -> None:
    fake, bot = world
    member = fake.add_member(fake.guild.id, "ltx-steps")
    text = await _animate(fake, member, model="ltxv", resolution="512p", frames=9, steps=30)
    assert "steps 30 is not allowed" in text and "LTX-Video (fast) takes 512p, 720p" in text, text
    assert "4-10 steps" in text
    text = await _animate(fake, member, model="wan22-5b", resolution="1024p", frames=9, steps=10)
    assert "resolution '1024p' is not allowed" in text and "Wan 2.2 (5B) takes 480p, 720p" in text, text
    assert await _jobs_of(bot, member.user_id) == []  # nothing queued, nothing reserved


async def _worker_ready(bot: BotProcess) -> None:
    deadline = asyncio.get_running_loop().time() + 60
    while asyncio.get_running_loop().time() < deadline:
        if any(w.state == WorkerState.IDLE for w in await bot.workers()):
            return
        await asyncio.sleep(0.2)
    raise AssertionError("the embedded worker did not start")


async def test_rounded_frames_and_a_model_no_worker_runs(world: tuple[FakeDiscord, BotProcess]) -> None:
    fake, bot = world
    await _worker_ready(bot)
    (worker,) = await bot.workers()
    assert (worker.loadable_models, worker.loaded_model) == (["i2vgenxl"], "i2vgenxl")
    member = fake.add_member(fake.guild.id, "wan-user")
    text = await _animate(fake, member, **{**SMALL_WAN, "frames": 30})
    assert "Queued as job #" in text, text
    assert "Wan 2.2 (5B) makes 4k+1 (9, 13, 17, ...) frames: 30 frames became 29." in text
    assert "No worker can run Wan 2.2 (5B) right now (the workers running load I2VGen-XL)" in text
    job_id = job_id_from(text)
    status = await fake.wait_for(
        lambda r: (
            r.method == "POST"
            and r.path == f"/channels/{fake.channel_id}/messages"
            and f"i2v:cancel:{job_id}" in custom_ids(r.json)
        )
    )
    assert "Wan 2.2 (5B) · preset custom · 480p" in status.json["content"]
    assert "29 frames" in status.json["content"]
    # an I2VGen-XL job queued after it runs and is delivered; the Wan job is never claimed
    after = job_id_from(await _animate(fake, fake.add_member(fake.guild.id, "i2v-after"), **SMALL_I2V))
    result = await wait_result(fake, after)
    assert "I2VGen-XL · preset custom · 256p" in result.json["content"]
    job = await bot.job(job_id)
    assert (job.model, job.frames, job.status, job.attempt) == ("wan22-5b", 29, JobStatus.QUEUED, 0)


async def test_vary_with_another_model(world: tuple[FakeDiscord, BotProcess]) -> None:
    fake, bot = world
    member = fake.add_member(fake.guild.id, "vary-model")
    job_id = job_id_from(await _animate(fake, member, seed=5, **SMALL_I2V))
    result = await wait_result(fake, job_id)
    select_menu = [child for row in result.json["components"] for child in row["components"] if child["type"] == 3]
    assert [(o["label"], o["value"]) for o in select_menu[0]["options"]] == [
        ("I2VGen-XL", "i2vgenxl"),
        ("Wan 2.2 (5B)", "wan22-5b"),
        ("LTX-Video (fast)", "ltxv"),
    ]
    pick = await fake.inject_component(
        f"i2v:varymodel:{job_id}", int(result.response["id"]), component_type=3, values=["ltxv"], member=member
    )
    modal = await callback_of(fake, pick)
    assert modal.json["type"] == 9 and modal.json["data"]["title"] == "Vary with LTX-Video (fast)"
    inputs = modal_inputs(modal.json)
    # the LTX form: its ranges, its standard preset's values, the same seed and prompt
    assert inputs["frames"]["label"] == "Frames (9-257)" and inputs["frames"]["value"] == "121"
    assert inputs["steps"]["label"] == "Steps (4-10)" and inputs["steps"]["value"] == "8"
    assert inputs["seed"]["value"] == "5" and inputs["prompt"]["value"] == "waves roll in"
    submit = await fake.inject_modal_submit(
        modal.json["data"]["custom_id"],
        {
            inputs["prompt"]["custom_id"]: "waves roll out",
            inputs["frames"]["custom_id"]: "20",
            inputs["fps"]["custom_id"]: "24",
            inputs["steps"]["custom_id"]: "6",
            inputs["seed"]["custom_id"]: "5",
        },
        member=member,
        message=int(result.response["id"]),
    )
    text = await followup_text(fake, submit)
    assert "variation of job" in text and "20 frames became 17" in text, text
    child = await bot.job(job_id_from(text.split(" as ")[1]))
    assert (child.model, child.prompt, child.frames, child.fps, child.steps, child.guidance, child.seed) == (
        "ltxv",
        "waves roll out",
        17,
        24,
        6,
        1.0,
        5,
    )
    assert child.parent_job_id == job_id and child.negative_prompt == ""  # LTX ignores it: none is stored
    assert min(child.width, child.height) == 704 and child.width % 32 == 0  # its 720p, the parent's aspect
    # Re-roll keeps the job's model
    reroll = await fake.inject_component(f"i2v:reroll:{job_id}", int(result.response["id"]), member=member)
    again = await bot.job(job_id_from((await followup_text(fake, reroll)).split(" as ")[1]))
    assert again.model == "i2vgenxl" and again.seed != 5


async def test_server_admins_limit_the_models(world: tuple[FakeDiscord, BotProcess]) -> None:
    fake, bot = world
    admin = fake.add_member(fake.guild.id, "models-admin", permissions=MANAGE_GUILD)
    member = fake.add_member(fake.guild.id, "models-member")

    async def models(**options: Any) -> str:
        return await followup_text(fake, await fake.inject_slash("admin models", options, member=admin))

    shown = await models()
    assert "Models allowed on this server: I2VGen-XL, Wan 2.2 (5B), LTX-Video (fast)" in shown, shown
    refused = await answer_of(
        fake, await fake.inject_slash("admin models", {"model": "ltxv", "allowed": False}, member=member)
    )
    assert "Only an admin of this server" in refused.content, refused  # a member may not
    assert "Not allowed here: LTX-Video (fast)" in await models(model="ltxv", allowed=False)
    text = await _animate(fake, member, model="ltxv", resolution="512p", frames=9, steps=4)
    assert "This server's admins do not allow the model LTX-Video (fast)" in text, text
    assert "I2VGen-XL, Wan 2.2 (5B)" in text
    # Apps -> Animate offers the allowed models only; a forged choice is refused before the image is fetched
    for forged, refusal in (
        ({"model": "ltxv"}, "model 'ltxv' is not allowed: model must be one of the form's choices: i2vgenxl, "),
        ({"preset": "turbo"}, "preset 'turbo' is not allowed: preset must be one of the form's choices: quick, "),
        ({"model": ["i2vgenxl", "wan22-5b"]}, "model ['i2vgenxl', 'wan22-5b'] is not allowed"),
    ):
        form, image_id = await _open_form(fake, member)
        assert [o["value"] for o in modal_selects(form)["model"]["options"]] == ["i2vgenxl", "wan22-5b"]
        answer = await _submit_form(fake, member, form, forged)
        assert answer.ephemeral and answer.content.startswith(refusal), answer
        assert not [r for r in fake.requests if r.method == "GET" and f"/cdn/attachments/{image_id}/" in r.path]
    assert await _jobs_of(bot, member.user_id) == []  # nothing queued, nothing charged
    await models(model="i2vgenxl", allowed=False)  # the default falls to the first model still allowed
    text = await _animate(fake, member, resolution="480p", frames=9, steps=10)
    assert "Queued as job #" in text, text
    assert (await bot.job(job_id_from(text))).model == "wan22-5b"
    form, _ = await _open_form(fake, member)  # one model allowed: nothing to choose
    assert list(modal_selects(form)) == ["preset"]
    assert "only model allowed here" in await models(model="wan22-5b", allowed=False)
    assert "I2VGen-XL, Wan 2.2 (5B), LTX-Video (fast)" in await models(allowed=True)


async def test_mention_flag_names_the_model() -> None:
    prompt, options = parse_request("the sea moves --model wan22-5b --frames 30")
    assert (prompt, options) == ("the sea moves", {"model": "wan22-5b", "frames": 30})
