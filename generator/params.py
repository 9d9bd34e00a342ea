"""Generation parameters: one validated value per job, checked against its model's space (no torch).

:class:`GenerationParams` is everything that decides one video, the model included; it travels as one value from
the request to the worker (``jobs.admission.NewJob``, ``jobs.queue.ClaimedJob``, the page's JSON, re-roll and
vary). Adding a parameter touches this module, the job model (``jobs.models.Job``) and one migration.

``resolve_request`` turns user input (a model, a preset, explicit overrides) into parameters plus the notes the user
is told (a frame count rounded to the model's rule, a negative prompt the model ignores); every refusal is a
:class:`ParamError` naming the field, the bad value, what is allowed and, for a model's range, the model's limits.
Each model's ranges and presets are in :mod:`generator.model_spaces`.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

from generator.model_spaces import (
    DEFAULT_MODEL,
    DEFAULT_PRESET,
    MODEL_KEYS,
    PRESET_NAMES,
    SPACES,
    ModelSpace,
    Preset,
    output_size,
    space,
)

# I2VGen-XL's space (the default model), under the names used before there was a choice; every model's own
# space, and the union the front ends offer, are in generator.model_spaces.
_DEFAULT_SPACE = SPACES[DEFAULT_MODEL]
RESOLUTIONS: Mapping[str, int] = _DEFAULT_SPACE.resolutions  # name -> short side in px
FRAMES_RANGE: tuple[int, int] = (_DEFAULT_SPACE.frames.minimum, _DEFAULT_SPACE.frames.maximum)  # frames per video
FPS_RANGE: tuple[int, int] = _DEFAULT_SPACE.fps_range  # frames per second of the MP4
STEPS_RANGE: tuple[int, int] = _DEFAULT_SPACE.steps_range  # denoising steps
GUIDANCE_RANGE: tuple[float, float] = _DEFAULT_SPACE.guidance_range  # classifier-free guidance scale
PRESETS: Mapping[str, Preset] = _DEFAULT_SPACE.presets
SIZE_MULTIPLE_PX: int = _DEFAULT_SPACE.size_multiple_px
SEED_RANGE: tuple[int, int] = (0, 2**32 - 1)  # any unsigned 32-bit integer
MAX_PROMPT_CHARS: int = 500  # characters, for the prompt and the negative prompt

# VGen's standard negative prompt (tools/modules/config.py, cfg.negative_prompt).
DEFAULT_NEGATIVE_PROMPT: str = (
    "Distorted, discontinuous, Ugly, blurry, low resolution, motionless, static, disfigured, "
    "disconnected limbs, Ugly faces, incomplete arms"
)


class ParamError(ValueError):
    """A generation parameter is invalid.

    Attributes: ``field`` (the parameter's name), ``value`` (what was given), ``allowed`` (a human description of
    the allowed values), ``model`` (the model whose range refused it, or None). ``str()`` is a one-line message
    naming them, and the model's limits when a model's range refused the value.
    """

    def __init__(self, field: str, value: Any, allowed: str, *, model: str | None = None) -> None:
        self.field = field
        self.value = value
        self.allowed = allowed
        self.model = model
        shown = repr(value) if not isinstance(value, str) or len(value) <= 40 else repr(value[:37] + "...")
        message = f"{field} {shown} is not allowed: {field} must be {allowed}"
        if model is not None:
            message += f" ({SPACES[model].limits()})"
        super().__init__(message)


def random_seed() -> int:
    """A fresh random seed in SEED_RANGE."""
    return secrets.randbelow(SEED_RANGE[1] + 1)


def _whole(field: str, value: Any, allowed: str, model: str | None = None) -> int:
    if isinstance(value, bool):
        raise ParamError(field, value, allowed, model=model)
    if isinstance(value, float):
        if not value.is_integer():
            raise ParamError(field, value, allowed, model=model)
        value = int(value)
    if isinstance(value, str):
        try:
            value = int(value.strip())
        except ValueError:
            raise ParamError(field, value, allowed, model=model) from None
    if not isinstance(value, int):
        raise ParamError(field, value, allowed, model=model)
    return value


def _check_int(field: str, value: Any, bounds: tuple[int, int], model: str | None = None) -> int:
    allowed = f"a whole number from {bounds[0]} to {bounds[1]}"
    value = _whole(field, value, allowed, model)
    if not bounds[0] <= value <= bounds[1]:
        raise ParamError(field, value, allowed, model=model)
    return value


def _check_float(field: str, value: Any, bounds: tuple[float, float], model: str | None = None) -> float:
    allowed = f"{bounds[0]}" if bounds[0] == bounds[1] else f"a number from {bounds[0]} to {bounds[1]}"
    if isinstance(value, bool):
        raise ParamError(field, value, allowed, model=model)
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            raise ParamError(field, value, allowed, model=model) from None
    if not isinstance(value, (int, float)) or not math.isfinite(value) or not bounds[0] <= value <= bounds[1]:
        raise ParamError(field, value, allowed, model=model)
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


def _check_frames(value: Any, each: ModelSpace) -> int:
    """A frame count the model accepts exactly (``resolve_request`` rounds between steps before this)."""
    allowed = each.frames.describe()
    frames = _whole("frames", value, allowed, each.key)
    if not each.frames.allows(frames):
        raise ParamError("frames", value, allowed, model=each.key)
    return frames


def normalize_model(value: Any) -> str:
    """The model key for a key or a display name (any case); raise ParamError naming the known ones."""
    allowed = "one of " + ", ".join(f"{key} ({SPACES[key].display_name})" for key in MODEL_KEYS)
    if not isinstance(value, str):
        raise ParamError("model", value, allowed)
    text = value.strip().lower()
    for key, each in SPACES.items():
        if text in (key, each.display_name.lower()):
            return key
    raise ParamError("model", value, allowed)


def normalize_resolution(value: Any, model: str = DEFAULT_MODEL) -> str:
    """Return the canonical resolution name ("512p") for "512p", "512P", "512" or 512 among ``model``'s
    resolutions; raise ParamError."""
    each = space(model)
    allowed = "one of " + ", ".join(each.resolutions)
    if isinstance(value, bool):
        raise ParamError("resolution", value, allowed, model=model)
    if isinstance(value, int):
        value = f"{value}p"
    if not isinstance(value, str):
        raise ParamError("resolution", value, allowed, model=model)
    name = value.strip().lower()
    if not name.endswith("p"):
        name += "p"
    if name not in each.resolutions:
        raise ParamError("resolution", value, allowed, model=model)
    return name


@dataclass(frozen=True)
class GenerationParams:
    """Everything that decides one video, validated on construction against the model's space.

    ``preset`` records the preset the values started from (None when none was named); the other fields are the
    values actually used. ``to_dict``/``from_dict`` round-trip through JSON-safe dicts; a dict without ``model``
    (written before there was a choice) is I2VGen-XL's.
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
    model: str = DEFAULT_MODEL

    def __post_init__(self) -> None:
        model = normalize_model(self.model)
        each = SPACES[model]
        checked = {
            "model": model,
            "prompt": _check_text("prompt", self.prompt),
            "negative_prompt": _check_text("negative_prompt", self.negative_prompt),
            "resolution": normalize_resolution(self.resolution, model),
            "frames": _check_frames(self.frames, each),
            "fps": _check_int("fps", self.fps, each.fps_range, model),
            "steps": _check_int("steps", self.steps, each.steps_range, model),
            "guidance": _check_float("guidance", self.guidance, each.guidance_range, model),
            "seed": _check_int("seed", self.seed, SEED_RANGE),
        }
        if self.preset is not None and self.preset not in PRESET_NAMES:
            raise ParamError("preset", self.preset, "one of " + ", ".join(PRESET_NAMES))
        for name, value in checked.items():
            object.__setattr__(self, name, value)

    @property
    def space(self) -> ModelSpace:
        """The model's parameter space."""
        return SPACES[self.model]

    @property
    def model_name(self) -> str:
        """The model as people see it ("Wan 2.2 (5B)")."""
        return SPACES[self.model].display_name

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict of all fields."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GenerationParams:
        """Rebuild from ``to_dict`` output; unknown keys are refused, a missing negative prompt gets the default,
        a missing model is I2VGen-XL."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ParamError(unknown[0], data[unknown[0]], "one of the known fields: " + ", ".join(sorted(names)))
        values = dict(data)
        values.setdefault("negative_prompt", DEFAULT_NEGATIVE_PROMPT)
        values.setdefault("preset", None)
        values.setdefault("model", DEFAULT_MODEL)
        missing = sorted(names - set(values))
        if missing:
            raise ParamError(missing[0], None, "present")
        return cls(**values)

    @classmethod
    def of(cls, record: Any) -> GenerationParams:
        """The parameters of anything that carries them as attributes of the same names (a stored job)."""
        return cls(**{f.name: getattr(record, f.name) for f in fields(cls)})

    def replace(self, **changes: Any) -> GenerationParams:
        """A copy with ``changes`` applied, validated again."""
        return GenerationParams(**{**self.to_dict(), **changes})

    def describe(self) -> str:
        """One human line: "I2VGen-XL, 512p, 16 frames, 8 fps, 50 steps, guidance 9.0, seed 42"."""
        text = (
            f"{self.model_name}, {self.resolution}, {self.frames} frames, {self.fps} fps, {self.steps} steps, "
            f"guidance {self.guidance}, seed {self.seed}"
        )
        return f"{self.preset} preset: {text}" if self.preset else text


@dataclass(frozen=True)
class Resolved:
    """Parameters as resolved from a request, and what the user is told about how they were adjusted."""

    params: GenerationParams
    notes: tuple[str, ...] = ()


def _normalize_preset(preset: Any) -> str | None:
    if preset is None:
        return None
    key = preset.strip().lower() if isinstance(preset, str) else preset
    if key not in PRESET_NAMES:
        raise ParamError("preset", preset, "one of " + ", ".join(PRESET_NAMES))
    return key


def resolve_request(
    prompt: str,
    *,
    model: str | None = None,
    preset: str | None = None,
    resolution: str | int | None = None,
    frames: int | None = None,
    fps: int | None = None,
    steps: int | None = None,
    guidance: float | None = None,
    seed: int | None = None,
    negative_prompt: str | None = None,
) -> Resolved:
    """Build validated parameters: the model's preset (or its defaults) fills in, explicit values override it.

    ``model`` None is the default model. A frame count within the model's range but between two allowed ones is
    rounded to the nearest (a note says so); a negative prompt given for a model that ignores it is kept and
    noted. A ``seed`` of None picks a random one (always recorded). Raises ParamError naming the field.
    """
    key = DEFAULT_MODEL if model is None else normalize_model(model)
    each = SPACES[key]
    preset = _normalize_preset(preset)
    base = each.presets[preset or DEFAULT_PRESET]
    notes: list[str] = []
    if frames is not None:
        asked = _whole("frames", frames, each.frames.describe(), key)
        if not each.frames.minimum <= asked <= each.frames.maximum:
            raise ParamError("frames", frames, each.frames.describe(), model=key)
        frames = each.frames.nearest(asked)
        if frames != asked:
            notes.append(
                f"{each.display_name} makes {each.frames.describe_steps()} frames: {asked} frames became {frames}."
            )
    if negative_prompt is None:
        negative_prompt = DEFAULT_NEGATIVE_PROMPT if each.negative_prompt_applies else ""
    elif negative_prompt.strip() and not each.negative_prompt_applies:
        notes.append(f"{each.display_name} runs without guidance, so the negative prompt has no effect.")
    params = GenerationParams(
        prompt=prompt,
        negative_prompt=negative_prompt,
        resolution=base.resolution if resolution is None else normalize_resolution(resolution, key),
        frames=base.frames if frames is None else frames,
        fps=base.fps if fps is None else fps,
        steps=base.steps if steps is None else steps,
        guidance=base.guidance if guidance is None else guidance,
        seed=random_seed() if seed is None else seed,
        preset=preset,
        model=key,
    )
    return Resolved(params, tuple(notes))


def resolve_params(prompt: str, **options: Any) -> GenerationParams:
    """``resolve_request`` without the notes (for callers that tell the user nothing, such as the CLI's
    defaults); front ends use ``resolve_request`` and show its notes."""
    return resolve_request(prompt, **options).params


def target_size(resolution: str, image_width: int, image_height: int, model: str = DEFAULT_MODEL) -> tuple[int, int]:
    """Output (width, height) of ``model`` for an image: the short side from ``resolution``, the long side from the
    image's aspect ratio clamped to [1:2, 2:1], both multiples of the model's size multiple."""
    name = normalize_resolution(resolution, model)
    for field_name, value in (("image_width", image_width), ("image_height", image_height)):
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ParamError(field_name, value, "a positive number of pixels")
    return output_size(model, name, image_width, image_height)
