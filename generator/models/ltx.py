"""LTX-Video 0.9.x through diffusers' ``LTXConditionPipeline`` (key ``ltxv``), the image as the condition at frame 0.

The default checkpoint is ``Lightricks/LTX-Video-0.9.7-distilled`` (docs/models.md says why): guidance- and
timestep-distilled, so guidance 1.0 (no negative prompt) and 4 to 10 steps. With 8 steps at guidance 1.0 the run
uses its authors' timesteps for the distilled model; any other count uses the pipeline's own schedule. Frame
counts are 8k+1 and sides multiples of 32 (the VAE's compression). The decode settings are the ones diffusers
documents for the timestep-aware VAE (0.9.1 and later). Progress and cancel through ``callback_on_step_end``:
cancel raises from it, since the pipeline's ``interrupt`` flag would still decode.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from generator.model_spaces import LTXV
from generator.models.base import Run, VideoBackend
from generator.performance import WarmupShape

# The distilled model's timesteps for its first pass (diffusers' LTX-Video docs, 0.9.7 distilled).
DISTILLED_TIMESTEPS: tuple[float, ...] = (1000, 993, 987, 981, 975, 909, 725, 0.03)
DISTILLED_GUIDANCE: float = 1.0
DECODE_TIMESTEP: float = 0.05  # the timestep-aware VAE decodes as if at this noise level
DECODE_NOISE_SCALE: float = 0.025
IMAGE_COND_NOISE_SCALE: float = 0.025  # noise added to the conditioning image's latents each step


class LTXBackend(VideoBackend):
    """A loaded LTX-Video pipeline kept warm between jobs."""

    key: ClassVar[str] = LTXV
    pipeline_class: ClassVar[str] = "LTXConditionPipeline"
    size_step: ClassVar[int] = 32
    cuda_dtype: ClassVar[torch.dtype] = torch.bfloat16
    default_source: ClassVar[str] = "Lightricks/LTX-Video-0.9.7-distilled"
    native_shape: ClassVar[WarmupShape] = (1216, 704, 121)  # its default size since 0.9.6 (Lightricks README)
    native_fps: ClassVar[int] = 30

    def _pipeline_size_factor(self) -> int:
        return int(self.pipeline.vae_spatial_compression_ratio)

    def frame_multiple(self) -> int:
        return int(self.pipeline.vae_temporal_compression_ratio)

    def _call_options(self, run: Run) -> dict[str, Any]:
        distilled = run.steps == len(DISTILLED_TIMESTEPS) and run.guidance == DISTILLED_GUIDANCE
        return {
            "frame_rate": run.fps,
            "timesteps": list(DISTILLED_TIMESTEPS) if distilled else None,
            "decode_timestep": DECODE_TIMESTEP,
            "decode_noise_scale": DECODE_NOISE_SCALE,
            "image_cond_noise_scale": IMAGE_COND_NOISE_SCALE,
        }
