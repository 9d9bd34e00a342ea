"""generator.model_spaces and per-model validation in generator.params: each model's ranges, rules and presets."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from generator.model_spaces import (
    LTXV,
    MODEL_KEYS,
    SPACES,
    WAN22_5B,
    FrameRule,
    display_name,
    union_bounds,
)
from generator.params import DEFAULT_NEGATIVE_PROMPT, GenerationParams, ParamError, resolve_request, target_size


def test_keys_and_display_names() -> None:
    assert MODEL_KEYS == ("i2vgenxl", "wan22-5b", "ltxv")
    assert [display_name(k) for k in MODEL_KEYS] == ["I2VGen-XL", "Wan 2.2 (5B)", "LTX-Video (fast)"]
    assert display_name("gone") == "gone"


def test_authors_settings_are_the_high_presets() -> None:
    wan = SPACES[WAN22_5B].presets["high"]
    assert (wan.frames, wan.fps, wan.steps, wan.guidance) == (121, 24, 50, 5.0)
    assert target_size(wan.resolution, 1280, 720, WAN22_5B) == (1248, 704)
    ltx = SPACES[LTXV]
    assert all(p.guidance == 1.0 and 4 <= p.steps <= 10 and (p.frames - 1) % 8 == 0 for p in ltx.presets.values())
    assert not ltx.negative_prompt_applies


@pytest.mark.parametrize("key", MODEL_KEYS)
def test_every_preset_resolves_and_sizes_are_multiples(key: str) -> None:
    each = SPACES[key]
    for name in each.presets:
        params = resolve_request("waves", model=key, preset=name, seed=1).params
        assert params.model == key
        for aspect in ((1, 1), (16, 9), (9, 16), (5, 1)):
            width, height = target_size(params.resolution, *aspect, key)
            assert width % each.size_multiple_px == 0 and height % each.size_multiple_px == 0
            assert 0.5 <= width / height <= 2.0


@pytest.mark.parametrize(
    ("rule", "asked", "expected"),
    [
        (FrameRule(9, 121, step=4, offset=1), 9, 9),
        (FrameRule(9, 121, step=4, offset=1), 10, 9),
        (FrameRule(9, 121, step=4, offset=1), 11, 13),  # halfway rounds up
        (FrameRule(9, 121, step=4, offset=1), 120, 121),
        (FrameRule(9, 257, step=8, offset=1), 16, 17),
        (FrameRule(9, 257, step=8, offset=1), 12, 9),
        (FrameRule(8, 32), 13, 13),
    ],
)
def test_frame_rule_rounds_to_the_nearest_allowed(rule: FrameRule, asked: int, expected: int) -> None:
    assert rule.nearest(asked) == expected
    assert rule.allows(expected)


def test_frames_between_steps_are_rounded_and_the_user_is_told() -> None:
    resolved = resolve_request("waves", model="wan22-5b", frames=30, seed=3)
    assert resolved.params.frames == 29
    assert resolved.notes == ("Wan 2.2 (5B) makes 4k+1 (9, 13, 17, ...) frames: 30 frames became 29.",)
    assert resolve_request("waves", model="wan22-5b", frames=29, seed=3).notes == ()


def test_out_of_a_models_range_is_refused_naming_its_limits() -> None:
    with pytest.raises(ParamError) as info:
        resolve_request("waves", model="ltxv", steps=30)
    assert info.value.field == "steps" and info.value.model == "ltxv"
    limits = "LTX-Video (fast) takes 512p, 720p, 9-257 frames (8k+1), 24-30 fps, 4-10 steps, guidance 1"
    assert limits in str(info.value)
    with pytest.raises(ParamError, match="frames 200 is not allowed: frames must be from 9 to 121"):
        resolve_request("waves", model="wan22-5b", frames=200)
    with pytest.raises(ParamError, match="resolution '1024p'.*one of 480p, 720p"):
        resolve_request("waves", model="wan22-5b", resolution="1024p")
    with pytest.raises(ParamError, match="guidance 9.0 is not allowed: guidance must be 1.0"):
        resolve_request("waves", model="ltxv", guidance=9.0)
    # I2VGen-XL's own range is unchanged
    with pytest.raises(ParamError, match="I2VGen-XL takes"):
        resolve_request("waves", frames=121)


def test_model_by_display_name_and_unknown_model() -> None:
    assert resolve_request("x", model="Wan 2.2 (5B)", seed=1).params.model == "wan22-5b"
    with pytest.raises(ParamError, match="model 'sora' is not allowed: model must be one of i2vgenxl"):
        resolve_request("x", model="sora")


def test_negative_prompt_per_model() -> None:
    assert resolve_request("x", model="wan22-5b", seed=1).params.negative_prompt == DEFAULT_NEGATIVE_PROMPT
    ltx = resolve_request("x", model="ltxv", seed=1)
    assert ltx.params.negative_prompt == "" and ltx.notes == ()
    told = resolve_request("x", model="ltxv", seed=1, negative_prompt="blur")
    assert told.notes == ("LTX-Video (fast) runs without guidance, so the negative prompt has no effect.",)


def test_params_round_trip_with_the_model_and_old_dicts_are_i2vgenxl() -> None:
    params = resolve_request("a dog", model="ltxv", preset="quick", seed=5).params
    assert GenerationParams.from_dict(json.loads(json.dumps(params.to_dict()))) == params
    old = params.to_dict() | {"resolution": "512p", "frames": 16, "fps": 8, "steps": 50, "guidance": 9.0}
    del old["model"]
    assert GenerationParams.from_dict(old).model == "i2vgenxl"
    wan = params.replace(model="wan22-5b", resolution="480p", frames=9, steps=30, guidance=5.0, fps=24)
    assert wan.model == "wan22-5b"
    assert params.describe().startswith("quick preset: LTX-Video (fast), 512p, 65 frames")


def test_union_bounds() -> None:
    bounds = union_bounds(MODEL_KEYS)
    assert bounds.resolutions == ("256p", "480p", "512p", "720p", "768p", "1024p")
    assert bounds.frames == (8, 257) and bounds.fps == (4, 30) and bounds.steps == (4, 100)
    assert bounds.guidance == (1.0, 20.0)
    assert union_bounds(["i2vgenxl"]).frames == (8, 32)


def test_module_imports_no_torch() -> None:
    code = "import sys, generator.params, generator.model_spaces; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
