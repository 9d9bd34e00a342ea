"""``/animate``: turn an attached image into a short video (the request flow is ``bot.requests``)."""

from __future__ import annotations

import dataclasses
import logging
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.render import preset_choice_name
from bot.requests import handle_request
from generator.model_spaces import DEFAULT_PRESET, PRESET_NAMES, SPACES, union_bounds
from generator.params import FPS_RANGE, FRAMES_RANGE, GUIDANCE_RANGE, MAX_PROMPT_CHARS, SEED_RANGE, STEPS_RANGE

if TYPE_CHECKING:
    from bot.app import I2VBot

log = logging.getLogger(__name__)

PRESET_CHOICES = [
    app_commands.Choice(name=preset_choice_name(name, default=DEFAULT_PRESET), value=name) for name in PRESET_NAMES
]


def fit_options(command: app_commands.Command[Any, ..., Any], models: tuple[str, ...]) -> None:
    """Fit ``/animate``'s options to the enabled models: ``model`` offers them by name (it is left out when only one
    is enabled), ``resolution`` the union of their resolutions, and the number options the union of their ranges;
    the chosen model's own ranges are checked when the request is resolved (``generator.params``). The command's
    parameters are replaced, not changed, so the class's command stays as declared."""
    params = command._params
    bounds = union_bounds(models)

    def change(name: str, **values: Any) -> None:
        params[name] = dataclasses.replace(params[name], **values)

    if len(models) > 1:
        change("model", choices=[app_commands.Choice(name=SPACES[key].display_name, value=key) for key in models])
    else:
        del params["model"]
    change("resolution", choices=[app_commands.Choice(name=name, value=name) for name in bounds.resolutions])
    for name, (low, high) in (
        ("frames", bounds.frames),
        ("fps", bounds.fps),
        ("steps", bounds.steps),
        ("guidance", bounds.guidance),
    ):
        change(name, min_value=low, max_value=high)


class Animate(commands.Cog):
    """The /animate command."""

    def __init__(self, bot: I2VBot) -> None:
        self.bot = bot
        fit_options(self.animate, bot.settings.models)

    @app_commands.command(name="animate")
    @app_commands.guild_only()
    @app_commands.choices(preset=PRESET_CHOICES)
    async def animate(
        self,
        interaction: discord.Interaction,
        image: discord.Attachment,
        prompt: app_commands.Range[str, 1, MAX_PROMPT_CHARS],
        model: str | None = None,
        preset: str | None = None,
        resolution: str | None = None,
        frames: app_commands.Range[int, FRAMES_RANGE[0], FRAMES_RANGE[1]] | None = None,
        fps: app_commands.Range[int, FPS_RANGE[0], FPS_RANGE[1]] | None = None,
        steps: app_commands.Range[int, STEPS_RANGE[0], STEPS_RANGE[1]] | None = None,
        guidance: app_commands.Range[float, GUIDANCE_RANGE[0], GUIDANCE_RANGE[1]] | None = None,
        seed: app_commands.Range[int, SEED_RANGE[0], SEED_RANGE[1]] | None = None,
        negative_prompt: app_commands.Range[str, 0, MAX_PROMPT_CHARS] | None = None,
        spoiler: bool = False,
    ) -> None:
        """Turn an image into a short video.

        Parameters
        ----------
        image:
            The picture to animate (PNG, JPEG, WebP or GIF).
        prompt:
            What should move and how, e.g. "the waves roll in slowly, camera pans right".
        model:
            Which video model makes it (/help shows each one's presets); the first one if empty.
        preset:
            Speed or quality (/help shows each preset's values); the options below override it.
        resolution:
            Short side of the video; the long side follows the image's shape.
        frames:
            Number of frames in the video.
        fps:
            Frames per second of the MP4.
        steps:
            Denoising steps: more is slower and finer.
        guidance:
            How strongly to follow the prompt (the model's preset sets a good value).
        seed:
            Fix the randomness to repeat a result; random if empty.
        negative_prompt:
            What to avoid; a standard list if empty (models without guidance ignore it).
        spoiler:
            Post the video as a spoiler (hidden until clicked).
        """
        await handle_request(
            self.bot,
            interaction,
            source="slash",
            image_url=image.url,
            image_size=image.size,
            content_type=image.content_type,
            prompt=prompt,
            options={
                "model": model,
                "preset": preset,
                "resolution": resolution,
                "frames": frames,
                "fps": fps,
                "steps": steps,
                "guidance": guidance,
                "seed": seed,
                "negative_prompt": negative_prompt,
                "spoiler": spoiler,
            },
        )


async def setup(bot: I2VBot) -> None:
    """Extension entry point."""
    await bot.add_cog(Animate(bot))
