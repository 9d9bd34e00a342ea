"""Benchmark generation on every model backend: seconds per denoising step, decode seconds, seconds per video,
peak GPU memory, the denoiser's FLOPs and the fraction of the GPU's bf16 matrix peak reached while denoising.

    python -m bench.generate                     # every backend, its quick preset (CPU: tiny models)
    python -m bench.generate --models wan22-5b,ltxv --preset standard --json bench/results/models.json

On a GPU each model is its released architecture with random weights (real shapes, nothing downloaded; the
configurations are in generator/models/fullsize.py); on the CPU it is the tiny model, so CI can smoke-test the
script. Each goes through the same backend ``generate`` path as the worker, then encodes the MP4. ``--model`` names
real weights instead (a hub id or folder; one model at a time). The presets are each model's own
(generator/model_spaces.py); ``--resolution``, ``--frames`` and ``--steps`` override them and must be in the
model's space.

I2VGen-XL alone also has these (``--models i2vgenxl``):
  --path / --all-paths  reference (diffusers' documented recipe: fp16, model CPU offload, decode_chunk_size 1),
                        plain (fp16, everything on the GPU, decode_chunk_size 1), ours (the worker's path:
                        PerformanceOptions.from_env(), the I2V_* settings); with --all-paths the final latents of
                        each path are compared with the reference path's (fidelity at full size). On the CPU,
                        offload and fp16 do not apply: reference and plain both run fp32 with decode_chunk_size 1.
  --flops-only          the UNet's FLOPs per step of the full-size model, per preset (meta device, no GPU)

    I2V_DTYPE=bf16 I2V_COMPILE=1 python -m bench.generate --models i2vgenxl --all-paths --resolution 1024p --frames 32
    python -m bench.generate --count-only        # every full-size model on the meta device: parameter counts
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
from generator.model_spaces import I2VGENXL, MODEL_KEYS, PRESET_NAMES, WAN22_5B
from generator.models import backend_class
from generator.models.base import GenerationFailed, VideoBackend
from generator.models.fullsize import I2VGENXL_UNET, build_full_size, parameter_counts
from generator.params import GenerationParams, resolve_params, target_size
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
    ("quick", None, None),
    ("standard", None, None),
    ("high", None, None),
    ("standard", "1024p", 32),
)  # (preset, resolution override, frames override) of --flops-only; the last is the 1024p / 32 frames


def path_options(path: str, device: torch.device) -> PerformanceOptions:
    """The PerformanceOptions of one benchmark path (see the module docstring); only "ours" applies to every
    model."""
    if path == "ours":
        return PerformanceOptions.from_env()
    cuda = device.type == "cuda"
    if path == "reference":
        return PerformanceOptions(dtype="fp16" if cuda else None, cpu_offload=cuda, decode_chunk_size=1)
    if path == "plain":
        return PerformanceOptions(dtype="fp16" if cuda else None, decode_chunk_size=1)
    raise ValueError(f"path must be one of {', '.join(PATHS)}, got {path!r}")


def load_generator(key: str, model: str, device: torch.device, options: PerformanceOptions) -> VideoBackend:
    """Model ``key``'s backend: the full-size random model (``model == "full"``) or loaded weights (a hub id, a
    folder, or "tiny"), prepared with ``options``."""
    cls = backend_class(key)
    if model == "full":
        pipe = build_full_size(key, device, options.torch_dtype(device, cuda_default=cls.cuda_dtype))
        return cls.from_pipeline(pipe, model="full-size random", device=device, options=options)
    return cls.load(model, device=str(device), options=options)


def _shape_of(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return ("tensor", tuple(value.shape), value.dtype)
    return value


def _meta_of(value: Any) -> Any:
    if isinstance(value, tuple) and len(value) == 3 and value[0] == "tensor":
        return torch.zeros(value[1], dtype=value[2], device="meta")
    return value


def count_denoiser_flops(denoiser_class: Any, config: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> int:
    """FLOPs of one denoiser call (one denoising step, every guidance branch of that call) with these argument
    shapes.

    A fresh UNet or transformer of the same configuration is built on the meta device and run under
    ``torch.utils.flop_counter.FlopCounterMode``: nothing is computed or allocated, so the count costs no GPU.
    ``args``/``kwargs`` hold ``("tensor", shape, dtype)`` triples for tensors (see :func:`record_unet_call`).
    """
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device("meta"):
        model = denoiser_class.from_config(config)
    dtype = next((a[2] for a in args if isinstance(a, tuple) and a and a[0] == "tensor"), torch.float32)
    if not any(isinstance(a, tuple) and a and a[0] == "tensor" for a in args):
        dtype = next(
            (
                v[2]
                for v in kwargs.values()
                if isinstance(v, tuple) and v and v[0] == "tensor" and v[2].is_floating_point
            ),
            torch.float32,
        )
    model.to(dtype)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(*[_meta_of(a) for a in args], **{k: _meta_of(v) for k, v in kwargs.items()})
    return int(counter.get_total_flops())


def count_unet_flops(unet_config: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> int:
    """:func:`count_denoiser_flops` for I2VGen-XL's UNet."""
    from diffusers.models.unets import I2VGenXLUNet

    return count_denoiser_flops(I2VGenXLUNet, unet_config, args, kwargs)


def record_unet_call(unet: torch.nn.Module) -> tuple[Any, dict[str, Any]]:
    """Record the argument shapes of the denoiser's (UNet's or transformer's) first call from now on: returns
    (hook handle, record)."""
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


def _params(key: str, preset: str, resolution: str | None, frames: int | None, steps: int | None) -> GenerationParams:
    return resolve_params(
        BENCH_PROMPT, model=key, preset=preset, seed=BENCH_SEED, resolution=resolution, frames=frames, steps=steps
    )


def run_benchmark(
    preset: str,
    device: str | None,
    model: str | None,
    *,
    key: str = I2VGENXL,
    path: str = "ours",
    resolution: str | None = None,
    frames: int | None = None,
    steps: int | None = None,
    peak_tflops: float = MEASURED_BF16_PEAK_TFLOPS,
    keep_latents: bool = False,
) -> dict[str, Any]:
    """Load (or build) model ``key`` for ``path``, warm up on a GPU, time one generation and its MP4 encode.

    With ``keep_latents`` the result also holds ``"latents"`` (a float32 array, not JSON): the final latents of a
    second run with the same seed, for fidelity checks between paths.
    """
    torch_device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model = model or ("full" if torch_device.type == "cuda" else "tiny")
    options = path_options(path, torch_device)
    cuda = torch_device.type == "cuda"
    params = _params(key, preset, resolution, frames, steps)  # an override outside the space fails before loading
    if cuda:
        torch.cuda.reset_peak_memory_stats(torch_device)
    started = time.perf_counter()
    generator = load_generator(key, model, torch_device, options)
    if cuda:
        torch.cuda.synchronize(torch_device)
    load_s = time.perf_counter() - started
    image = load_image(SAMPLE_IMAGE.read_bytes())
    width, height = target_size(params.resolution, image.width, image.height, key)

    if cuda:
        warm_frames = params.frames if options.compile_unet else min(WARMUP_FRAMES, params.frames)
        warm = _params(
            key,
            preset,
            params.resolution,
            params.space.frames.nearest(warm_frames),
            max(params.space.steps_range[0], min(WARMUP_STEPS, params.space.steps_range[1])),
        )
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
    denoiser = generator.denoiser
    hook, unet_call = record_unet_call(denoiser)
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
    flops_per_step = count_denoiser_flops(type(denoiser), denoiser.config, unet_call["args"], unet_call["kwargs"])
    calls_per_step = 2 if key == WAN22_5B and params.guidance > 1.0 else 1  # Wan runs its two branches apart
    flops_per_step *= calls_per_step
    achieved_tflops = flops_per_step / s_per_step / 1e12
    result: dict[str, Any] = {
        "model_key": key,
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
        "fps": params.fps,
        "guidance": params.guidance,
        "unet_flop_per_step": flops_per_step,  # the denoiser's (UNet or transformer), every guidance branch
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
    results = {
        path: run_benchmark(preset, device, model, key=I2VGENXL, path=path, keep_latents=True, **kwargs)
        for path in PATHS
    }
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
        config = I2VGenXLUNet(**I2VGENXL_UNET).config
    image = load_image(SAMPLE_IMAGE.read_bytes())
    rows = []
    for preset, resolution, frames in FLOPS_CASES:
        params = _params(I2VGENXL, preset, resolution, frames, None)
        for label, (width, height) in (
            ("sample image", target_size(params.resolution, image.width, image.height)),
            ("square", target_size(params.resolution, 1, 1)),
        ):
            args, kwargs = pipeline_unet_shapes(config, width, height, params.frames, torch.bfloat16)
            flops = count_unet_flops(config, args, kwargs)
            rows.append(
                {
                    "case": f"{preset}" if resolution is None else f"{params.resolution} / {params.frames} frames",
                    "shape": label,
                    "width": width,
                    "height": height,
                    "frames": params.frames,
                    "steps": params.steps,
                    "unet_tflop_per_step": round(flops / 1e12, 2),
                    "unet_pflop_per_video": round(flops * params.steps / 1e15, 3),
                    "floor_s_at_peak": round(flops * params.steps / (peak_tflops * 1e12), 2),
                }
            )
    return rows


SUMMARY_KEYS = (
    "model_key",
    "device",
    "dtype",
    "width",
    "height",
    "frames",
    "fps",
    "steps",
    "guidance",
    "load_s",
    "first_step_s",
    "s_per_step",
    "decode_s",
    "s_per_video",
    "first_video_s",
    "peak_gpu_gib",
    "unet_tflop_per_step",
    "denoise_tflops",
    "fraction_of_peak",
    "speedup_vs_reference",
    "latents_rel_error_vs_reference",
)


def _cell(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def print_side_by_side(results: dict[str, dict[str, Any]]) -> None:
    """One row per measure, one column per path or model."""
    print(f"{'':>32}" + "".join(f"{name:>18}" for name in results))
    for key in SUMMARY_KEYS:
        if any(key in r for r in results.values()):
            print(f"{key:>32}" + "".join(f"{_cell(r.get(key)):>18}" for r in results.values()))


def parse_models(text: str) -> tuple[str, ...]:
    """``"all"`` or comma-separated model keys, in the order given."""
    if text.strip().lower() == "all":
        return MODEL_KEYS
    keys = tuple(part.strip() for part in text.split(",") if part.strip())
    unknown = [key for key in keys if key not in MODEL_KEYS]
    if unknown or not keys:
        raise argparse.ArgumentTypeError(
            f"unknown model {unknown[0] if unknown else text!r}; the models are {', '.join(MODEL_KEYS)} (or all)"
        )
    return keys


def count_all(keys: tuple[str, ...]) -> dict[str, dict[str, int]]:
    """Parameter counts of each model's full-size architecture, built on the meta device."""
    return {key: parameter_counts(build_full_size(key, "meta")) for key in keys}


def main(argv: list[str] | None = None) -> int:
    """Parse options, run, print a summary (and JSON when asked)."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.generate", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--models",
        type=parse_models,
        help=f"comma-separated model keys, or all (the default): {', '.join(MODEL_KEYS)}",
    )
    parser.add_argument(
        "--preset", choices=PRESET_NAMES, help="each model's own; default: standard on a GPU, quick on the CPU"
    )
    parser.add_argument("--resolution", help="override the preset's resolution (one of the model's)")
    parser.add_argument("--frames", type=int, help="override the preset's frame count")
    parser.add_argument("--steps", type=int, help="override the preset's denoising steps")
    parser.add_argument("--device", help="cpu, cuda, cuda:N (default: cuda when available)")
    parser.add_argument(
        "--model",
        help="'full' (random full-size, default on a GPU), 'tiny' (default on the "
        "CPU), or a hub id / folder of real weights (with one model in --models)",
    )
    parser.add_argument(
        "--path",
        choices=PATHS,
        default="ours",
        help="which path to run (default: ours; reference and plain are I2VGen-XL's)",
    )
    parser.add_argument(
        "--all-paths", action="store_true", help="I2VGen-XL: run reference, plain and ours side by side"
    )
    parser.add_argument(
        "--peak-tflops",
        type=float,
        default=MEASURED_BF16_PEAK_TFLOPS,
        help=f"bf16 matrix peak for the fraction of peak (default {MEASURED_BF16_PEAK_TFLOPS}, "
        "measured on this workplace's H100)",
    )
    parser.add_argument("--json", type=Path, help="also write the result here")
    parser.add_argument(
        "--count-only",
        action="store_true",
        help="build each full-size model on the meta device and print parameter counts",
    )
    parser.add_argument(
        "--flops-only",
        action="store_true",
        help="I2VGen-XL: count the full-size UNet's FLOPs per preset on the meta device",
    )
    args = parser.parse_args(argv)
    keys: tuple[str, ...] = args.models or MODEL_KEYS
    if args.peak_tflops <= 0 or not math.isfinite(args.peak_tflops):
        parser.error(f"--peak-tflops must be a positive number, got {args.peak_tflops}")
    i2vgenxl_only = args.all_paths or args.flops_only or args.path != "ours"
    if i2vgenxl_only and args.models is not None and keys != (I2VGENXL,):
        parser.error("--all-paths, --flops-only and --path reference/plain are I2VGen-XL's: use --models i2vgenxl")
    if i2vgenxl_only:
        keys = (I2VGENXL,)
    if args.model not in (None, "full", "tiny") and len(keys) != 1:
        parser.error("--model with weights needs exactly one model in --models")
    quiet_libraries()
    result: Any
    if args.count_only:
        result = count_all(keys)
        for key, counts in result.items():
            for name, count in counts.items():
                print(f"{key:>10} {name:>14}: {count:>15,} parameters  {count * 2 / GIB:6.2f} GiB in 16 bits")
    elif args.flops_only:
        result = flops_table(args.peak_tflops)
        for row in result:
            print("  ".join(f"{k}={v}" for k, v in row.items()))
    else:
        on_gpu = (args.device or "").startswith("cuda") or (args.device is None and torch.cuda.is_available())
        preset = args.preset or ("standard" if on_gpu else "quick")
        overrides = {
            "resolution": args.resolution,
            "frames": args.frames,
            "steps": args.steps,
            "peak_tflops": args.peak_tflops,
        }
        try:
            if args.all_paths:
                result = run_all_paths(preset, args.device, args.model, **overrides)
                print_side_by_side(result)
            elif len(keys) == 1:
                result = run_benchmark(preset, args.device, args.model, key=keys[0], path=args.path, **overrides)
                for name, value in result.items():
                    print(f"{name:>18}: {value}")
            else:
                result = {key: run_benchmark(preset, args.device, args.model, key=key, **overrides) for key in keys}
                print_side_by_side(result)
        except ValueError as exc:  # a ParamError: an override outside a model's space
            print(f"bench.generate: {exc}", file=sys.stderr)
            return 2
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
