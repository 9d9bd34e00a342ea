"""Modals: the prompt, model and preset form behind *Apps → Animate*, and the *Vary* form under a delivered video.

A modal lives only for its one submission, so holding the target image URL or the parent job id in memory is
fine: if the bot restarts while a form is open, Discord shows the user that the submission failed.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, cast

import discord

from bot.render import model_choice_description, preset_traits
from bot.requests import handle_request, load_own_job, queue_variant
from bot.tree import explain_error
from generator.model_spaces import DEFAULT_PRESET, PRESET_NAMES, SPACES
from generator.params import FPS_RANGE, FRAMES_RANGE, MAX_PROMPT_CHARS, STEPS_RANGE, ParamError

if TYPE_CHECKING:
    from bot.app import I2VBot
    from jobs.models import Job

log = logging.getLogger(__name__)

MODAL_PROMPT_PLACEHOLDER = "What should move, and how? e.g. the waves roll in slowly, the camera pans right"
SELECT_OPTIONS_MAX = 25  # Discord: options in one select menu


def _int_field(field: str, raw: str) -> int | None:
    raw = raw.strip()
    if not raw:
        return None
    try:
        return int(raw)
    except ValueError:
        raise ParamError(field, raw, "a whole number") from None


def _text(field: discord.ui.Label[Any]) -> discord.ui.TextInput[Any]:
    """The text input inside a form field (a Label, as Discord lays out a modal's fields)."""
    if not isinstance(field.component, discord.ui.TextInput):
        raise TypeError(f"form field {field.text!r} holds {type(field.component).__name__}, not a text input")
    return field.component


def _select_option(value: str, label: str, description: str, *, default: bool) -> discord.SelectOption:
    return discord.SelectOption(label=label, value=value, description=description or None, default=default)


def _chosen(field: discord.ui.Label[Any] | None, what: str, offered: Sequence[str]) -> str | None:
    """The value picked in the select of ``field`` (None when the form has no such field or nothing came back:
    the default, which the select showed preselected). The submission is hostile input: anything but one of the
    ``offered`` values is refused with a :class:`ParamError` naming them, before anything is queued or charged."""
    if field is None:
        return None
    if not isinstance(field.component, discord.ui.Select):
        raise TypeError(f"form field {field.text!r} holds {type(field.component).__name__}, not a select")
    values = field.component.values
    if not values:
        return None
    if len(values) > 1 or values[0] not in offered:
        log.warning("Animate form submitted %s %r, not one of %s; refused", what, values, offered)
        shown: Any = values[0] if len(values) == 1 else values
        raise ParamError(what, shown, f"one of the form's choices: {', '.join(offered)}")
    return values[0]


class AnimateModal(discord.ui.Modal, title="Animate this image"):
    """Asks for the prompt (prefilled with the message's text), the model (when the server allows several) and the
    preset, each select preset to the default (the server's first model, the default preset).

    Discord gives no way to make one select's options follow another's choice in the same form, so the preset
    select offers the preset names, which every model has (``ModelSpace`` checks that each model's presets are
    ``PRESET_NAMES``): any preset picked exists for any model picked.
    """

    prompt: discord.ui.Label[AnimateModal] = discord.ui.Label(
        text="Prompt",
        component=discord.ui.TextInput(
            style=discord.TextStyle.paragraph, max_length=MAX_PROMPT_CHARS, placeholder=MODAL_PROMPT_PLACEHOLDER
        ),
    )

    def __init__(
        self, *, image_url: str, image_size: int | None, message_id: int, prefill: str, models: Sequence[str]
    ) -> None:
        """The form for the image at ``image_url``; ``models`` are the models the server allows, its default
        first (:func:`bot.requests.server_models`): a model select is shown when there are two or more."""
        super().__init__(timeout=None)
        self.image_url = image_url
        self.image_size = image_size
        self.message_id = message_id
        _text(self.prompt).default = prefill[:MAX_PROMPT_CHARS] or None
        self.models = tuple(models)[:SELECT_OPTIONS_MAX]  # a guard: there are far fewer models
        self.model: discord.ui.Label[AnimateModal] | None = None
        if len(self.models) > 1:
            self.model = discord.ui.Label(
                text="Model",
                component=discord.ui.Select(
                    options=[
                        _select_option(
                            key,
                            SPACES[key].display_name,
                            model_choice_description(SPACES[key].default_preset, server_default=i == 0),
                            default=i == 0,
                        )
                        for i, key in enumerate(self.models)
                    ]
                ),
            )
            self.add_item(self.model)
        self.preset: discord.ui.Label[AnimateModal] = discord.ui.Label(
            text="Preset",
            description="Speed or quality; /help shows each model's values",
            component=discord.ui.Select(
                options=[
                    _select_option(
                        name, name, preset_traits(name, default=DEFAULT_PRESET), default=name == DEFAULT_PRESET
                    )
                    for name in PRESET_NAMES
                ]
            ),
        )
        self.add_item(self.preset)

    async def on_submit(self, interaction: discord.Interaction) -> None:
        bot = cast("I2VBot", interaction.client)
        await handle_request(
            bot,
            interaction,
            source="context_menu",
            image_url=self.image_url,
            image_size=self.image_size,
            prompt=_text(self.prompt).value,
            options={
                "model": _chosen(self.model, "model", self.models),
                "preset": _chosen(self.preset, "preset", PRESET_NAMES),
            },
            reply_to_message_id=self.message_id,
        )

    async def on_error(  # type: ignore[override]  # Modal's own signature; discord.py's BaseView adds an item
        self, interaction: discord.Interaction, error: Exception, /
    ) -> None:
        await explain_error(interaction, error)


class VaryModal(discord.ui.Modal, title="Vary this video"):
    """Change the prompt, frames, fps, steps or seed of a delivered job; empty seed = a new random one."""

    prompt: discord.ui.Label[VaryModal] = discord.ui.Label(
        text="Prompt", component=discord.ui.TextInput(style=discord.TextStyle.paragraph, max_length=MAX_PROMPT_CHARS)
    )
    frames: discord.ui.Label[VaryModal] = discord.ui.Label(
        text=f"Frames ({FRAMES_RANGE[0]}-{FRAMES_RANGE[1]})", component=discord.ui.TextInput(max_length=3)
    )
    fps: discord.ui.Label[VaryModal] = discord.ui.Label(
        text=f"FPS ({FPS_RANGE[0]}-{FPS_RANGE[1]})", component=discord.ui.TextInput(max_length=3)
    )
    steps: discord.ui.Label[VaryModal] = discord.ui.Label(
        text=f"Steps ({STEPS_RANGE[0]}-{STEPS_RANGE[1]})", component=discord.ui.TextInput(max_length=3)
    )
    seed: discord.ui.Label[VaryModal] = discord.ui.Label(
        text="Seed (empty = new random seed)", component=discord.ui.TextInput(required=False, max_length=10)
    )

    def __init__(self, job: Job, *, model: str | None = None) -> None:
        """The form for a variation of ``job`` made by ``model`` (None: the job's own): its fields show that model's
        ranges, and the job's values, or that model's preset values when the model changes."""
        model = model or job.model
        each = SPACES[model]
        title = "Vary this video" if model == job.model else f"Vary with {each.display_name}"
        super().__init__(timeout=None, title=title[:45])
        self.job_id = job.id
        self.model = model
        _text(self.prompt).default = job.prompt
        if model == job.model:
            frames, fps, steps = job.frames, job.fps, job.steps
        else:
            preset = each.presets[job.preset or DEFAULT_PRESET]
            frames, fps, steps = preset.frames, preset.fps, preset.steps
        self.frames.text = f"Frames ({each.frames.minimum}-{each.frames.maximum})"
        self.fps.text = f"FPS ({each.fps_range[0]}-{each.fps_range[1]})"
        self.steps.text = f"Steps ({each.steps_range[0]}-{each.steps_range[1]})"
        _text(self.frames).default = str(frames)
        _text(self.fps).default = str(fps)
        _text(self.steps).default = str(steps)
        _text(self.seed).default = str(job.seed)

    async def on_submit(self, interaction: discord.Interaction) -> None:
        bot = cast("I2VBot", interaction.client)
        parent = await load_own_job(bot, interaction, self.job_id, "vary")
        changes: dict[str, Any] = {
            "prompt": _text(self.prompt).value,
            "frames": _int_field("frames", _text(self.frames).value),
            "fps": _int_field("fps", _text(self.fps).value),
            "steps": _int_field("steps", _text(self.steps).value),
            "seed": _int_field("seed", _text(self.seed).value),
            "model": self.model,
        }
        for name in ("frames", "fps", "steps"):
            if changes[name] is None:
                changes.pop(name)
        await interaction.response.defer(ephemeral=True, thinking=True)
        await queue_variant(bot, interaction, parent, source="vary", changes=changes)

    async def on_error(  # type: ignore[override]  # Modal's own signature; discord.py's BaseView adds an item
        self, interaction: discord.Interaction, error: Exception, /
    ) -> None:
        await explain_error(interaction, error)
