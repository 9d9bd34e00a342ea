"""Benchmark one generation: seconds per denoising step, decode seconds, seconds per video, peak GPU memory.

On a GPU it builds the full-size I2VGen-XL architecture from its configuration with random weights (real shapes,
2.49 B parameters, nothing downloaded) in fp16. Without a GPU it runs the tiny model, so CI can smoke-test the
script. It goes through the same VideoGenerator.generate path as the worker, then encodes the MP4.

    python bench/generate.py                    # standard preset (quick on the CPU)
    python bench/generate.py --preset high --json bench/results/high.json
    python bench/generate.py --count-only       # build the full-size model on the meta device, count parameters
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from generator.images import load_image
from generator.params import PRESETS, resolve_params, target_size
from generator.pipeline import GenerationFailed, VideoGenerator
from generator.video import encode_mp4

SAMPLE_IMAGE = Path(__file__).resolve().parents[1] / "generator" / "assets" / "sample.png"
GIB = 1024**3  # bytes
BENCH_SEED = 8888  # VGen's default seed
BENCH_PROMPT = "the boat sails slowly to the right, waves roll in"
WARMUP_STEPS = 10  # denoising steps of the warm-up run on a GPU (kernel selection, allocator)
WARMUP_FRAMES = 8

# Full-size ali-vilab/i2vgen-xl configuration (shared/research/i2vgenxl.md section 3; parameter counts checked).
FULL_UNET: dict[str, Any] = {"sample_size": 32}  # every other I2VGenXLUNet default is the released model's
FULL_VAE: dict[str, Any] = {
    "act_fn": "silu", "block_out_channels": [128, 256, 512, 512],
    "down_block_types": ["DownEncoderBlock2D"] * 4, "up_block_types": ["UpDecoderBlock2D"] * 4,
    "latent_channels": 4, "layers_per_block": 2, "norm_num_groups": 32, "sample_size": 768,
    "scaling_factor": 0.18215,
}
FULL_TEXT: dict[str, Any] = {
    "vocab_size": 49408, "hidden_size": 1024, "intermediate_size": 4096, "num_hidden_layers": 24,
    "num_attention_heads": 16, "max_position_embeddings": 77, "hidden_act": "gelu", "layer_norm_eps": 1e-5,
    "projection_dim": 1024, "bos_token_id": 0, "eos_token_id": 2, "pad_token_id": 1,
}
FULL_VISION: dict[str, Any] = {
    "hidden_size": 1280, "intermediate_size": 5120, "num_hidden_layers": 32, "num_attention_heads": 16,
    "image_size": 224, "patch_size": 14, "num_channels": 3, "projection_dim": 1024, "hidden_act": "gelu",
    "layer_norm_eps": 1e-5,
}
FULL_SCHEDULER: dict[str, Any] = {
    "beta_schedule": "squaredcos_cap_v2", "rescale_betas_zero_snr": True, "set_alpha_to_one": True,
    "clip_sample": False, "steps_offset": 1, "timestep_spacing": "leading", "prediction_type": "v_prediction",
}
CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]


def build_full_size_pipeline(device: torch.device, dtype: torch.dtype) -> Any:
    """The released architecture with random weights, built directly on ``device`` and cast to ``dtype``."""
    from diffusers import AutoencoderKL, DDIMScheduler, I2VGenXLPipeline
    from diffusers.models.unets import I2VGenXLUNet
    from transformers import CLIPImageProcessorPil, CLIPTextConfig, CLIPTextModel, CLIPVisionConfig
    from transformers import CLIPVisionModelWithProjection

    from generator.tiny import build_tiny_tokenizer, ensure_text_model_alias

    torch.manual_seed(0)
    with torch.device(device):
        unet = I2VGenXLUNet(**FULL_UNET)
        vae = AutoencoderKL(**FULL_VAE)
        text_encoder = ensure_text_model_alias(CLIPTextModel(CLIPTextConfig(**FULL_TEXT)))
        image_encoder = CLIPVisionModelWithProjection(CLIPVisionConfig(**FULL_VISION))
    feature_extractor = CLIPImageProcessorPil(
        crop_size={"height": 224, "width": 224}, size={"shortest_edge": 224}, image_mean=CLIP_MEAN,
        image_std=CLIP_STD,
    )
    pipe = I2VGenXLPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=build_tiny_tokenizer(), image_encoder=image_encoder,
        feature_extractor=feature_extractor, unet=unet, scheduler=DDIMScheduler(**FULL_SCHEDULER),
    )
    if device.type != "meta":
        pipe.to(device, dtype)
    return pipe


def parameter_counts(pipe: Any) -> dict[str, int]:
    """Parameters per model component and in total."""
    counts = {
        name: sum(p.numel() for p in getattr(pipe, name).parameters())
        for name in ("unet", "image_encoder", "text_encoder", "vae")
    }
    counts["total"] = sum(counts.values())
    return counts


def run_benchmark(preset: str, device: str | None, model: str | None) -> dict[str, Any]:
    """Load (or build) the model, warm up on a GPU, time one generation and its MP4 encode."""
    torch_device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model = model or ("full" if torch_device.type == "cuda" else "tiny")
    started = time.perf_counter()
    if model == "full":
        dtype = torch.float16 if torch_device.type == "cuda" else torch.float32
        generator = VideoGenerator(build_full_size_pipeline(torch_device, dtype), model="full-size random",
                                   device=torch_device, dtype=dtype)
    else:
        generator = VideoGenerator.load(model, device=str(torch_device))
    load_s = time.perf_counter() - started
    image = load_image(SAMPLE_IMAGE.read_bytes())
    params = resolve_params(BENCH_PROMPT, preset=preset, seed=BENCH_SEED)
    width, height = target_size(params.resolution, image.width, image.height)
    cuda = torch_device.type == "cuda"

    if cuda:
        warm = resolve_params(BENCH_PROMPT, preset=preset, seed=BENCH_SEED, steps=WARMUP_STEPS, frames=WARMUP_FRAMES)
        try:
            generator.generate(image, warm, width=width, height=height)
        except GenerationFailed:
            pass  # random fp16 weights may give NaN frames; timing is what matters here
        torch.cuda.synchronize(torch_device)
        torch.cuda.reset_peak_memory_stats(torch_device)

    marks: list[float] = []
    phases: dict[str, float] = {}

    def on_step(step: int, total: int) -> None:
        if cuda:
            torch.cuda.synchronize(torch_device)
        marks.append(time.perf_counter())

    def on_phase(phase: str) -> None:
        phases[phase] = time.perf_counter()

    note = ""
    t0 = time.perf_counter()
    try:
        frames = generator.generate(image, params, width=width, height=height, on_step=on_step, on_phase=on_phase)
    except GenerationFailed as exc:
        frames = None
        note = f"output not finite with random weights ({exc}); timings are still valid"
    if cuda:
        torch.cuda.synchronize(torch_device)
    t_end = time.perf_counter()
    step_times = [b - a for a, b in zip([phases["denoising"], *marks[:-1]], marks)]
    encode_s = None
    if frames is not None:
        with tempfile.TemporaryDirectory() as tmp:
            t_enc = time.perf_counter()
            mp4_bytes = encode_mp4(frames, Path(tmp) / "bench.mp4", params.fps)
            encode_s = time.perf_counter() - t_enc
    else:
        mp4_bytes = None
    result: dict[str, Any] = {
        "device": generator.device_name,
        "model": generator.model,
        "dtype": str(generator.dtype).replace("torch.", ""),
        "torch": torch.__version__,
        "host": platform.node(),
        "preset": preset,
        "width": width,
        "height": height,
        "frames": params.frames,
        "steps": params.steps,
        "load_s": round(load_s, 2),
        "first_step_s": round(step_times[0], 3),
        "s_per_step": round(statistics.mean(step_times[1:] or step_times), 3),
        "s_per_step_median": round(statistics.median(step_times), 3),
        "denoise_s": round(marks[-1] - t0, 2),
        "decode_s": round(t_end - phases["decoding"], 2),
        "s_per_video": round(t_end - t0, 2),
        "encode_s": None if encode_s is None else round(encode_s, 3),
        "mp4_bytes": mp4_bytes,
        "peak_gpu_gib": round(torch.cuda.max_memory_allocated(torch_device) / GIB, 2) if cuda else None,
        "gpu_total_gib": round(generator.gpu_memory_bytes / GIB, 1) if generator.gpu_memory_bytes else None,
        "parameters": parameter_counts(generator.pipeline),
    }
    if note:
        result["note"] = note
    return result


def main(argv: list[str] | None = None) -> int:
    """Parse options, run, print a summary (and JSON when asked)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=sorted(PRESETS), help="default: standard on a GPU, quick on the CPU")
    parser.add_argument("--device", help="cpu, cuda, cuda:N (default: cuda when available)")
    parser.add_argument("--model", help="'full' (random full-size, default on a GPU), 'tiny' (default on the "
                        "CPU), or a hub id / folder of real weights")
    parser.add_argument("--json", type=Path, help="also write the result here")
    parser.add_argument("--count-only", action="store_true",
                        help="build the full-size model on the meta device and print parameter counts")
    args = parser.parse_args(argv)
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    diffusers_logging.set_verbosity_error()
    transformers_logging.set_verbosity_error()
    if args.count_only:
        counts = parameter_counts(build_full_size_pipeline(torch.device("meta"), torch.float16))
        for name, count in counts.items():
            print(f"{name:>14}: {count:>14,} parameters  {count * 2 / GIB:6.2f} GiB in fp16")
        return 0
    on_gpu = (args.device or "").startswith("cuda") or (args.device is None and torch.cuda.is_available())
    preset = args.preset or ("standard" if on_gpu else "quick")
    result = run_benchmark(preset, args.device, args.model)
    for key, value in result.items():
        print(f"{key:>18}: {value}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
