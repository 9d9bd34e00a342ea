"""How the pipeline runs for speed and memory: :class:`PerformanceOptions`, one ``I2V_*`` setting each (declared
in :mod:`config.catalog`, read by :meth:`PerformanceOptions.from_env`), and :func:`prepare_pipeline`, which applies
them to a built pipeline.

The defaults are the plain behaviour: fp16 on CUDA, fp32 on the CPU, PyTorch's own attention kernel choice, no
compilation, 8 (GPU) or 16 (CPU) frames per VAE decode call. docs/performance.md has the predicted and measured
effect of each.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from config.reader import SettingsError, environment, read

WARMUP_STEPS: int = 2  # denoising steps of each compile warm-up run at load
WARMUP_ASPECT_PX: tuple[int, int] = (1280, 704)  # image size whose aspect the warm-up shapes use (the training size)
WARMUP_GUIDANCE: float = 9.0  # > 1, so the warm-up compiles the classifier-free-guidance batch of 2

DTYPES: dict[str, torch.dtype] = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}
SDPA_BACKENDS: tuple[str, ...] = ("auto", "flash", "efficient", "math")
CUDA_ONLY_SDPA_BACKENDS: frozenset[str] = frozenset({"flash", "efficient"})
COMPILE_MODES: tuple[str, ...] = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
# Environment variables read by PerformanceOptions.from_env (names are part of the public configuration).
ENV_DTYPE = "I2V_DTYPE"
ENV_SDPA_BACKEND = "I2V_SDPA_BACKEND"
ENV_COMPILE = "I2V_COMPILE"
ENV_COMPILE_MODE = "I2V_COMPILE_MODE"
ENV_COMPILE_WARMUP = "I2V_COMPILE_WARMUP"
ENV_CHANNELS_LAST = "I2V_CHANNELS_LAST"
ENV_FUSE_QKV = "I2V_FUSE_QKV"
ENV_DECODE_CHUNK_SIZE = "I2V_DECODE_CHUNK_SIZE"
ENV_VAE_TILING = "I2V_VAE_TILING"
ENV_CPU_OFFLOAD = "I2V_CPU_OFFLOAD"
PERFORMANCE_SETTINGS = (
    ENV_DTYPE,
    ENV_SDPA_BACKEND,
    ENV_COMPILE,
    ENV_COMPILE_MODE,
    ENV_COMPILE_WARMUP,
    ENV_CHANNELS_LAST,
    ENV_FUSE_QKV,
    ENV_DECODE_CHUNK_SIZE,
    ENV_VAE_TILING,
    ENV_CPU_OFFLOAD,
)

log = logging.getLogger("generator.pipeline")


class PerformanceOptionError(ValueError):
    """A performance setting is invalid or cannot work on this device; the message names the setting."""


WarmupShape = tuple[int, int, int]  # (width, height, frames) of one compile warm-up run


def parse_warmup_shapes(text: str) -> tuple[WarmupShape, ...] | None:
    """``"presets"`` -> None (one shape per resolution preset), ``"none"`` -> (), else ``"WxHxF,WxHxF"``."""
    raw = text.strip().lower()
    if raw in ("", "presets"):
        return None
    if raw == "none":
        return ()
    shapes: list[WarmupShape] = []
    for item in raw.split(","):
        parts = item.strip().split("x")
        if len(parts) != 3 or not all(p.isdigit() and int(p) > 0 for p in parts):
            raise PerformanceOptionError(
                f"{ENV_COMPILE_WARMUP} entry {item.strip()!r} is not WIDTHxHEIGHTxFRAMES (e.g. 832x512x16)"
            )
        shapes.append((int(parts[0]), int(parts[1]), int(parts[2])))
    return tuple(shapes)


def preset_warmup_shapes() -> tuple[WarmupShape, ...]:
    """One (width, height, frames) per preset, for a landscape image of the model's training aspect."""
    from generator.params import PRESETS, target_size

    shapes: dict[WarmupShape, None] = {}
    for preset in PRESETS.values():
        width, height = target_size(preset.resolution, *WARMUP_ASPECT_PX)
        shapes[(width, height, preset.frames)] = None
    return tuple(shapes)


@dataclass(frozen=True)
class PerformanceOptions:
    """How the pipeline is run for speed and memory. The defaults are the plain behaviour.

    - ``dtype``: "fp16", "bf16" or "fp32" for every model component; None = fp16 on CUDA, fp32 on the CPU
      (``I2V_DTYPE``).
    - ``sdpa_backend``: the scaled-dot-product-attention kernel the UNet may use: "auto" (PyTorch chooses),
      "flash", "efficient" (CUDA only) or "math" (``I2V_SDPA_BACKEND``). Only the UNet is restricted; the VAE's
      attention (one head of 512 channels) is beyond the flash kernel's head size.
    - ``compile_unet``: ``torch.compile`` the UNet's forward, then warm up once per ``warmup_shapes`` at load so the
      first job does not pay for compilation (``I2V_COMPILE``, mode ``I2V_COMPILE_MODE``; "reduce-overhead" adds
      CUDA graphs).
    - ``warmup_shapes``: (width, height, frames) warm-up runs when compiling; None = one per preset
      (``I2V_COMPILE_WARMUP``: "presets", "none" or "832x512x16,1280x768x24").
    - ``channels_last``: NHWC weights for the 2D convolutions of the UNet and VAE (``I2V_CHANNELS_LAST``).
    - ``fuse_qkv``: one projection matrix for q, k, v in the UNet's attention (``I2V_FUSE_QKV``).
    - ``decode_chunk_size``: frames per VAE decode call; None = 8 on CUDA, 16 on the CPU (``I2V_DECODE_CHUNK_SIZE``).
    - ``vae_tiling``: decode in overlapping tiles (less memory; the tiles are blended, so the frames change
      slightly) (``I2V_VAE_TILING``).
    - ``cpu_offload``: keep each model in CPU memory until it runs (CUDA only; diffusers' model CPU offload)
      (``I2V_CPU_OFFLOAD``).
    """

    dtype: str | None = None
    sdpa_backend: str = "auto"
    compile_unet: bool = False
    compile_mode: str = "default"
    warmup_shapes: tuple[WarmupShape, ...] | None = None
    channels_last: bool = False
    fuse_qkv: bool = False
    decode_chunk_size: int | None = None
    vae_tiling: bool = False
    cpu_offload: bool = False

    def __post_init__(self) -> None:
        if self.dtype is not None and self.dtype not in DTYPES:
            raise PerformanceOptionError(f"{ENV_DTYPE} (dtype) {self.dtype!r} is not one of {', '.join(DTYPES)}")
        if self.sdpa_backend not in SDPA_BACKENDS:
            raise PerformanceOptionError(
                f"{ENV_SDPA_BACKEND} (sdpa_backend) {self.sdpa_backend!r} is not one of {', '.join(SDPA_BACKENDS)}"
            )
        if self.compile_mode not in COMPILE_MODES:
            raise PerformanceOptionError(
                f"{ENV_COMPILE_MODE} (compile_mode) {self.compile_mode!r} is not one of {', '.join(COMPILE_MODES)}"
            )
        chunk = self.decode_chunk_size
        if chunk is not None and (isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1):
            raise PerformanceOptionError(
                f"{ENV_DECODE_CHUNK_SIZE} (decode_chunk_size) must be a whole number of frames >= 1, got {chunk!r}"
            )
        for shape in self.warmup_shapes or ():
            if len(shape) != 3 or not all(isinstance(v, int) and v > 0 for v in shape):
                raise PerformanceOptionError(f"warmup_shapes entry {shape!r} is not (width, height, frames)")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> PerformanceOptions:
        """Read the ``I2V_*`` settings (see the class docstring) through :mod:`config.reader`; unset or empty means
        the default. Raises :class:`PerformanceOptionError` naming the variable and the bad value."""
        try:
            v: dict[str, Any] = read(environment(env), PERFORMANCE_SETTINGS)
        except SettingsError as error:
            raise PerformanceOptionError(str(error)) from None
        return cls(
            dtype=v[ENV_DTYPE],
            sdpa_backend=v[ENV_SDPA_BACKEND],
            compile_unet=v[ENV_COMPILE],
            compile_mode=v[ENV_COMPILE_MODE],
            warmup_shapes=parse_warmup_shapes(v[ENV_COMPILE_WARMUP]),
            channels_last=v[ENV_CHANNELS_LAST],
            fuse_qkv=v[ENV_FUSE_QKV],
            decode_chunk_size=v[ENV_DECODE_CHUNK_SIZE],
            vae_tiling=v[ENV_VAE_TILING],
            cpu_offload=v[ENV_CPU_OFFLOAD],
        )

    def torch_dtype(self, device: torch.device, *, cuda_default: torch.dtype = torch.float16) -> torch.dtype:
        """The dtype the models run in on ``device``: ``dtype`` when set, else ``cuda_default`` on CUDA (the
        model's own recommendation) and fp32 elsewhere."""
        if self.dtype is None:
            return cuda_default if device.type == "cuda" else torch.float32
        return DTYPES[self.dtype]

    def check_device(self, device: torch.device) -> None:
        """Refuse settings that cannot work on ``device``, naming the setting."""
        if device.type != "cuda":
            if self.sdpa_backend in CUDA_ONLY_SDPA_BACKENDS:
                raise PerformanceOptionError(
                    f"{ENV_SDPA_BACKEND}={self.sdpa_backend} selects a CUDA attention kernel but the device is "
                    f"{device.type}; use auto or math there"
                )
            if self.cpu_offload:
                raise PerformanceOptionError(
                    f"{ENV_CPU_OFFLOAD}=1 moves models between the CPU and a CUDA GPU but the device is {device.type}"
                )
        if self.sdpa_backend == "flash" and self.torch_dtype(device) == torch.float32:
            raise PerformanceOptionError(f"{ENV_SDPA_BACKEND}=flash needs fp16 or bf16 but {ENV_DTYPE} is fp32")

    def summary(self) -> dict[str, Any]:
        """The settings as a JSON-safe dict (for logs and benchmark results)."""
        return {
            "dtype": self.dtype,
            "sdpa_backend": self.sdpa_backend,
            "compile_unet": self.compile_unet,
            "compile_mode": self.compile_mode,
            "warmup_shapes": None if self.warmup_shapes is None else [list(s) for s in self.warmup_shapes],
            "channels_last": self.channels_last,
            "fuse_qkv": self.fuse_qkv,
            "decode_chunk_size": self.decode_chunk_size,
            "vae_tiling": self.vae_tiling,
            "cpu_offload": self.cpu_offload,
        }


SDPA_KERNELS: dict[str, str] = {"flash": "FLASH_ATTENTION", "efficient": "EFFICIENT_ATTENTION", "math": "MATH"}


def with_sdpa_backend(forward: Callable[..., Any], backend: str) -> Callable[..., Any]:
    """``forward`` run inside ``torch.nn.attention.sdpa_kernel`` limited to ``backend``."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    kernel = getattr(SDPBackend, SDPA_KERNELS[backend])

    @functools.wraps(forward)
    def run(*args: Any, **kwargs: Any) -> Any:
        with sdpa_kernel([kernel]):
            return forward(*args, **kwargs)

    return run


def conv2d_channels_last(module: torch.nn.Module) -> int:
    """Put the weights of every Conv2d under ``module`` in channels_last order; returns how many were changed.

    Whole-module ``.to(memory_format=...)`` fails on the UNet's 5-D temporal convolution weights.
    """
    count = 0
    for sub in module.modules():
        if isinstance(sub, torch.nn.Conv2d):
            # Module.to takes memory_format at run time (it is forwarded to Tensor.to); torch's stub leaves it out.
            sub.to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # stub lacks memory_format
            count += 1
    return count


def denoiser_of(pipe: Any) -> torch.nn.Module:
    """The module that runs once per denoising step: the UNet (I2VGen-XL) or the transformer (Wan, LTX)."""
    unet = getattr(pipe, "unet", None)
    return unet if unet is not None else pipe.transformer


def prepare_pipeline(
    pipe: Any, options: PerformanceOptions, device: torch.device, dtype: torch.dtype | None = None
) -> None:
    """Apply ``options`` to a built pipeline, in this order: dtype (``dtype``, else the options' own; a pipeline whose
    denoiser has it already keeps each component's dtype) and device
    (or the CPU, for model CPU offload, which the caller enables last), channels_last, fused QKV, VAE tiling, the
    denoiser's attention backend and torch.compile. Compile warm-up runs and offload are the caller's (they need the
    wrapped backend)."""
    options.check_device(device)
    dtype = options.torch_dtype(device) if dtype is None else dtype
    denoiser = denoiser_of(pipe)
    target = torch.device("cpu") if options.cpu_offload else device  # offload moves each model when it runs
    if denoiser.dtype == dtype:
        pipe.to(target)  # loaded in its dtype already: keep the modules a model holds in fp32 as they are
    else:
        pipe.to(target, dtype)
    if options.channels_last:
        changed = conv2d_channels_last(denoiser) + conv2d_channels_last(pipe.vae)
        log.info("channels_last: %d Conv2d weights reordered", changed)
    if options.fuse_qkv:
        fuse = getattr(denoiser, "fuse_qkv_projections", None)
        if fuse is None:
            raise PerformanceOptionError(
                f"{ENV_FUSE_QKV}=1: this model's {type(denoiser).__name__} cannot fuse "
                "its attention projections; unset it"
            )
        fuse()
    if options.vae_tiling:
        pipe.vae.enable_tiling()
    forward = denoiser.forward
    if options.compile_unet:
        forward = torch.compile(forward, mode=None if options.compile_mode == "default" else options.compile_mode)
    if options.sdpa_backend != "auto":
        forward = with_sdpa_backend(forward, options.sdpa_backend)  # entered outside the compiled code
    if forward is not denoiser.forward:
        denoiser.forward = forward
