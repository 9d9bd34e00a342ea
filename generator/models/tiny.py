"""Tiny, randomly initialised pipelines built entirely in code (no hub, no files): ``I2V_MODEL=tiny``.

One per backend, each through its real diffusers pipeline class. Weights come from a fixed seed, so every build is
the same model.

I2VGen-XL (:func:`build_tiny_i2vgenxl`): the widths follow diffusers' former fast test of the pipeline (UNet
block_out_channels (4, 8), 2-layer CLIP text and vision towers of width 4), with changes so it also runs at the real
output sizes (512p, 16 frames, 50 steps) on a CPU in seconds: the VAE has five blocks, so it downsamples by 16 (the
real one by 8), and the UNet has a third level with its cross-attention on the lowest one. Output sizes must be
multiples of 16 px (64 px keep every UNet level whole). The CLIP tokenizer is a byte-level vocabulary written here
(514 ids, no merges, ``model_max_length`` 77, which the pipeline pads to).

Wan 2.2 TI2V-5B (:func:`build_tiny_wan`): the 5B layout at toy widths: a 48-channel ``AutoencoderKLWan`` with
patch size 2 (spatial factor 16, temporal 4, so frames are 4k+1 and sizes multiples of 32), one transformer with
``expand_timesteps=True``, no image encoder, no second transformer, the flow-matching UniPC scheduler.

LTX-Video (:func:`build_tiny_ltx`): a transformer of one block and a video VAE compressing 8x in time and 32x in
space (4x4 patches, then three halvings), as the real one: frames 8k+1, sides multiples of 32, and as many
transformer tokens per frame as the real model has, so the real sizes run on a CPU. The flow-matching Euler
scheduler.

Both take a T5 encoder (:func:`build_tiny_t5`, 2 layers of width 32) and a word-level tokenizer whose vocabulary is
written here (:func:`build_tiny_word_tokenizer`; unknown words map to ``<unk>``).
"""

from __future__ import annotations

import contextlib
import types
from collections.abc import Iterator
from typing import Any

import torch
from diffusers import (
    AutoencoderKL,
    AutoencoderKLLTXVideo,
    AutoencoderKLWan,
    DDIMScheduler,
    FlowMatchEulerDiscreteScheduler,
    I2VGenXLPipeline,
    LTXConditionPipeline,
    LTXVideoTransformer3DModel,
    UniPCMultistepScheduler,
    WanImageToVideoPipeline,
    WanTransformer3DModel,
)
from diffusers.models.unets import I2VGenXLUNet
from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors
from tokenizers.models import WordLevel
from transformers import (
    CLIPImageProcessorPil,
    CLIPTextConfig,
    CLIPTextModel,
    CLIPTokenizer,
    CLIPVisionConfig,
    CLIPVisionModelWithProjection,
    PreTrainedTokenizerFast,
    T5Config,
    T5EncoderModel,
)

from generator.model_spaces import I2VGENXL, LTXV, WAN22_5B

TOKENIZER_MAX_LENGTH: int = 77  # tokens; the pipeline pads every prompt to tokenizer.model_max_length
TINY_WEIGHTS_SEED: int = 0  # torch seed for the random initialisation
TINY_IMAGE_SIZE_PX: int = 32  # CLIP vision input side (the feature extractor resizes to this)
TINY_VAE_TILE_PX: int = 512  # VAE sample_size: the tile side once tiling is on (the real VAE's is 512-768)
BOS_TOKEN = "<|startoftext|>"
EOS_TOKEN = "<|endoftext|>"
CPU = torch.device("cpu")


@contextlib.contextmanager
def building(device: torch.device, dtype: torch.dtype) -> Iterator[None]:
    """Create parameters directly on ``device`` in ``dtype`` (a 13B model built in fp32 and then cast would need
    both copies at once); the RNG is forked and seeded with :data:`TINY_WEIGHTS_SEED`, so every build is the
    same."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.random.fork_rng(devices=[]), torch.device(device):
            torch.manual_seed(TINY_WEIGHTS_SEED)
            yield
    finally:
        torch.set_default_dtype(previous)


def _eval(*modules: Any) -> None:
    """Inference mode for a pipeline's models: dropout would make outputs differ run to run."""
    for module in modules:
        module.eval()


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


def build_tiny_i2vgenxl() -> I2VGenXLPipeline:
    """Build the tiny I2VGen-XL pipeline in fp32 on the CPU. Deterministic: the same weights every call."""
    with building(CPU, torch.float32):
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
            CLIPTextConfig(  # type: ignore[call-arg]  # fields as keywords: @auto_docstring hides the config's dataclass __init__
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
            CLIPVisionConfig(  # type: ignore[call-arg]  # fields as keywords: @auto_docstring hides the config's dataclass __init__
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
    return i2vgenxl_pipeline(unet, vae, text_encoder, image_encoder, feature_extractor, scheduler)


def i2vgenxl_pipeline(
    unet: Any, vae: Any, text_encoder: Any, image_encoder: Any, feature_extractor: Any, scheduler: Any
) -> I2VGenXLPipeline:
    """The I2VGen-XL pipeline of these components (the tiny ones or the full-size ones of
    :mod:`generator.models.fullsize`) with the tiny CLIP tokenizer, its models in eval mode."""
    _eval(unet, vae, text_encoder, image_encoder)
    return I2VGenXLPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=build_tiny_tokenizer(),
        image_encoder=image_encoder,
        feature_extractor=feature_extractor,
        unet=unet,
        scheduler=scheduler,
    )


# --- the T5 text stack of the transformer models -----------------------------------------------------------------

T5_WIDTH: int = 32  # d_model of the tiny T5: the transformers' text input width
T5_MAX_LENGTH: int = 512  # tokens; the pipelines pad prompts to their own max_sequence_length (Wan 512, LTX 256)
PAD_TOKEN = "<pad>"
EOS_TOKEN_T5 = "</s>"
UNK_TOKEN = "<unk>"
# The words the tiny tokenizer knows (lower case); anything else is <unk>. Enough for test prompts to differ.
TINY_WORDS: tuple[str, ...] = (
    "a",
    "an",
    "the",
    "of",
    "to",
    "in",
    "on",
    "and",
    "with",
    "at",
    "from",
    "into",
    "is",
    "are",
    "slowly",
    "fast",
    "cat",
    "dog",
    "bird",
    "boat",
    "car",
    "man",
    "woman",
    "child",
    "horse",
    "fish",
    "tree",
    "flower",
    "cloud",
    "sky",
    "sea",
    "river",
    "waves",
    "wave",
    "water",
    "fire",
    "smoke",
    "snow",
    "rain",
    "wind",
    "sun",
    "moon",
    "star",
    "city",
    "street",
    "mountain",
    "forest",
    "field",
    "road",
    "light",
    "camera",
    "pans",
    "zooms",
    "left",
    "right",
    "up",
    "down",
    "moves",
    "walks",
    "runs",
    "flies",
    "sails",
    "roll",
    "rolls",
    "turns",
    "dance",
    "dances",
    "smiles",
    "blinks",
    "sways",
    "falls",
    "rises",
    "flows",
    "drifts",
    "spins",
    "red",
    "green",
    "blue",
    "white",
    "black",
    "gold",
    "warm",
    "cold",
    "bright",
    "dark",
    "blurry",
    "static",
    "distorted",
    "ugly",
    "low",
    "quality",
    "worst",
    "motion",
    "jittery",
    "inconsistent",
    "still",
    "picture",
    "monkey",
    "warm-up",
    ",",
    ".",
    "!",
    "?",
)


def tiny_word_vocabulary() -> dict[str, int]:
    """``<pad>`` 0, ``</s>`` 1, ``<unk>`` 2 (T5's order), then :data:`TINY_WORDS`."""
    tokens = [PAD_TOKEN, EOS_TOKEN_T5, UNK_TOKEN, *TINY_WORDS]
    return {token: index for index, token in enumerate(tokens)}


def build_tiny_word_tokenizer() -> PreTrainedTokenizerFast:
    """A word-level tokenizer over :func:`tiny_word_vocabulary`: lower-cased, split on spaces and punctuation,
    ``</s>`` appended as T5 does, built in memory with ``tokenizers``."""
    vocab = tiny_word_vocabulary()
    backend = Tokenizer(WordLevel(vocab, unk_token=UNK_TOKEN))
    backend.normalizer = normalizers.Lowercase()
    backend.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    backend.post_processor = processors.TemplateProcessing(
        single=f"$A {EOS_TOKEN_T5}",
        pair=f"$A {EOS_TOKEN_T5} $B {EOS_TOKEN_T5}",
        special_tokens=[(EOS_TOKEN_T5, vocab[EOS_TOKEN_T5])],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token=PAD_TOKEN,
        eos_token=EOS_TOKEN_T5,
        unk_token=UNK_TOKEN,
        model_max_length=T5_MAX_LENGTH,
        padding_side="right",
    )


def build_tiny_t5() -> T5EncoderModel:
    """A 2-layer T5 encoder of width :data:`T5_WIDTH` (call inside a seeded RNG)."""
    config = T5Config(  # type: ignore[call-arg]  # fields as keywords: @auto_docstring hides the config's dataclass __init__
        vocab_size=len(tiny_word_vocabulary()),
        d_model=T5_WIDTH,
        d_kv=8,
        d_ff=37,
        num_layers=2,
        num_heads=4,
        relative_attention_num_buckets=8,
        relative_attention_max_distance=32,
        dropout_rate=0.0,
        feed_forward_proj="gated-gelu",
        is_encoder_decoder=False,
        pad_token_id=0,
        eos_token_id=1,
    )
    return T5EncoderModel(config).eval()  # eval: dropout would make outputs differ run to run


# --- Wan 2.2 TI2V-5B --------------------------------------------------------------------------------------------

WAN_LATENT_CHANNELS: int = 48  # the 5B's VAE (Wan 2.1's has 16)
WAN_FLOW_SHIFT: float = 5.0  # the TI2V-5B scheduler's flow shift


def build_tiny_wan() -> WanImageToVideoPipeline:
    """Build the tiny Wan 2.2 TI2V-5B-layout pipeline in fp32 on the CPU. Deterministic."""
    with building(CPU, torch.float32):
        vae = AutoencoderKLWan(
            base_dim=8,
            z_dim=WAN_LATENT_CHANNELS,
            dim_mult=[1, 1, 1, 1],
            num_res_blocks=1,
            temperal_downsample=[False, True, True],
            is_residual=True,
            in_channels=12,
            out_channels=12,
            patch_size=2,
            scale_factor_spatial=16,
            scale_factor_temporal=4,
            latents_mean=[0.0] * WAN_LATENT_CHANNELS,
            latents_std=[1.0] * WAN_LATENT_CHANNELS,
        )
        transformer = WanTransformer3DModel(
            patch_size=(1, 2, 2),
            num_attention_heads=2,
            attention_head_dim=12,
            in_channels=WAN_LATENT_CHANNELS,
            out_channels=WAN_LATENT_CHANNELS,
            text_dim=T5_WIDTH,
            freq_dim=32,
            ffn_dim=32,
            num_layers=2,
            cross_attn_norm=True,
            qk_norm="rms_norm_across_heads",
            rope_max_seq_len=32,
        )
        text_encoder = build_tiny_t5()
    scheduler = UniPCMultistepScheduler(
        prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=WAN_FLOW_SHIFT
    )
    return wan_pipeline(transformer, vae, text_encoder, scheduler)


def wan_pipeline(transformer: Any, vae: Any, text_encoder: Any, scheduler: Any) -> WanImageToVideoPipeline:
    """The TI2V-5B layout's pipeline of these components (one transformer with ``expand_timesteps``, no image
    encoder) with the tiny word-level tokenizer, its models in eval mode."""
    _eval(transformer, vae, text_encoder)
    return WanImageToVideoPipeline(
        tokenizer=build_tiny_word_tokenizer(),
        text_encoder=text_encoder,
        vae=vae,
        scheduler=scheduler,
        image_processor=None,
        image_encoder=None,
        transformer=transformer,
        transformer_2=None,
        boundary_ratio=None,
        expand_timesteps=True,
    )


# --- LTX-Video ----------------------------------------------------------------------------------------------------

LTX_LATENT_CHANNELS: int = 8  # the real VAE has 128


def build_tiny_ltx() -> LTXConditionPipeline:
    """Build the tiny LTX-Video pipeline in fp32 on the CPU. Deterministic."""
    with building(CPU, torch.float32):
        transformer = LTXVideoTransformer3DModel(
            in_channels=LTX_LATENT_CHANNELS,
            out_channels=LTX_LATENT_CHANNELS,
            patch_size=1,
            patch_size_t=1,
            num_attention_heads=4,
            attention_head_dim=8,
            cross_attention_dim=32,
            num_layers=1,
            caption_channels=T5_WIDTH,
        )
        vae = AutoencoderKLLTXVideo(
            in_channels=3,
            out_channels=3,
            latent_channels=LTX_LATENT_CHANNELS,
            block_out_channels=(8, 8, 8, 8),
            decoder_block_out_channels=(8, 8, 8, 8),
            layers_per_block=(1, 1, 1, 1, 1),
            decoder_layers_per_block=(1, 1, 1, 1, 1),
            spatio_temporal_scaling=(True, True, True, False),
            decoder_spatio_temporal_scaling=(True, True, True, False),
            decoder_inject_noise=(False, False, False, False, False),
            upsample_residual=(False, False, False, False),
            upsample_factor=(1, 1, 1, 1),
            timestep_conditioning=False,
            patch_size=4,
            patch_size_t=1,
            encoder_causal=True,
            decoder_causal=False,
        )
        text_encoder = build_tiny_t5()
    return ltx_pipeline(transformer, vae, text_encoder, FlowMatchEulerDiscreteScheduler())


def ltx_pipeline(transformer: Any, vae: Any, text_encoder: Any, scheduler: Any) -> LTXConditionPipeline:
    """The LTX-Video pipeline of these components with the tiny word-level tokenizer, its models in eval mode."""
    _eval(transformer, vae, text_encoder)
    return LTXConditionPipeline(
        scheduler=scheduler,
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=build_tiny_word_tokenizer(),
        transformer=transformer,
    )


def build_tiny(key: str) -> Any:
    """Model ``key``'s tiny pipeline (a key of :data:`generator.model_spaces.SPACES`)."""
    builders = {I2VGENXL: build_tiny_i2vgenxl, WAN22_5B: build_tiny_wan, LTXV: build_tiny_ltx}
    return builders[key]()
