"""The full-size architectures written in generator/models/fullsize.py match the released checkpoints: built on
the meta device (nothing allocated), each denoiser has the parameter count its authors publish, and each
component the exact count of the released configuration."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from generator.model_spaces import I2VGENXL, LTXV, WAN22_5B
from generator.models.fullsize import (
    PUBLISHED_DENOISER_PARAMETERS,
    PUBLISHED_TOLERANCE,
    build_full_size,
    parameter_counts,
)

# Exact counts of the released configurations (I2VGen-XL's from shared/research/i2vgenxl.md section 3; the others
# as built from diffusers' conversion configs: Wan's UMT5-XXL encoder is the 5.7 B of its 11.4 GB bf16 file, LTX's
# T5-XXL encoder the 4.76 B of google/t5-v1_1-xxl's encoder).
EXPECTED: dict[str, dict[str, int]] = {
    I2VGENXL: {
        "unet": 1_420_469_224,
        "image_encoder": 632_076_800,
        "text_encoder": 352_984_064,
        "vae": 83_653_863,
        "total": 2_489_183_951,
    },
    WAN22_5B: {
        "transformer": 4_999_787_712,
        "text_encoder": 5_680_910_336,
        "vae": 704_688_668,
        "total": 11_385_386_716,
    },
    LTXV: {"transformer": 13_042_569_344, "text_encoder": 4_762_310_656, "vae": 1_246_913_522, "total": 19_051_793_522},
}


@pytest.fixture(scope="module", params=[I2VGENXL, WAN22_5B, LTXV])
def full_size(request: pytest.FixtureRequest) -> tuple[str, Any]:
    return request.param, build_full_size(request.param, "meta", torch.bfloat16)


def test_each_denoiser_has_its_published_size(full_size: tuple[str, Any]) -> None:
    key, pipe = full_size
    counts = parameter_counts(pipe)
    denoiser = counts.get("unet", counts.get("transformer"))
    assert denoiser == pytest.approx(PUBLISHED_DENOISER_PARAMETERS[key], rel=PUBLISHED_TOLERANCE)
    assert counts == EXPECTED[key]


def test_built_on_the_meta_device_in_the_dtype_asked(full_size: tuple[str, Any]) -> None:
    key, pipe = full_size
    denoiser = getattr(pipe, "unet", None) or pipe.transformer
    params = list(denoiser.parameters())
    assert {p.device.type for p in params} == {"meta"}
    assert {p.dtype for p in params} == {torch.bfloat16}
    vae_dtype = next(pipe.vae.parameters()).dtype
    assert vae_dtype == (torch.float32 if key == WAN22_5B else torch.bfloat16)  # Wan's VAE stays fp32


def test_the_layouts_are_the_released_ones() -> None:
    wan = build_full_size(WAN22_5B, "meta")
    assert wan.config.expand_timesteps is True and wan.transformer_2 is None and wan.image_encoder is None
    assert (wan.vae_scale_factor_spatial, wan.vae_scale_factor_temporal) == (16, 4)
    assert wan.vae.config.z_dim == 48 and wan.transformer.config.patch_size == (1, 2, 2)
    ltx = build_full_size(LTXV, "meta")
    assert (ltx.vae_spatial_compression_ratio, ltx.vae_temporal_compression_ratio) == (32, 8)
    assert ltx.transformer.config.num_layers == 48 and ltx.vae.config.timestep_conditioning is True
    with pytest.raises(ValueError, match="unknown model 'svd'"):
        build_full_size("svd")
