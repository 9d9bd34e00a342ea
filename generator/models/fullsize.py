"""Each backend's released architecture written in code, so a GPU machine without the hub can build it with random
weights (real shapes, real speed and memory) and the CPU can check it against the published sizes on the meta
device (no memory used).

The configurations are those of the released checkpoints' ``config.json`` files, as diffusers' conversion scripts
write them (``scripts/convert_wan_to_diffusers.py``, ``scripts/convert_ltx_to_diffusers.py`` for version 0.9.7)
and as the I2VGen-XL research note lists them. The tokenizers are the tiny word-level one: a random text encoder
needs only ids below its vocabulary size, and every pipeline pads prompts to a fixed length, so the compute is the
real model's.

Weights are random, so the frames are noise (possibly NaN in half precision); timings and memory are what the real
weights would give.
"""

from __future__ import annotations

from typing import Any

import torch

from generator.model_spaces import I2VGENXL, LTXV, WAN22_5B

# Parameters of each model's denoiser as its authors publish them (the model's name), and the fraction a build may
# differ by (names round: "5B", "13B").
PUBLISHED_DENOISER_PARAMETERS: dict[str, float] = {
    I2VGENXL: 1.42e9,  # the UNet of the 2.49 B-parameter pipeline (shared/research/i2vgenxl.md section 3)
    WAN22_5B: 5.0e9,  # "TI2V-5B" (Wan-Video/Wan2.2 README)
    LTXV: 13.0e9,  # "ltxv-13b-0.9.7-distilled" (Lightricks/LTX-Video README)
}
PUBLISHED_TOLERANCE: float = 0.05

# --- I2VGen-XL (ali-vilab/i2vgen-xl) -------------------------------------------------------------------------------

I2VGENXL_UNET: dict[str, Any] = {"sample_size": 32}  # every other I2VGenXLUNet default is the released model's
I2VGENXL_VAE: dict[str, Any] = {
    "act_fn": "silu",
    "block_out_channels": [128, 256, 512, 512],
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
    "latent_channels": 4,
    "layers_per_block": 2,
    "norm_num_groups": 32,
    "sample_size": 768,
    "scaling_factor": 0.18215,
}
I2VGENXL_TEXT: dict[str, Any] = {
    "vocab_size": 49408,
    "hidden_size": 1024,
    "intermediate_size": 4096,
    "num_hidden_layers": 24,
    "num_attention_heads": 16,
    "max_position_embeddings": 77,
    "hidden_act": "gelu",
    "layer_norm_eps": 1e-5,
    "projection_dim": 1024,
    "bos_token_id": 0,
    "eos_token_id": 2,
    "pad_token_id": 1,
}
I2VGENXL_VISION: dict[str, Any] = {
    "hidden_size": 1280,
    "intermediate_size": 5120,
    "num_hidden_layers": 32,
    "num_attention_heads": 16,
    "image_size": 224,
    "patch_size": 14,
    "num_channels": 3,
    "projection_dim": 1024,
    "hidden_act": "gelu",
    "layer_norm_eps": 1e-5,
}
I2VGENXL_SCHEDULER: dict[str, Any] = {
    "beta_schedule": "squaredcos_cap_v2",
    "rescale_betas_zero_snr": True,
    "set_alpha_to_one": True,
    "clip_sample": False,
    "steps_offset": 1,
    "timestep_spacing": "leading",
    "prediction_type": "v_prediction",
}
CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]

# --- Wan 2.2 TI2V-5B (Wan-AI/Wan2.2-TI2V-5B-Diffusers) ------------------------------------------------------------

WAN_TRANSFORMER: dict[str, Any] = {
    "patch_size": (1, 2, 2),
    "num_attention_heads": 24,
    "attention_head_dim": 128,
    "in_channels": 48,
    "out_channels": 48,
    "text_dim": 4096,
    "freq_dim": 256,
    "ffn_dim": 14336,
    "num_layers": 30,
    "cross_attn_norm": True,
    "qk_norm": "rms_norm_across_heads",
    "eps": 1e-6,
    "image_dim": None,
    "added_kv_proj_dim": None,
    "rope_max_seq_len": 1024,
}
WAN_VAE: dict[str, Any] = {
    "base_dim": 160,
    "decoder_base_dim": 256,
    "z_dim": 48,
    "dim_mult": [1, 2, 4, 4],
    "num_res_blocks": 2,
    "attn_scales": [],
    "temperal_downsample": [False, True, True],
    "dropout": 0.0,
    "is_residual": True,
    "in_channels": 12,
    "out_channels": 12,
    "patch_size": 2,
    "scale_factor_spatial": 16,
    "scale_factor_temporal": 4,
    # the latents' normalisation statistics do not change shapes or timings; random weights make them moot
    "latents_mean": [0.0] * 48,
    "latents_std": [1.0] * 48,
}
# The encoder of T5 v1.1 XXL and of its multilingual sibling UMT5 XXL: the same layout, vocabularies of their own.
T5_XXL_LAYOUT: dict[str, Any] = {
    "d_model": 4096,
    "d_kv": 64,
    "d_ff": 10240,
    "num_layers": 24,
    "num_heads": 64,
    "relative_attention_num_buckets": 32,
    "relative_attention_max_distance": 128,
    "dropout_rate": 0.0,
    "feed_forward_proj": "gated-gelu",
    "tie_word_embeddings": False,
    "is_encoder_decoder": False,
}
UMT5_XXL_ENCODER: dict[str, Any] = {"vocab_size": 256384, **T5_XXL_LAYOUT}  # google/umt5-xxl, encoder only
WAN_SCHEDULER: dict[str, Any] = {
    "prediction_type": "flow_prediction",
    "use_flow_sigmas": True,
    "flow_shift": 5.0,
    "num_train_timesteps": 1000,
}

# --- LTX-Video 0.9.7 (Lightricks/LTX-Video-0.9.7-distilled, 13B) ---------------------------------------------------

LTX_TRANSFORMER: dict[str, Any] = {
    "in_channels": 128,
    "out_channels": 128,
    "patch_size": 1,
    "patch_size_t": 1,
    "num_attention_heads": 32,
    "attention_head_dim": 128,
    "cross_attention_dim": 4096,
    "num_layers": 48,
    "activation_fn": "gelu-approximate",
    "qk_norm": "rms_norm_across_heads",
    "norm_elementwise_affine": False,
    "norm_eps": 1e-6,
    "caption_channels": 4096,
    "attention_bias": True,
    "attention_out_bias": True,
}
LTX_VAE: dict[str, Any] = {
    "in_channels": 3,
    "out_channels": 3,
    "latent_channels": 128,
    "block_out_channels": (128, 256, 512, 1024, 2048),
    "down_block_types": ("LTXVideo095DownBlock3D",) * 4,
    "decoder_block_out_channels": (256, 512, 1024),
    "layers_per_block": (4, 6, 6, 2, 2),
    "decoder_layers_per_block": (5, 5, 5, 5),
    "spatio_temporal_scaling": (True, True, True, True),
    "decoder_spatio_temporal_scaling": (True, True, True),
    "decoder_inject_noise": (False, False, False, False),
    "downsample_type": ("spatial", "temporal", "spatiotemporal", "spatiotemporal"),
    "upsample_residual": (True, True, True),
    "upsample_factor": (2, 2, 2),
    "timestep_conditioning": True,
    "patch_size": 4,
    "patch_size_t": 1,
    "resnet_norm_eps": 1e-6,
    "scaling_factor": 1.0,
    "encoder_causal": True,
    "decoder_causal": False,
    "spatial_compression_ratio": 32,
    "temporal_compression_ratio": 8,
}
T5_XXL_ENCODER: dict[str, Any] = {"vocab_size": 32128, **T5_XXL_LAYOUT}  # google/t5-v1_1-xxl, encoder only
LTX_SCHEDULER: dict[str, Any] = {"use_dynamic_shifting": False}


def build_full_size(key: str, device: torch.device | str = "meta", dtype: torch.dtype = torch.float32) -> Any:
    """Model ``key``'s pipeline with its released architecture and random weights, built on ``device`` in
    ``dtype`` (``"meta"``: shapes only, nothing allocated). The backend's ``from_pipeline`` places and prepares it."""
    device = torch.device(device)
    builders = {I2VGENXL: _i2vgenxl, WAN22_5B: _wan, LTXV: _ltx}
    if key not in builders:
        raise ValueError(f"unknown model {key!r}: the models are {', '.join(builders)}")
    return builders[key](device, dtype)


def _i2vgenxl(device: torch.device, dtype: torch.dtype) -> Any:
    from diffusers import AutoencoderKL, DDIMScheduler
    from diffusers.models.unets import I2VGenXLUNet
    from transformers import (
        CLIPImageProcessorPil,
        CLIPTextConfig,
        CLIPTextModel,
        CLIPVisionConfig,
        CLIPVisionModelWithProjection,
    )

    from generator.models.tiny import building, i2vgenxl_pipeline

    with building(device, dtype):
        unet = I2VGenXLUNet(**I2VGENXL_UNET)
        vae = AutoencoderKL(**I2VGENXL_VAE)
        text_encoder = CLIPTextModel(CLIPTextConfig(**I2VGENXL_TEXT))
        image_encoder = CLIPVisionModelWithProjection(CLIPVisionConfig(**I2VGENXL_VISION))
    feature_extractor = CLIPImageProcessorPil(
        crop_size={"height": 224, "width": 224},
        size={"shortest_edge": 224},
        image_mean=CLIP_MEAN,
        image_std=CLIP_STD,
    )
    scheduler = DDIMScheduler(**I2VGENXL_SCHEDULER)
    return i2vgenxl_pipeline(unet, vae, text_encoder, image_encoder, feature_extractor, scheduler)


def _wan(device: torch.device, dtype: torch.dtype) -> Any:
    from diffusers import AutoencoderKLWan, UniPCMultistepScheduler, WanTransformer3DModel
    from transformers import UMT5Config, UMT5EncoderModel

    from generator.models.tiny import building, wan_pipeline

    with building(device, dtype):
        transformer = WanTransformer3DModel(**WAN_TRANSFORMER)
        text_encoder = UMT5EncoderModel(UMT5Config(**UMT5_XXL_ENCODER))
    with building(device, torch.float32):
        vae = AutoencoderKLWan(**WAN_VAE)  # the Wan VAE runs in fp32
    return wan_pipeline(transformer, vae, text_encoder, UniPCMultistepScheduler(**WAN_SCHEDULER))


def _ltx(device: torch.device, dtype: torch.dtype) -> Any:
    from diffusers import AutoencoderKLLTXVideo, FlowMatchEulerDiscreteScheduler, LTXVideoTransformer3DModel
    from transformers import T5Config, T5EncoderModel

    from generator.models.tiny import building, ltx_pipeline

    with building(device, dtype):
        transformer = LTXVideoTransformer3DModel(**LTX_TRANSFORMER)
        vae = AutoencoderKLLTXVideo(**LTX_VAE)
        text_encoder = T5EncoderModel(T5Config(**T5_XXL_ENCODER))
    return ltx_pipeline(transformer, vae, text_encoder, FlowMatchEulerDiscreteScheduler(**LTX_SCHEDULER))


COMPONENTS: tuple[str, ...] = ("unet", "transformer", "image_encoder", "text_encoder", "vae")


def parameter_counts(pipe: Any) -> dict[str, int]:
    """Parameters per model component the pipeline has, and in total."""
    counts = {
        name: sum(p.numel() for p in module.parameters())
        for name in COMPONENTS
        if (module := getattr(pipe, name, None)) is not None
    }
    counts["total"] = sum(counts.values())
    return counts
