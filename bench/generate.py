"""Benchmark one generation: seconds per denoising step, decode seconds, seconds per video, peak GPU memory,
the UNet's FLOPs and the fraction of the GPU's bf16 matrix peak reached while denoising.

On a GPU it builds the full-size I2VGen-XL architecture from its configuration with random weights (real shapes,
2.49 B parameters, nothing downloaded). Without a GPU it runs the tiny model, so CI can smoke-test the script. It
goes through the same I2VGenXLBackend.generate path as the worker, then encodes the MP4.

Paths (``--path``, or ``--all-paths`` for all three side by side, one after the other in one process):
  reference  diffusers' documented recipe: fp16, model CPU offload, the pipeline's default decode_chunk_size (1)
  plain      fp16, everything on the GPU, decode_chunk_size 1
  ours       the worker's path: PerformanceOptions.from_env() (the I2V_* settings; unset = the worker's default)
On the CPU, offload and fp16 do not apply: reference and plain both run fp32 with decode_chunk_size 1.
With ``--all-paths`` each path also returns its final latents for the same seed, and their relative error against
the reference path's is reported (fidelity at full size).

    python bench/generate.py                    # standard preset (quick on the CPU), path "ours"
    python bench/generate.py --all-paths --preset standard --json bench/results/standard.json
    I2V_DTYPE=bf16 I2V_COMPILE=1 python bench/generate.py --all-paths --resolution 1024p --frames 32
    python bench/generate.py --count-only       # build the full-size model on the meta device, count parameters
    python bench/generate.py --flops-only       # UNet FLOPs per step of the full-size model, per preset (meta)
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from generator.cli import quiet_libraries
from generator.images import load_image
from generator.models.base import GenerationFailed, VideoBackend
from generator.models.i2vgenxl import I2VGenXLBackend
from generator.params import PRESETS, GenerationParams, resolve_params, target_size
from generator.performance import PerformanceOptions
from generator.video import encode_mp4

SAMPLE_IMAGE = Path(__file__).resolve().parents[1] / "generator" / "assets" / "sample.png"
GIB = 1024**3  # bytes
BENCH_SEED = 8888  # VGen's default seed
BENCH_PROMPT = "the boat sails slowly to the right, waves roll in"
WARMUP_STEPS = 10  # denoising steps of the warm-up run on a GPU (kernel selection, allocator)
WARMUP_FRAMES = 8
# bf16 dense matrix peak, TFLOP/s: an 8192^3 bf16 matmul measured 798 on this workplace's H100 (and 769-798 on its
# H200), against 989 on the H100 SXM datasheet. Fractions of peak use the measured figure.
MEASURED_BF16_PEAK_TFLOPS = 798.0
PATHS = ("reference", "plain", "ours")
TEXT_TOKENS = 77  # prompt embedding length (the tokenizer pads to model_max_length)
FLOPS_CASES: tuple[tuple[str, str | None, int | None], ...] = (
    ("quick", None, None), ("standard", None, None), ("high", None, None), ("standard", "1024p", 32),
)  # (preset, resolution override, frames override) of --flops-only; the last is the 1024p / 32 frames

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


def build_full_size_pipeline(device: torch.device) -> Any:
    """The released architecture with random weights (fp32), built directly on ``device``; ``I2VGenXLBackend.from_pipeline``
    casts and places it."""
    from diffusers import AutoencoderKL, DDIMScheduler, I2VGenXLPipeline
    from diffusers.models.unets import I2VGenXLUNet
    from transformers import (
        CLIPImageProcessorPil,
        CLIPTextConfig,
        CLIPTextModel,
        CLIPVisionConfig,
        CLIPVisionModelWithProjection,
    )

    from generator.models.tiny import build_tiny_tokenizer

    torch.manual_seed(0)
    with torch.device(device):
        unet = I2VGenXLUNet(**FULL_UNET)
        vae = AutoencoderKL(**FULL_VAE)
        text_encoder = CLIPTextModel(CLIPTextConfig(**FULL_TEXT))
        image_encoder = CLIPVisionModelWithProjection(CLIPVisionConfig(**FULL_VISION))
    feature_extractor = CLIPImageProcessorPil(
        crop_size={"height": 224, "width": 224}, size={"shortest_edge": 224}, image_mean=CLIP_MEAN,
        image_std=CLIP_STD,
    )
    pipe = I2VGenXLPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=build_tiny_tokenizer(), image_encoder=image_encoder,
        feature_extractor=feature_extractor, unet=unet, scheduler=DDIMScheduler(**FULL_SCHEDULER),
    )
    return pipe


def parameter_counts(pipe: Any) -> dict[str, int]:
    """Parameters per model component and in total."""
    counts = {
        name: sum(p.numel() for p in getattr(pipe, name).parameters())
        for name in ("unet", "image_encoder", "text_encoder", "vae")
    }
    counts["total"] = sum(counts.values())
    return counts


def path_options(path: str, device: torch.device) -> PerformanceOptions:
    """The PerformanceOptions of one benchmark path (see the module docstring)."""
    if path == "ours":
        return PerformanceOptions.from_env()
    cuda = device.type == "cuda"
    if path == "reference":
        return PerformanceOptions(dtype="fp16" if cuda else None, cpu_offload=cuda, decode_chunk_size=1)
    if path == "plain":
        return PerformanceOptions(dtype="fp16" if cuda else None, decode_chunk_size=1)
    raise ValueError(f"path must be one of {', '.join(PATHS)}, got {path!r}")


def load_generator(model: str, device: torch.device, options: PerformanceOptions) -> VideoBackend:
    """The full-size random model (``model == "full"``) or a loaded one, prepared with ``options``."""
    if model == "full":
        pipe = build_full_size_pipeline(device)
        return I2VGenXLBackend.from_pipeline(pipe, model="full-size random", device=device, options=options)
    return I2VGenXLBackend.load(model, device=str(device), options=options)


def _shape_of(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return ("tensor", tuple(value.shape), value.dtype)
    return value


def _meta_of(value: Any) -> Any:
    if isinstance(value, tuple) and len(value) == 3 and value[0] == "tensor":
        return torch.zeros(value[1], dtype=value[2], device="meta")
    return value


def count_unet_flops(unet_config: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> int:
    """FLOPs of one UNet call (one denoising step, both guidance branches) with these argument shapes.

    A fresh UNet of the same configuration is built on the meta device and run under
    ``torch.utils.flop_counter.FlopCounterMode``: nothing is computed or allocated, so the count costs no GPU.
    ``args``/``kwargs`` hold ``("tensor", shape, dtype)`` triples for tensors (see :func:`record_unet_call`).
    """
    from diffusers.models.unets import I2VGenXLUNet
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device("meta"):
        unet = I2VGenXLUNet.from_config(unet_config)
    dtype = next((a[2] for a in args if isinstance(a, tuple) and a and a[0] == "tensor"), torch.float32)
    unet.to(dtype)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        unet(*[_meta_of(a) for a in args], **{k: _meta_of(v) for k, v in kwargs.items()})
    return int(counter.get_total_flops())


def record_unet_call(unet: torch.nn.Module) -> tuple[Any, dict[str, Any]]:
    """Record the argument shapes of the UNet's first call from now on: returns (hook handle, record)."""
    record: dict[str, Any] = {}

    def hook(module: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        if not record:
            record["args"] = tuple(_shape_of(a) for a in args)
            record["kwargs"] = {k: _shape_of(v) for k, v in kwargs.items()}

    return unet.register_forward_pre_hook(hook, with_kwargs=True), record


def pipeline_unet_shapes(
    unet_config: Any, width: int, height: int, frames: int, dtype: torch.dtype, vae_factor: int = 8
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """The shapes I2VGenXLPipeline passes to its UNet for one step with classifier-free guidance (batch 2)."""
    batch = 2
    latent = ("tensor", (batch, unet_config.in_channels, frames, height // vae_factor, width // vae_factor), dtype)
    args = (latent, ("tensor", (), torch.int64))
    kwargs = {
        "encoder_hidden_states": ("tensor", (batch, TEXT_TOKENS, unet_config.cross_attention_dim), dtype),
        "fps": ("tensor", (batch,), torch.int64),
        "image_latents": latent,
        "image_embeddings": ("tensor", (batch, unet_config.cross_attention_dim), dtype),
        "return_dict": False,
    }
    return args, kwargs


def _rel_error(out: np.ndarray, ref: np.ndarray) -> float | None:
    if out.shape != ref.shape or not (np.isfinite(out).all() and np.isfinite(ref).all()):
        return None
    denominator = float(np.linalg.norm(ref.astype(np.float64)))
    return float(np.linalg.norm(out.astype(np.float64) - ref) / denominator) if denominator else None


def _params(preset: str, resolution: str | None, frames: int | None, steps: int | None) -> GenerationParams:
    return resolve_params(BENCH_PROMPT, preset=preset, seed=BENCH_SEED, resolution=resolution, frames=frames,
                          steps=steps)


def run_benchmark(
    preset: str,
    device: str | None,
    model: str | None,
    *,
    path: str = "ours",
    resolution: str | None = None,
    frames: int | None = None,
    steps: int | None = None,
    peak_tflops: float = MEASURED_BF16_PEAK_TFLOPS,
    keep_latents: bool = False,
) -> dict[str, Any]:
    """Load (or build) the model for ``path``, warm up on a GPU, time one generation and its MP4 encode.

    With ``keep_latents`` the result also holds ``"latents"`` (a float32 array, not JSON): the final latents of a
    second run with the same seed, for fidelity checks between paths.
    """
    torch_device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model = model or ("full" if torch_device.type == "cuda" else "tiny")
    options = path_options(path, torch_device)
    cuda = torch_device.type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats(torch_device)
    started = time.perf_counter()
    generator = load_generator(model, torch_device, options)
    if cuda:
        torch.cuda.synchronize(torch_device)
    load_s = time.perf_counter() - started
    image = load_image(SAMPLE_IMAGE.read_bytes())
    params = _params(preset, resolution, frames, steps)
    width, height = target_size(params.resolution, image.width, image.height)

    if cuda:
        warm = _params(preset, params.resolution, params.frames if options.compile_unet else WARMUP_FRAMES, WARMUP_STEPS)
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
    hook, unet_call = record_unet_call(generator.pipeline.unet)
    t0 = time.perf_counter()
    try:
        video = generator.generate(image, params, width=width, height=height, on_step=on_step, on_phase=on_phase)
    except GenerationFailed as exc:
        video = None
        note = f"output not finite with random weights ({exc}); timings are still valid"
    finally:
        hook.remove()
    if cuda:
        torch.cuda.synchronize(torch_device)
    t_end = time.perf_counter()
    peak_gib = round(torch.cuda.max_memory_allocated(torch_device) / GIB, 2) if cuda else None
    step_times = [b - a for a, b in zip([phases["denoising"], *marks[:-1]], marks, strict=True)]
    encode_s = None
    if video is not None:
        with tempfile.TemporaryDirectory() as tmp:
            t_enc = time.perf_counter()
            mp4_bytes = encode_mp4(video, Path(tmp) / "bench.mp4", params.fps)
            encode_s = time.perf_counter() - t_enc
    else:
        mp4_bytes = None
    s_per_step = statistics.mean(step_times[1:] or step_times)
    flops_per_step = count_unet_flops(generator.pipeline.unet.config, unet_call["args"], unet_call["kwargs"])
    achieved_tflops = flops_per_step / s_per_step / 1e12
    result: dict[str, Any] = {
        "path": path,
        "options": options.summary(),
        "device": generator.device_name,
        "model": generator.model,
        "dtype": str(generator.dtype).replace("torch.", ""),
        "torch": torch.__version__,
        "host": platform.node(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "preset": preset,
        "width": width,
        "height": height,
        "frames": params.frames,
        "steps": params.steps,
        "load_s": round(load_s, 2),
        "warmup_s": round(generator.warmup_s, 2),
        "first_step_s": round(step_times[0], 3),
        "s_per_step": round(s_per_step, 3),
        "s_per_step_median": round(statistics.median(step_times), 3),
        "denoise_s": round(marks[-1] - t0, 2),
        "decode_s": round(t_end - phases["decoding"], 2),
        "s_per_video": round(t_end - t0, 2),
        "first_video_s": round(load_s + (t_end - t0), 2),
        "encode_s": None if encode_s is None else round(encode_s, 3),
        "mp4_bytes": mp4_bytes,
        "peak_gpu_gib": peak_gib,
        "gpu_total_gib": round(generator.gpu_memory_bytes / GIB, 1) if generator.gpu_memory_bytes else None,
        "unet_flop_per_step": flops_per_step,
        "unet_tflop_per_step": round(flops_per_step / 1e12, 6),
        "unet_pflop_per_video": round(flops_per_step * params.steps / 1e15, 6),
        "denoise_tflops": round(achieved_tflops, 4),
        "peak_tflops": peak_tflops,
        "fraction_of_peak": round(achieved_tflops / peak_tflops, 6),
        "parameters": parameter_counts(generator.pipeline),
    }
    if not cuda and path != "ours":
        result["note_path"] = "CPU: no offload and no fp16; this path runs fp32 with decode_chunk_size 1"
    if note:
        result["note"] = note
    if keep_latents:
        result["latents"] = generator.generate_array(image, params, width=width, height=height, output="latents")
    del generator
    gc.collect()
    if cuda:
        torch.cuda.empty_cache()
    return result


def run_all_paths(preset: str, device: str | None, model: str | None, **kwargs: Any) -> dict[str, Any]:
    """The three paths one after the other (each loaded alone), with speedups and latent errors against reference."""
    results = {path: run_benchmark(preset, device, model, path=path, keep_latents=True, **kwargs) for path in PATHS}
    reference = results["reference"]
    ref_latents = reference.pop("latents")
    for result in results.values():
        if result is not reference:
            result["latents_rel_error_vs_reference"] = _rel_error(result.pop("latents"), ref_latents)
            result["speedup_vs_reference"] = round(reference["s_per_video"] / result["s_per_video"], 3)
    reference["latents_rel_error_vs_reference"] = 0.0
    reference["speedup_vs_reference"] = 1.0
    return results


def flops_table(peak_tflops: float) -> list[dict[str, Any]]:
    """UNet FLOPs per step and per video of the full-size model for each preset and 1024p / 32 frames (meta)."""
    from diffusers.models.unets import I2VGenXLUNet

    with torch.device("meta"):
        config = I2VGenXLUNet(**FULL_UNET).config
    image = load_image(SAMPLE_IMAGE.read_bytes())
    rows = []
    for preset, resolution, frames in FLOPS_CASES:
        params = _params(preset, resolution, frames, None)
        for label, (width, height) in (("sample image", target_size(params.resolution, image.width, image.height)),
                                        ("square", target_size(params.resolution, 1, 1))):
            args, kwargs = pipeline_unet_shapes(config, width, height, params.frames, torch.bfloat16)
            flops = count_unet_flops(config, args, kwargs)
            rows.append({
                "case": f"{preset}" if resolution is None else f"{params.resolution} / {params.frames} frames",
                "shape": label, "width": width, "height": height, "frames": params.frames, "steps": params.steps,
                "unet_tflop_per_step": round(flops / 1e12, 2),
                "unet_pflop_per_video": round(flops * params.steps / 1e15, 3),
                "floor_s_at_peak": round(flops * params.steps / (peak_tflops * 1e12), 2),
            })
    return rows


SUMMARY_KEYS = ("device", "dtype", "width", "height", "frames", "steps", "load_s", "s_per_step", "decode_s",
                "s_per_video", "first_video_s", "peak_gpu_gib", "unet_tflop_per_step", "denoise_tflops",
                "fraction_of_peak", "speedup_vs_reference", "latents_rel_error_vs_reference")


def _cell(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def print_side_by_side(results: dict[str, dict[str, Any]]) -> None:
    """One row per measure, one column per path."""
    print(f"{'':>32}" + "".join(f"{path:>18}" for path in results))
    for key in SUMMARY_KEYS:
        print(f"{key:>32}" + "".join(f"{_cell(r.get(key)):>18}" for r in results.values()))


def main(argv: list[str] | None = None) -> int:
    """Parse options, run, print a summary (and JSON when asked)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=sorted(PRESETS), help="default: standard on a GPU, quick on the CPU")
    parser.add_argument("--resolution", help="override the preset's resolution (e.g. 1024p)")
    parser.add_argument("--frames", type=int, help="override the preset's frame count")
    parser.add_argument("--steps", type=int, help="override the preset's denoising steps")
    parser.add_argument("--device", help="cpu, cuda, cuda:N (default: cuda when available)")
    parser.add_argument("--model", help="'full' (random full-size, default on a GPU), 'tiny' (default on the "
                        "CPU), or a hub id / folder of real weights")
    parser.add_argument("--path", choices=PATHS, default="ours", help="which path to run (default: ours)")
    parser.add_argument("--all-paths", action="store_true", help="run reference, plain and ours side by side")
    parser.add_argument("--peak-tflops", type=float, default=MEASURED_BF16_PEAK_TFLOPS,
                        help=f"bf16 matrix peak for the fraction of peak (default {MEASURED_BF16_PEAK_TFLOPS}, "
                        "measured on this workplace's H100)")
    parser.add_argument("--json", type=Path, help="also write the result here")
    parser.add_argument("--count-only", action="store_true",
                        help="build the full-size model on the meta device and print parameter counts")
    parser.add_argument("--flops-only", action="store_true",
                        help="count the full-size UNet's FLOPs per preset on the meta device (no GPU needed)")
    args = parser.parse_args(argv)
    if args.peak_tflops <= 0 or not math.isfinite(args.peak_tflops):
        parser.error(f"--peak-tflops must be a positive number, got {args.peak_tflops}")
    quiet_libraries()
    if args.count_only:
        counts = parameter_counts(build_full_size_pipeline(torch.device("meta")))
        for name, count in counts.items():
            print(f"{name:>14}: {count:>14,} parameters  {count * 2 / GIB:6.2f} GiB in fp16")
        return 0
    result: Any
    if args.flops_only:
        result = flops_table(args.peak_tflops)
        for row in result:
            print("  ".join(f"{k}={v}" for k, v in row.items()))
    else:
        on_gpu = (args.device or "").startswith("cuda") or (args.device is None and torch.cuda.is_available())
        preset = args.preset or ("standard" if on_gpu else "quick")
        overrides = {"resolution": args.resolution, "frames": args.frames, "steps": args.steps,
                     "peak_tflops": args.peak_tflops}
        if args.all_paths:
            result = run_all_paths(preset, args.device, args.model, **overrides)
            print_side_by_side(result)
        else:
            result = run_benchmark(preset, args.device, args.model, path=args.path, **overrides)
            for key, value in result.items():
                print(f"{key:>18}: {value}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
