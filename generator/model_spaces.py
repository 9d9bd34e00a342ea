"""Each model's parameter space, as plain data (no torch): what a request may ask of it, and its presets.

A model is named by its key everywhere (settings, the store's ``jobs.model`` column, custom ids, the page's JSON):
``i2vgenxl`` (the default, as before there was a choice), ``wan22-5b`` and ``ltxv``. People see the display name.

Per model: the resolutions (the short side of the output; the long side follows the image's aspect ratio, clamped
to [1:2, 2:1], rounded to the model's size multiple), the frame-count rule (a frame count between two allowed ones
is rounded to the nearest and the user is told; one outside the range is refused), the fps, steps and guidance
ranges, whether the negative prompt has any effect, and the quick/standard/high presets in the model's own
values. Validation against a space lives in :mod:`generator.params`; the backends in ``generator.models`` read
their sizes and rules from here.

Sources of the presets (docs/models.md cites them in full):

- I2VGen-XL: the original web page's parameter table (the README's): 512p-768p, 8-32 frames, 8-12 fps, guidance 9-10.
- Wan 2.2 TI2V-5B (Wan-Video/Wan2.2 README): 720p is 1280x704 at 24 fps, 121 frames (5 s), 50 steps, guidance
  5.0. The VAE compresses 16x in space and the transformer patches 2x2 latents, so sizes are multiples of 32 px
  (diffusers' Wan example computes ``vae_scale_factor_spatial * patch_size``); frames are 4k+1 (the VAE
  compresses time 4x).
- LTX-Video 0.9.x distilled (Lightricks/LTX-Video README, diffusers' ltx_video.md): guidance 1.0 (classifier-free
  guidance is distilled away, so the negative prompt does nothing), 4-10 steps, 1216x704 at 30 fps by default
  since 0.9.6, frames 8k+1 and below 257, sizes multiples of 32 px.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

I2VGENXL = "i2vgenxl"
WAN22_5B = "wan22-5b"
LTXV = "ltxv"
DEFAULT_MODEL: str = I2VGENXL  # the model of every job made before there was a choice, and of an unset I2V_MODELS

PRESET_NAMES: tuple[str, ...] = ("quick", "standard", "high")
DEFAULT_PRESET: str = "standard"  # used when neither a preset nor an explicit value is given

MIN_ASPECT: float = 0.5  # width / height of the output is clamped to [1:2, 2:1]
MAX_ASPECT: float = 2.0


@dataclass(frozen=True)
class Preset:
    """A named set of defaults in one model's own values."""

    name: str
    resolution: str
    frames: int
    fps: int
    steps: int
    guidance: float


@dataclass(frozen=True)
class FrameRule:
    """The frame counts a model accepts: ``step * k + offset`` from ``minimum`` to ``maximum`` (both allowed)."""

    minimum: int
    maximum: int
    step: int = 1
    offset: int = 0

    def __post_init__(self) -> None:
        for bound in (self.minimum, self.maximum):
            if (bound - self.offset) % self.step:
                raise ValueError(f"frame bound {bound} is not {self.describe_steps()}")
        if not 0 < self.minimum <= self.maximum:
            raise ValueError(f"frame range {self.minimum}..{self.maximum} is empty")

    def allows(self, frames: int) -> bool:
        """Whether ``frames`` is in range and on a step."""
        return self.minimum <= frames <= self.maximum and (frames - self.offset) % self.step == 0

    def nearest(self, frames: int) -> int:
        """The allowed count nearest to ``frames`` (halfway rounds up), for a count within the range."""
        below = frames - (frames - self.offset) % self.step
        above = below + self.step if below != frames else below
        pick = above if frames - below >= above - frames else below
        return min(self.maximum, max(self.minimum, pick))

    def describe_steps(self) -> str:
        """ "any whole number", "4k+1 (5, 9, 13, ...)" and the like."""
        if self.step == 1:
            return "any whole number"
        first = [self.minimum + i * self.step for i in range(3)]
        return f"{self.step}k+{self.offset} ({', '.join(map(str, first))}, ...)"

    def describe(self) -> str:
        """ "from 9 to 121, 4k+1 (9, 13, 17, ...)" or "from 8 to 32"."""
        text = f"from {self.minimum} to {self.maximum}"
        return text if self.step == 1 else f"{text}, {self.describe_steps()}"


@dataclass(frozen=True)
class ModelSpace:
    """Everything a request may ask of one model, and its presets."""

    key: str
    display_name: str
    resolutions: Mapping[str, int]  # name -> short side of the output in px
    size_multiple_px: int  # width and height are multiples of this
    frames: FrameRule
    fps_range: tuple[int, int]  # frames per second of the MP4 (and the model's frame-rate conditioning)
    steps_range: tuple[int, int]  # denoising steps
    guidance_range: tuple[float, float]  # classifier-free guidance scale
    negative_prompt_applies: bool  # False where guidance is off, so a negative prompt changes nothing
    presets: Mapping[str, Preset]
    source_setting: str  # the setting naming its weights (hub id or folder)
    gpu_memory: str = ""  # the GPU memory it needs, as its authors report it (``python -m bot check`` says it)

    def __post_init__(self) -> None:
        if tuple(self.presets) != PRESET_NAMES:
            raise ValueError(f"{self.key}: presets must be {PRESET_NAMES}, got {tuple(self.presets)}")
        for preset in self.presets.values():
            if preset.resolution not in self.resolutions:
                raise ValueError(f"{self.key}: preset {preset.name} has resolution {preset.resolution!r}")
            if not self.frames.allows(preset.frames):
                raise ValueError(f"{self.key}: preset {preset.name} has {preset.frames} frames")
            for value, (low, high), what in (
                (preset.fps, self.fps_range, "fps"),
                (preset.steps, self.steps_range, "steps"),
                (preset.guidance, self.guidance_range, "guidance"),
            ):
                if not low <= value <= high:
                    raise ValueError(f"{self.key}: preset {preset.name} has {what} {value}")
        for name, short in self.resolutions.items():
            if short % self.size_multiple_px:
                raise ValueError(f"{self.key}: {name} ({short} px) is not a multiple of {self.size_multiple_px} px")

    @property
    def default_preset(self) -> Preset:
        return self.presets[DEFAULT_PRESET]

    def limits(self) -> str:
        """The model's limits in one line, for a refusal: "Wan 2.2 (5B) takes 480p or 720p, 9-121 frames (4k+1),
        ..."."""
        resolutions = ", ".join(self.resolutions)
        frames = f"{self.frames.minimum}-{self.frames.maximum} frames"
        if self.frames.step != 1:
            frames += f" ({self.frames.step}k+{self.frames.offset})"
        guidance = (
            f"guidance {self.guidance_range[0]:g}"
            if self.guidance_range[0] == self.guidance_range[1]
            else f"guidance {self.guidance_range[0]:g}-{self.guidance_range[1]:g}"
        )
        return (
            f"{self.display_name} takes {resolutions}, {frames}, {self.fps_range[0]}-{self.fps_range[1]} fps, "
            f"{self.steps_range[0]}-{self.steps_range[1]} steps, {guidance}"
        )


def _presets(*presets: Preset) -> dict[str, Preset]:
    return {preset.name: preset for preset in presets}


SPACES: dict[str, ModelSpace] = {
    I2VGENXL: ModelSpace(
        key=I2VGENXL,
        display_name="I2VGen-XL",
        resolutions={"256p": 256, "512p": 512, "768p": 768, "1024p": 1024},
        size_multiple_px=64,  # the UNet downsamples the latent three times
        frames=FrameRule(8, 32),
        fps_range=(4, 24),
        steps_range=(10, 100),
        guidance_range=(1.0, 20.0),
        negative_prompt_applies=True,
        presets=_presets(
            Preset("quick", "512p", 8, 8, 30, 9.0),
            Preset("standard", "512p", 16, 8, 50, 9.0),
            Preset("high", "768p", 24, 12, 80, 10.0),
        ),
        source_setting="I2V_MODEL",
        gpu_memory="about 14 GiB at 512p and 18 GiB at 768p in fp16 (8 GiB at 256p, 22 GiB at 1024p)",
    ),
    WAN22_5B: ModelSpace(
        key=WAN22_5B,
        display_name="Wan 2.2 (5B)",
        resolutions={"480p": 480, "720p": 704},  # 720p is 1280x704 (the authors' size)
        size_multiple_px=32,
        frames=FrameRule(9, 121, step=4, offset=1),
        fps_range=(12, 30),
        steps_range=(10, 80),
        guidance_range=(1.0, 10.0),
        negative_prompt_applies=True,
        presets=_presets(
            Preset("quick", "480p", 49, 24, 30, 5.0),
            Preset("standard", "720p", 81, 24, 40, 5.0),
            Preset("high", "720p", 121, 24, 50, 5.0),  # the authors' settings: 1280x704, 5 s at 24 fps
        ),
        source_setting="I2V_MODEL_WAN",
        gpu_memory="24 GiB with model offloading (its authors: an RTX 4090 makes a 5 s 720p clip in under 9 "
        "minutes); 80 GiB without",
    ),
    LTXV: ModelSpace(
        key=LTXV,
        display_name="LTX-Video (fast)",
        resolutions={"512p": 512, "720p": 704},  # 720p is 1216x704 at 16:9 (the default since 0.9.6)
        size_multiple_px=32,
        frames=FrameRule(9, 257, step=8, offset=1),
        fps_range=(24, 30),
        steps_range=(4, 10),
        guidance_range=(1.0, 1.0),  # distilled: guidance off
        negative_prompt_applies=False,
        presets=_presets(
            Preset("quick", "512p", 65, 24, 4, 1.0),
            Preset("standard", "720p", 121, 24, 8, 1.0),
            Preset("high", "720p", 161, 30, 10, 1.0),
        ),
        source_setting="I2V_MODEL_LTX",
        gpu_memory="about 10 GiB for the 2B checkpoints (diffusers' example); the 13B checkpoints' weights alone "
        "are about 24 GiB in bf16",
    ),
}
MODEL_KEYS: tuple[str, ...] = tuple(SPACES)


TINY_SOURCE = "tiny"  # I2V_MODEL=tiny: every model is a tiny random one built in code


def enabled_models(configured: Iterable[str], i2v_model: str) -> tuple[str, ...]:
    """The models users may choose, in order, the first the default: ``I2V_MODELS`` as set; unset, I2VGen-XL
    alone (as before there was a choice), or every model with ``I2V_MODEL=tiny`` (the tests' tiny models)."""
    chosen = tuple(configured)
    unknown = [key for key in chosen if key not in SPACES]
    if unknown:
        raise ValueError(f"unknown model {unknown[0]!r}; known: {', '.join(MODEL_KEYS)}")
    if chosen:
        return chosen
    return MODEL_KEYS if i2v_model.strip().lower() == TINY_SOURCE else (DEFAULT_MODEL,)


def worker_models(enabled: Iterable[str], narrowed: Iterable[str]) -> tuple[str, ...]:
    """What one worker may load: ``WORKER_MODELS`` (each must be enabled), or every enabled model when unset."""
    enabled = tuple(enabled)
    narrowed = tuple(narrowed)
    outside = [key for key in narrowed if key not in enabled]
    if outside:
        raise ValueError(f"WORKER_MODELS names {outside[0]}, which I2V_MODELS does not enable ({', '.join(enabled)})")
    return narrowed or enabled


def space(key: str) -> ModelSpace:
    """The space of the model ``key``; KeyError naming the known keys."""
    try:
        return SPACES[key]
    except KeyError:
        raise KeyError(f"unknown model {key!r}; known: {', '.join(MODEL_KEYS)}") from None


def display_name(key: str) -> str:
    """How people see the model ``key`` (the key itself for an unknown one, e.g. a job of a removed model)."""
    known = SPACES.get(key)
    return known.display_name if known else key


@dataclass(frozen=True)
class Bounds:
    """The union of several models' ranges: what a form or a slash command's options may accept before the
    chosen model's own check (``generator.params``)."""

    resolutions: tuple[str, ...]  # ordered by short side
    frames: tuple[int, int]
    fps: tuple[int, int]
    steps: tuple[int, int]
    guidance: tuple[float, float]


def union_bounds(keys: Iterable[str]) -> Bounds:
    """The union of the ranges of the models ``keys`` (at least one)."""
    spaces = [space(key) for key in keys]
    if not spaces:
        raise ValueError("union_bounds needs at least one model")
    sizes: dict[str, int] = {}
    for each in spaces:
        sizes.update(each.resolutions)
    return Bounds(
        resolutions=tuple(sorted(sizes, key=lambda name: (int(name.removesuffix("p")), name))),
        frames=(min(s.frames.minimum for s in spaces), max(s.frames.maximum for s in spaces)),
        fps=(min(s.fps_range[0] for s in spaces), max(s.fps_range[1] for s in spaces)),
        steps=(min(s.steps_range[0] for s in spaces), max(s.steps_range[1] for s in spaces)),
        guidance=(min(s.guidance_range[0] for s in spaces), max(s.guidance_range[1] for s in spaces)),
    )


def _round_to_multiple(value: float, multiple: int) -> int:
    return max(multiple, int(round(value / multiple)) * multiple)


def output_size(key: str, resolution: str, image_width: int, image_height: int) -> tuple[int, int]:
    """Output (width, height) of model ``key`` for an image: the short side from ``resolution``, the long side from
    the image's aspect ratio clamped to [1:2, 2:1], both multiples of the model's size multiple. The resolution
    must be one of the model's (``generator.params`` checks it first)."""
    each = space(key)
    short = each.resolutions[resolution]
    aspect = min(MAX_ASPECT, max(MIN_ASPECT, image_width / image_height))
    if aspect >= 1.0:
        return _round_to_multiple(short * aspect, each.size_multiple_px), short
    return short, _round_to_multiple(short / aspect, each.size_multiple_px)
