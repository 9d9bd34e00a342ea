"""Wan 2.2 TI2V-5B through diffusers' ``WanImageToVideoPipeline`` (key ``wan22-5b``).

The 5B layout: one transformer (no second, low-noise expert), a 48-channel VAE with patch size 2 (16x spatial,
4x temporal compression), ``expand_timesteps=True`` (the first latent frame keeps the image, its timestep masked
to 0). Frame counts are 4k+1 and sides multiples of 32. The transformer runs in bf16 on CUDA (its authors'
dtype), the VAE in fp32 as in diffusers' example. Progress and cancel through ``callback_on_step_end``: cancel
raises from it, since the pipeline's ``interrupt`` flag would still decode.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch

from generator.model_spaces import WAN22_5B
from generator.models.base import VideoBackend
from generator.performance import WarmupShape


class WanBackend(VideoBackend):
    """A loaded Wan 2.2 TI2V-5B pipeline kept warm between jobs."""

    key: ClassVar[str] = WAN22_5B
    pipeline_class: ClassVar[str] = "WanImageToVideoPipeline"
    size_step: ClassVar[int] = 32
    cuda_dtype: ClassVar[torch.dtype] = torch.bfloat16
    default_source: ClassVar[str] = "Wan-AI/Wan2.2-TI2V-5B-Diffusers"
    native_shape: ClassVar[WarmupShape] = (1280, 704, 121)  # 720p, 5 s at 24 fps (the Wan2.2 README)
    native_fps: ClassVar[int] = 24
    # The TI2V-5B repository is written for WanPipeline; the image-to-video class takes the same components and
    # needs the 5B's timestep expansion said explicitly.
    load_options: ClassVar[Mapping[str, Any]] = {"expand_timesteps": True, "boundary_ratio": None}

    @classmethod
    def load_dtype(cls, dtype: torch.dtype) -> dict[str, torch.dtype]:
        return {"vae": torch.float32, "default": dtype}  # the Wan VAE runs in fp32 (diffusers' example loads it so)

    def _after_prepare(self) -> None:
        vae = self.pipeline.vae
        if vae.dtype != torch.float32:
            vae.to(dtype=torch.float32)  # see load_dtype

    def _pipeline_size_factor(self) -> int:
        pipe = self.pipeline
        return int(pipe.vae_scale_factor_spatial) * int(pipe.transformer.config.patch_size[1])

    def frame_multiple(self) -> int:
        return int(self.pipeline.vae_scale_factor_temporal)
