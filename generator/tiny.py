"""A tiny, randomly initialised I2VGen-XL pipeline built entirely in code (no hub, no files): ``I2V_MODEL=tiny``.

The widths follow diffusers' former fast test of the pipeline (UNet block_out_channels (4, 8), 2-layer CLIP text
and vision towers of width 4), with changes so it also runs at the real output sizes (512p, 16 frames, 50 steps)
on a CPU in seconds: the VAE has five blocks, so it downsamples by 16 (the real one by 8), and the UNet has a third
level with its cross-attention on the lowest one. Output sizes must be multiples of 16 px (64 px keep every UNet
level whole). The CLIP tokenizer is a byte-level vocabulary written here (514 ids, no merges,
``model_max_length`` 77, which the pipeline pads to). Weights come from a fixed seed, so every build is the same
model.
"""

from __future__ import annotations

import types

import torch
from diffusers import AutoencoderKL, DDIMScheduler, I2VGenXLPipeline
from diffusers.models.unets import I2VGenXLUNet
from transformers import (
    CLIPImageProcessorPil,
    CLIPTextConfig,
    CLIPTextModel,
    CLIPTokenizer,
    CLIPVisionConfig,
    CLIPVisionModelWithProjection,
)

TOKENIZER_MAX_LENGTH: int = 77  # tokens; the pipeline pads every prompt to tokenizer.model_max_length
TINY_WEIGHTS_SEED: int = 0  # torch seed for the random initialisation
TINY_IMAGE_SIZE_PX: int = 32  # CLIP vision input side (the feature extractor resizes to this)
TINY_VAE_TILE_PX: int = 512  # VAE sample_size: the tile side once tiling is on (the real VAE's is 512-768)
BOS_TOKEN = "<|startoftext|>"
EOS_TOKEN = "<|endoftext|>"


def _byte_characters() -> list[str]:
    """The GPT-2/CLIP table mapping each byte 0..255 to a printable unicode character, in byte order."""
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("\xa1"), ord("\xac") + 1))
        + list(range(ord("\xae"), ord("\xff") + 1))
    )
    table = {b: b for b in printable}
    extra = 0
    for b in range(256):
        if b not in table:
            table[b] = 256 + extra
            extra += 1
    return [chr(table[b]) for b in range(256)]


def tiny_clip_vocabulary() -> dict[str, int]:
    """Byte-level CLIP vocabulary: 256 byte characters, the same with ``</w>``, then BOS and EOS (514 ids)."""
    chars = _byte_characters()
    tokens = chars + [c + "</w>" for c in chars] + [BOS_TOKEN, EOS_TOKEN]
    return {token: index for index, token in enumerate(tokens)}


def build_tiny_tokenizer() -> CLIPTokenizer:
    """A CLIPTokenizer over :func:`tiny_clip_vocabulary`, built in memory."""
    return CLIPTokenizer(
        vocab=tiny_clip_vocabulary(),
        merges=[],
        unk_token=EOS_TOKEN,
        bos_token=BOS_TOKEN,
        eos_token=EOS_TOKEN,
        pad_token=EOS_TOKEN,
        model_max_length=TOKENIZER_MAX_LENGTH,
    )


def ensure_text_model_alias(text_encoder: CLIPTextModel) -> CLIPTextModel:
    """Give ``text_encoder`` the ``.text_model.final_layer_norm`` path the pipeline's clip_skip code uses.

    transformers >= 5.6 flattened CLIPTextModel; older versions already have the attribute (then a no-op). The
    alias is a plain attribute, not a registered submodule, so it does not touch state_dict, ``.to()`` or offload.
    """
    if not hasattr(text_encoder, "text_model"):
        alias = types.SimpleNamespace(final_layer_norm=text_encoder.final_layer_norm)
        object.__setattr__(text_encoder, "text_model", alias)
    return text_encoder


def build_tiny_pipeline() -> I2VGenXLPipeline:
    """Build the tiny pipeline in fp32 on the CPU. Deterministic: the same weights every call."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(TINY_WEIGHTS_SEED)
        unet = I2VGenXLUNet(
            block_out_channels=(4, 8, 8),
            layers_per_block=1,
            sample_size=32,
            in_channels=4,
            out_channels=4,
            down_block_types=("DownBlock3D", "DownBlock3D", "CrossAttnDownBlock3D"),
            up_block_types=("CrossAttnUpBlock3D", "UpBlock3D", "UpBlock3D"),
            cross_attention_dim=4,
            attention_head_dim=4,
            num_attention_heads=None,
            norm_num_groups=2,
        )
        vae = AutoencoderKL(
            block_out_channels=(8, 8, 8, 8, 8),
            in_channels=3,
            out_channels=3,
            down_block_types=["DownEncoderBlock2D"] * 5,
            up_block_types=["UpDecoderBlock2D"] * 5,
            latent_channels=4,
            layers_per_block=1,
            sample_size=TINY_VAE_TILE_PX,
            norm_num_groups=2,
        )
        text_encoder = CLIPTextModel(
            CLIPTextConfig(
                bos_token_id=0,
                eos_token_id=2,
                hidden_size=4,
                intermediate_size=16,
                layer_norm_eps=1e-05,
                num_attention_heads=2,
                num_hidden_layers=2,
                pad_token_id=1,
                vocab_size=1000,
                hidden_act="gelu",
                projection_dim=32,
                max_position_embeddings=TOKENIZER_MAX_LENGTH,
            )
        )
        image_encoder = CLIPVisionModelWithProjection(
            CLIPVisionConfig(
                hidden_size=4,
                projection_dim=4,
                num_hidden_layers=2,
                num_attention_heads=2,
                image_size=TINY_IMAGE_SIZE_PX,
                intermediate_size=16,
                patch_size=4,
            )
        )
    scheduler = DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
    )
    feature_extractor = CLIPImageProcessorPil(crop_size=TINY_IMAGE_SIZE_PX, size=TINY_IMAGE_SIZE_PX)
    for module in (unet, vae, text_encoder, image_encoder):
        module.eval()
    return I2VGenXLPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=build_tiny_tokenizer(),
        image_encoder=image_encoder,
        feature_extractor=feature_extractor,
        unet=unet,
        scheduler=scheduler,
    )
