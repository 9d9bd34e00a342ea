"""The worker's image safety check (generator.safety): the tiny classifier through transformers' real
image-classification pipeline, its verdict per stage chosen by the test hooks, the threshold, the frames sampled,
and SAFETY_MODEL=none."""

from __future__ import annotations

from PIL import Image

from generator.faults import FaultPlan
from generator.safety import SafetyChecker, sample_frames
from jobs.safety import STAGE_INPUT, STAGE_OUTPUT, Verdict


def _images(count: int) -> list[Image.Image]:
    return [Image.new("RGB", (48, 32), (10 * i, 100, 200)) for i in range(count)]


def test_the_tiny_classifier_gives_each_stage_the_verdict_the_hooks_chose() -> None:
    checker = SafetyChecker.load(
        "Falconsai/nsfw_image_detection",
        video_model="tiny",
        threshold=0.5,
        unsafe_label="nsfw",
        device="cpu",
        faults=FaultPlan(unsafe_output=True),
    )
    assert checker is not None and checker.name == "tiny"
    from transformers import ImageClassificationPipeline

    assert all(isinstance(p, ImageClassificationPipeline) for p in checker.pipelines.values())
    safe = checker.check(STAGE_INPUT, _images(1))
    unsafe = checker.check(STAGE_OUTPUT, _images(3))
    assert safe.verdict is Verdict.SAFE and safe.score < 0.01
    assert unsafe.verdict is Verdict.UNSAFE and unsafe.score > 0.99
    assert safe.seconds >= 0 and unsafe.seconds >= 0
    strict = SafetyChecker(checker.pipelines, name="tiny", threshold=0.0, unsafe_label="nsfw")
    assert strict.check(STAGE_INPUT, _images(1)).verdict is Verdict.UNSAFE  # the threshold decides


def test_safety_model_none_loads_nothing() -> None:
    assert (
        SafetyChecker.load(
            "none",
            video_model="tiny",
            threshold=0.5,
            unsafe_label="nsfw",
            device="cpu",
            faults=FaultPlan(unsafe_input=True),
        )
        is None
    )


def test_the_output_check_looks_at_the_first_middle_and_last_frames() -> None:
    frames = _images(16)
    assert sample_frames(frames) == [frames[0], frames[8], frames[15]]
    assert sample_frames(frames[:2]) == frames[:2]
    assert sample_frames(frames[:1]) == frames[:1]
    assert sample_frames([]) == []
