"""The image safety check of the worker: an image classifier run through transformers' ``image-classification``
pipeline on the input image before generating and on a few frames of the video after (first, middle, last).

``SAFETY_MODEL`` names the classifier (default ``Falconsai/nsfw_image_detection``, a ViT with the labels
``normal``/``nsfw``; ``none`` turns the check off); an image is unsafe when the score of ``SAFETY_UNSAFE_LABEL``
reaches ``SAFETY_THRESHOLD``. With ``I2V_MODEL=tiny`` the classifier is a tiny ViT built in code (the same labels,
no download), run through the same pipeline; the test hooks ``I2V_FAULT_UNSAFE_INPUT`` and
``I2V_FAULT_UNSAFE_OUTPUT`` (:mod:`generator.faults`) then choose its verdict for each stage, by giving the stage a
tiny classifier whose head says ``nsfw``. The classifier is loaded once beside the video model and kept.

A classifier is a filter, not a guarantee: it misses some images and flags some harmless ones.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from jobs.safety import STAGE_INPUT, STAGE_OUTPUT, Verdict

if TYPE_CHECKING:
    from PIL.Image import Image

    from generator.faults import FaultPlan

log = logging.getLogger(__name__)

SAFETY_OFF = "none"
TINY = "tiny"
TINY_LABELS = ("normal", "nsfw")
TINY_IMAGE_PX = 32  # the tiny classifier's input size
TINY_HEAD_LOGIT = 8.0  # the bias that makes the tiny classifier's verdict certain (softmax ~0.9997)
MAX_OUTPUT_FRAMES_CHECKED = 3


class UnsafeInput(Exception):
    """The input image failed the safety check: the job fails before generation (nothing charged)."""

    def __init__(self) -> None:
        super().__init__("The image safety check flagged this picture, so no video was made and nothing was charged.")


@dataclass(frozen=True)
class SafetyResult:
    """One stage's verdict: the highest unsafe score among its images, and the classifier's time (seconds)."""

    verdict: Verdict
    score: float
    seconds: float


def sample_frames(frames: Sequence[Image]) -> list[Image]:
    """The frames of a video the output check looks at: the first, the middle and the last (fewer when the
    video is shorter)."""
    if not frames:
        return []
    picks = sorted({0, len(frames) // 2, len(frames) - 1})
    return [frames[i] for i in picks][:MAX_OUTPUT_FRAMES_CHECKED]


def _tiny_classifier(unsafe: bool, device: str) -> Any:
    """A tiny randomly initialised ViT classifier (labels normal/nsfw) whose head is fixed to one verdict, and its
    image processor, as an image-classification pipeline."""
    import torch
    from transformers import ViTConfig, ViTForImageClassification, pipeline

    try:  # transformers without torchvision: the PIL processor (the default one would warn and fall back to it)
        from transformers import ViTImageProcessorPil as Processor
    except ImportError:  # pragma: no cover - older transformers
        from transformers import ViTImageProcessor as Processor  # type: ignore[assignment]  # the same interface

    config = ViTConfig(  # type: ignore[call-arg]  # fields as keywords: @auto_docstring hides the dataclass __init__
        image_size=TINY_IMAGE_PX,
        patch_size=16,
        hidden_size=8,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=16,
        num_labels=len(TINY_LABELS),
        id2label=dict(enumerate(TINY_LABELS)),
        label2id={n: i for i, n in enumerate(TINY_LABELS)},
    )
    torch.manual_seed(0)
    model = ViTForImageClassification(config).eval()
    with torch.no_grad():
        model.classifier.weight.zero_()
        model.classifier.bias.copy_(torch.tensor([0.0, TINY_HEAD_LOGIT] if unsafe else [TINY_HEAD_LOGIT, 0.0]))
    processor = Processor(size={"height": TINY_IMAGE_PX, "width": TINY_IMAGE_PX})
    return pipeline("image-classification", model=model, image_processor=processor, device=device)


class SafetyChecker:
    """The loaded classifier (one pipeline per stage: the same one, except for the tiny model's test verdicts)."""

    def __init__(self, pipelines: dict[str, Any], *, name: str, threshold: float, unsafe_label: str) -> None:
        self.pipelines = pipelines
        self.name = name
        self.threshold = threshold
        self.unsafe_label = unsafe_label

    @classmethod
    def load(
        cls,
        model: str,
        *,
        video_model: str,
        threshold: float,
        unsafe_label: str,
        device: str | None,
        faults: FaultPlan | None = None,
    ) -> SafetyChecker | None:
        """The classifier ``model`` (None when it is ``none``: no check runs). With the tiny video model it is the
        tiny classifier, its verdicts chosen by the fault hooks. Slow (a download the first time): call it on a
        thread, beside the video model's load."""
        if model.strip().lower() == SAFETY_OFF:
            log.info("image safety check off (SAFETY_MODEL=none)")
            return None
        torch_device = device or _default_device()
        if video_model == TINY or model == TINY:
            unsafe_input = bool(faults and faults.unsafe_input)
            unsafe_output = bool(faults and faults.unsafe_output)
            pipelines = {
                STAGE_INPUT: _tiny_classifier(unsafe_input, torch_device),
                STAGE_OUTPUT: _tiny_classifier(unsafe_output, torch_device),
            }
            return cls(pipelines, name=TINY, threshold=threshold, unsafe_label="nsfw")
        from transformers import pipeline

        classifier = pipeline("image-classification", model=model, device=torch_device)
        labels = set((classifier.model.config.id2label or {}).values())
        if unsafe_label not in labels:
            raise ValueError(f"SAFETY_UNSAFE_LABEL={unsafe_label!r} is not a label of {model} ({sorted(labels)})")
        return cls(
            {STAGE_INPUT: classifier, STAGE_OUTPUT: classifier},
            name=model,
            threshold=threshold,
            unsafe_label=unsafe_label,
        )

    def check(self, stage: str, images: Sequence[Image]) -> SafetyResult:
        """Classify ``images`` (RGB) for ``stage``; unsafe when any image's unsafe score reaches the threshold.
        Blocking: call it on a thread."""
        started = time.monotonic()
        answers = self.pipelines[stage]([image.convert("RGB") for image in images], top_k=None)
        score = max((a["score"] for answer in answers for a in answer if a["label"] == self.unsafe_label), default=0.0)
        verdict = Verdict.UNSAFE if score >= self.threshold else Verdict.SAFE
        return SafetyResult(verdict=verdict, score=float(score), seconds=time.monotonic() - started)


def _default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
