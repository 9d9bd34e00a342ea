"""generator.params: presets, overrides, validation messages, output sizes."""

from __future__ import annotations

import json

import pytest

from generator.params import (
    DEFAULT_NEGATIVE_PROMPT,
    FRAMES_RANGE,
    MAX_PROMPT_CHARS,
    PRESETS,
    SEED_RANGE,
    GenerationParams,
    ParamError,
    resolve_params,
    target_size,
)


def test_presets_match_design_table() -> None:
    assert {name: (p.resolution, p.frames, p.fps, p.steps, p.guidance) for name, p in PRESETS.items()} == {
        "quick": ("512p", 8, 8, 30, 9.0),
        "standard": ("512p", 16, 8, 50, 9.0),
        "high": ("768p", 24, 12, 80, 10.0),
    }


def test_defaults_without_preset_are_the_recommended_first_run() -> None:
    p = resolve_params("a cat turning its head slowly", seed=7)
    assert (p.resolution, p.frames, p.fps, p.steps, p.guidance, p.seed, p.preset) == ("512p", 16, 8, 50, 9.0, 7, None)
    assert p.negative_prompt == DEFAULT_NEGATIVE_PROMPT
    assert DEFAULT_NEGATIVE_PROMPT.startswith("Distorted, discontinuous, Ugly, blurry")


def test_explicit_values_override_the_preset() -> None:
    p = resolve_params(
        "waves", preset="high", frames=12, fps=6, steps=20, guidance=7.5, resolution="256p", negative_prompt="blur"
    )
    assert (p.resolution, p.frames, p.fps, p.steps, p.guidance, p.negative_prompt, p.preset) == (
        "256p",
        12,
        6,
        20,
        7.5,
        "blur",
        "high",
    )


def test_random_seed_is_chosen_and_in_range() -> None:
    seeds = {resolve_params("x").seed for _ in range(20)}
    assert len(seeds) > 1
    assert all(SEED_RANGE[0] <= s <= SEED_RANGE[1] for s in seeds)


def test_round_trip_through_json() -> None:
    p = resolve_params("a dog", preset="quick", seed=2**32 - 1)
    again = GenerationParams.from_dict(json.loads(json.dumps(p.to_dict())))
    assert again == p


@pytest.mark.parametrize(
    ("field", "kwargs", "allowed_fragment"),
    [
        ("frames", {"frames": 7}, "8 to 32"),
        ("frames", {"frames": 33}, "8 to 32"),
        ("frames", {"frames": 16.5}, "8 to 32"),
        ("fps", {"fps": 3}, "4 to 24"),
        ("fps", {"fps": 25}, "4 to 24"),
        ("steps", {"steps": 9}, "10 to 100"),
        ("steps", {"steps": 101}, "10 to 100"),
        ("guidance", {"guidance": 0.99}, "1.0 to 20.0"),
        ("guidance", {"guidance": 20.01}, "1.0 to 20.0"),
        ("guidance", {"guidance": float("nan")}, "1.0 to 20.0"),
        ("seed", {"seed": -1}, "0 to 4294967295"),
        ("seed", {"seed": 2**32}, "0 to 4294967295"),
        ("resolution", {"resolution": "480p"}, "256p, 512p, 768p, 1024p"),
        ("preset", {"preset": "ultra"}, "quick, standard, high"),
        ("negative_prompt", {"negative_prompt": "n" * (MAX_PROMPT_CHARS + 1)}, "at most 500 characters"),
    ],
)
def test_out_of_range_values_are_refused_naming_the_field(field: str, kwargs: dict, allowed_fragment: str) -> None:
    with pytest.raises(ParamError) as info:
        resolve_params("a cat", **kwargs)
    err = info.value
    assert err.field == field
    assert err.value == kwargs[field] or err.value != err.value  # NaN is never equal to itself
    assert allowed_fragment in err.allowed
    message = str(err)
    assert message.startswith(field + " ")
    assert allowed_fragment in message


def test_too_long_prompt_is_refused() -> None:
    with pytest.raises(ParamError) as info:
        resolve_params("p" * (MAX_PROMPT_CHARS + 1))
    assert info.value.field == "prompt"


def test_bool_is_not_a_number() -> None:
    with pytest.raises(ParamError) as info:
        resolve_params("x", frames=True)
    assert info.value.field == "frames"


def test_boundaries_are_accepted() -> None:
    lo = resolve_params("x", frames=FRAMES_RANGE[0], fps=4, steps=10, guidance=1.0, seed=0)
    hi = resolve_params("x", frames=FRAMES_RANGE[1], fps=24, steps=100, guidance=20.0, seed=2**32 - 1)
    assert (lo.frames, hi.frames) == (8, 32)


def test_direct_construction_validates_too() -> None:
    good = resolve_params("x", seed=1).to_dict()
    with pytest.raises(ParamError) as info:
        GenerationParams.from_dict({**good, "steps": 1000})
    assert info.value.field == "steps"
    with pytest.raises(ParamError) as info:
        GenerationParams.from_dict({**good, "colour": "red"})
    assert info.value.field == "colour"


@pytest.mark.parametrize(
    ("resolution", "size", "expected"),
    [
        ("512p", (1920, 1080), (896, 512)),  # 16:9 -> 910 -> 896
        ("512p", (1080, 1920), (512, 896)),  # portrait mirrors landscape
        ("512p", (1000, 1000), (512, 512)),
        ("768p", (1280, 704), (1408, 768)),  # 1396 -> 1408
        ("256p", (5000, 1000), (512, 256)),  # clamped to 2:1
        ("1024p", (300, 3000), (1024, 2048)),  # clamped to 1:2
        ("256p", (4, 3), (320, 256)),
    ],
)
def test_target_size(resolution: str, size: tuple[int, int], expected: tuple[int, int]) -> None:
    w, h = target_size(resolution, *size)
    assert (w, h) == expected
    assert w % 64 == 0 and h % 64 == 0
    assert 0.5 <= w / h <= 2.0


def test_target_size_refuses_bad_input() -> None:
    with pytest.raises(ParamError) as info:
        target_size("512p", 0, 100)
    assert info.value.field == "image_width"
    with pytest.raises(ParamError) as info:
        target_size("999p", 100, 100)
    assert info.value.field == "resolution"
