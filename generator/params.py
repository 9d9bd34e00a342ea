"""Generation parameters: ranges, presets, validation and the output size (no torch).

Ranges and presets are the ones the README's parameter table lists (those of the original I2VGen-XL web page). ``resolve_params`` turns user input (a preset
plus explicit overrides) into a validated, frozen :class:`GenerationParams`; every refusal is a :class:`ParamError`
naming the field, the bad value and what is allowed.
"""

from __future__ import annotations

import math
import secrets
from dataclasses import asdict, dataclass, fields
from typing import Any, Mapping

# Short side of the output in pixels, per resolution name.
RESOLUTIONS: dict[str, int] = {"256p": 256, "512p": 512, "768p": 768, "1024p": 1024}
FRAMES_RANGE: tuple[int, int] = (8, 32)  # frames per video
FPS_RANGE: tuple[int, int] = (4, 24)  # frames per second of the MP4
STEPS_RANGE: tuple[int, int] = (10, 100)  # denoising steps
GUIDANCE_RANGE: tuple[float, float] = (1.0, 20.0)  # classifier-free guidance scale
SEED_RANGE: tuple[int, int] = (0, 2**32 - 1)  # any unsigned 32-bit integer
MAX_PROMPT_CHARS: int = 500  # characters, for the prompt and the negative prompt
SIZE_MULTIPLE_PX: int = 64  # the UNet downsamples the latent three times: sizes are multiples of 64 px
MIN_ASPECT: float = 0.5  # width / height of the output is clamped to [1:2, 2:1]
MAX_ASPECT: float = 2.0

# VGen's standard negative prompt (tools/modules/config.py, cfg.negative_prompt).
DEFAULT_NEGATIVE_PROMPT: str = (
    "Distorted, discontinuous, Ugly, blurry, low resolution, motionless, static, disfigured, "
    "disconnected limbs, Ugly faces, incomplete arms"
)


@dataclass(frozen=True)
class Preset:
    """A named set of defaults (the README's parameter table)."""

    name: str
    resolution: str
    frames: int
    fps: int
    steps: int
    guidance: float


PRESETS: dict[str, Preset] = {
    "quick": Preset("quick", "512p", 8, 8, 30, 9.0),
    "standard": Preset("standard", "512p", 16, 8, 50, 9.0),
    "high": Preset("high", "768p", 24, 12, 80, 10.0),
}
# Values used when neither a preset nor an explicit value is given (the seed's recommended first run).
DEFAULT_PRESET: str = "standard"


class ParamError(ValueError):
    """A generation parameter is invalid.

    Attributes: ``field`` (the parameter's name), ``value`` (what was given), ``allowed`` (a human description of
    the allowed values). ``str()`` is a one-line message naming all three.
    """

    def __init__(self, field: str, value: Any, allowed: str) -> None:
        self.field = field
        self.value = value
        self.allowed = allowed
        shown = repr(value) if not isinstance(value, str) or len(value) <= 40 else repr(value[:37] + "...")
        super().__init__(f"{field} {shown} is not allowed: {field} must be {allowed}")


def random_seed() -> int:
    """A fresh random seed in SEED_RANGE."""
    return secrets.randbelow(SEED_RANGE[1] + 1)


def _check_int(field: str, value: Any, bounds: tuple[int, int]) -> int:
    allowed = f"a whole number from {bounds[0]} to {bounds[1]}"
    if isinstance(value, bool):
        raise ParamError(field, value, allowed)
    if isinstance(value, float):
        if not value.is_integer():
            raise ParamError(field, value, allowed)
        value = int(value)
    if isinstance(value, str):
        try:
            value = int(value.strip())
        except ValueError:
            raise ParamError(field, value, allowed) from None
    if not isinstance(value, int) or not bounds[0] <= value <= bounds[1]:
        raise ParamError(field, value, allowed)
    return value


def _check_float(field: str, value: Any, bounds: tuple[float, float]) -> float:
    allowed = f"a number from {bounds[0]} to {bounds[1]}"
    if isinstance(value, bool):
        raise ParamError(field, value, allowed)
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            raise ParamError(field, value, allowed) from None
    if not isinstance(value, (int, float)) or not math.isfinite(value) or not bounds[0] <= value <= bounds[1]:
        raise ParamError(field, value, allowed)
    return float(value)


def _check_text(field: str, value: Any) -> str:
    allowed = f"text of at most {MAX_PROMPT_CHARS} characters"
    if not isinstance(value, str):
        raise ParamError(field, value, allowed)
    text = value.strip()
    if len(text) > MAX_PROMPT_CHARS:
        raise ParamError(field, value, allowed)
    if any(ch == "\x00" or (ord(ch) < 32 and ch not in "\t\n\r") for ch in text):
        raise ParamError(field, value, allowed + " without control characters")
    return text


def normalize_resolution(value: Any) -> str:
    """Return the canonical resolution name ("512p") for "512p", "512P", "512" or 512; raise ParamError."""
    allowed = "one of " + ", ".join(RESOLUTIONS)
    if isinstance(value, bool):
        raise ParamError("resolution", value, allowed)
    if isinstance(value, int):
        value = f"{value}p"
    if not isinstance(value, str):
        raise ParamError("resolution", value, allowed)
    name = value.strip().lower()
    if not name.endswith("p"):
        name += "p"
    if name not in RESOLUTIONS:
        raise ParamError("resolution", value, allowed)
    return name


@dataclass(frozen=True)
class GenerationParams:
    """Everything that decides one video, validated on construction.

    ``preset`` records the preset the values started from (None when none was named); the other fields are the
    values actually used. ``to_dict``/``from_dict`` round-trip through JSON-safe dicts.
    """

    prompt: str
    negative_prompt: str
    resolution: str
    frames: int
    fps: int
    steps: int
    guidance: float
    seed: int
    preset: str | None = None

    def __post_init__(self) -> None:
        checked = {
            "prompt": _check_text("prompt", self.prompt),
            "negative_prompt": _check_text("negative_prompt", self.negative_prompt),
            "resolution": normalize_resolution(self.resolution),
            "frames": _check_int("frames", self.frames, FRAMES_RANGE),
            "fps": _check_int("fps", self.fps, FPS_RANGE),
            "steps": _check_int("steps", self.steps, STEPS_RANGE),
            "guidance": _check_float("guidance", self.guidance, GUIDANCE_RANGE),
            "seed": _check_int("seed", self.seed, SEED_RANGE),
        }
        if self.preset is not None and self.preset not in PRESETS:
            raise ParamError("preset", self.preset, "one of " + ", ".join(PRESETS))
        for name, value in checked.items():
            object.__setattr__(self, name, value)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict of all fields."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GenerationParams:
        """Rebuild from ``to_dict`` output; unknown keys are refused, a missing negative prompt gets the default."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ParamError(unknown[0], data[unknown[0]], "one of the known fields: " + ", ".join(sorted(names)))
        values = dict(data)
        values.setdefault("negative_prompt", DEFAULT_NEGATIVE_PROMPT)
        values.setdefault("preset", None)
        missing = sorted(names - set(values))
        if missing:
            raise ParamError(missing[0], None, "present")
        return cls(**values)

    def describe(self) -> str:
        """One human line: "512p, 16 frames, 8 fps, 50 steps, guidance 9.0, seed 42"."""
        text = (
            f"{self.resolution}, {self.frames} frames, {self.fps} fps, {self.steps} steps, "
            f"guidance {self.guidance}, seed {self.seed}"
        )
        return f"{self.preset} preset: {text}" if self.preset else text


def resolve_params(
    prompt: str,
    *,
    preset: str | None = None,
    resolution: str | int | None = None,
    frames: int | None = None,
    fps: int | None = None,
    steps: int | None = None,
    guidance: float | None = None,
    seed: int | None = None,
    negative_prompt: str | None = None,
) -> GenerationParams:
    """Build validated parameters: the preset (or the defaults) fills in, explicit values override it.

    A ``seed`` of None picks a random one (always recorded in the result). Raises ParamError naming the field.
    """
    if preset is not None:
        key = preset.strip().lower() if isinstance(preset, str) else preset
        if key not in PRESETS:
            raise ParamError("preset", preset, "one of " + ", ".join(PRESETS))
        preset = key
    base = PRESETS[preset or DEFAULT_PRESET]
    return GenerationParams(
        prompt=prompt,
        negative_prompt=DEFAULT_NEGATIVE_PROMPT if negative_prompt is None else negative_prompt,
        resolution=base.resolution if resolution is None else resolution,
        frames=base.frames if frames is None else frames,
        fps=base.fps if fps is None else fps,
        steps=base.steps if steps is None else steps,
        guidance=base.guidance if guidance is None else guidance,
        seed=random_seed() if seed is None else seed,
        preset=preset,
    )


def _round_to_multiple(value: float, multiple: int) -> int:
    return max(multiple, int(round(value / multiple)) * multiple)


def target_size(resolution: str, image_width: int, image_height: int) -> tuple[int, int]:
    """Output (width, height) for an image: the short side from ``resolution``, the long side from the image's
    aspect ratio clamped to [1:2, 2:1], both multiples of 64 px."""
    short = RESOLUTIONS[normalize_resolution(resolution)]
    for name, value in (("image_width", image_width), ("image_height", image_height)):
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ParamError(name, value, "a positive number of pixels")
    aspect = min(MAX_ASPECT, max(MIN_ASPECT, image_width / image_height))
    if aspect >= 1.0:
        return _round_to_multiple(short * aspect, SIZE_MULTIPLE_PX), short
    return short, _round_to_multiple(short / aspect, SIZE_MULTIPLE_PX)
