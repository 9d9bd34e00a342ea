"""I2VGen-XL through diffusers: load once, generate many (the only module besides generator.tiny importing torch).

diffusers' ``I2VGenXLPipeline`` has no step callback and no interrupt. Progress and cancellation go through the
pipeline's progress bar, replaced on the instance for the duration of a job: its ``update()`` is called once per
denoising step; raising from it stops the run, after which the same pipeline runs the next job normally.
Reproducibility needs the global torch RNG seeded as well as the pipeline's generator (the VAE encoding of the
input image samples from the global RNG). The input image is resized and centre-cropped here, because the
pipeline's own crop can leave a black column.

Speed and memory settings live in :class:`PerformanceOptions` (each one an ``I2V_*`` environment variable, read by
:meth:`PerformanceOptions.from_env`). Their defaults are the plain behaviour: fp16 on CUDA, fp32 on the CPU, PyTorch's
own attention kernel choice, no compilation, 8 (GPU) or 16 (CPU) frames per VAE decode call. docs/performance.md has
the predicted and measured effect of each.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from PIL import Image

from generator.images import fit_image
from generator.params import GenerationParams

TINY_MODEL: str = "tiny"  # I2V_MODEL value selecting the tiny random model built in code
FP16_VARIANT: str = "fp16"  # the hub repository's half-precision weight files
CUDA_DECODE_CHUNK_FRAMES: int = 8  # frames per VAE decode call on a GPU (speed only; output is identical)
CPU_DECODE_CHUNK_FRAMES: int = 16  # frames per VAE decode call on the CPU
LOW_MEMORY_DECODE_CHUNK_FRAMES: int = 1  # frames per VAE decode call in low-memory mode
HIGH_FPS_CONDITION_FROM: int = 12  # export fps from which the model is conditioned on 16 fps motion (else 8)
SIZE_STEP_PX: int = 8  # sizes must divide by the VAE factor (8 for the real model; 64 is what it knows)
MIN_SIZE_PX: int = 32  # smallest output side accepted
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

log = logging.getLogger(__name__)

StepCallback = Callable[[int, int], None]
CancelCheck = Callable[[], bool]
PhaseCallback = Callable[[str], None]


class GenerationCancelled(Exception):
    """The cancel flag was seen after denoising step ``step`` of ``total`` (0 = before the first step)."""

    def __init__(self, step: int, total: int) -> None:
        self.step = step
        self.total = total
        super().__init__(f"generation cancelled after step {step} of {total}")


class GenerationOutOfMemory(RuntimeError):
    """The device ran out of memory; the message says what to lower. The generator stays usable."""

    def __init__(self, width: int, height: int, frames: int, device: str) -> None:
        self.width = width
        self.height = height
        self.frames = frames
        self.device = device
        super().__init__(
            f"Out of memory on {device} at {width}x{height} with {frames} frames: "
            "lower the resolution or the number of frames and try again."
        )


class GenerationFailed(RuntimeError):
    """The model produced unusable output (NaN or infinite values)."""


class ModelLoadError(RuntimeError):
    """The model could not be loaded from the given source."""


class PerformanceOptionError(ValueError):
    """A performance setting is invalid or cannot work on this device; the message names the setting."""


WarmupShape = tuple[int, int, int]  # (width, height, frames) of one compile warm-up run


def _env_flag(env: Mapping[str, str], name: str) -> bool:
    raw = env.get(name, "").strip().lower()
    if raw in ("", "0", "false", "no", "off"):
        return False
    if raw in ("1", "true", "yes", "on"):
        return True
    raise PerformanceOptionError(f"{name}={env[name]!r} is not a switch: use 0 or 1")


def _env_choice(env: Mapping[str, str], name: str, choices: tuple[str, ...] | list[str]) -> str | None:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return None
    if raw not in choices:
        raise PerformanceOptionError(f"{name}={env[name]!r} is not one of {', '.join(choices)}")
    return raw


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
        """Read the ``I2V_*`` settings (see the class docstring); unset or empty means the default."""
        env = os.environ if env is None else env
        chunk_raw = env.get(ENV_DECODE_CHUNK_SIZE, "").strip()
        if chunk_raw and not chunk_raw.isdigit():
            raise PerformanceOptionError(
                f"{ENV_DECODE_CHUNK_SIZE}={env[ENV_DECODE_CHUNK_SIZE]!r} is not a whole number of frames"
            )
        return cls(
            dtype=_env_choice(env, ENV_DTYPE, list(DTYPES)),
            sdpa_backend=_env_choice(env, ENV_SDPA_BACKEND, SDPA_BACKENDS) or "auto",
            compile_unet=_env_flag(env, ENV_COMPILE),
            compile_mode=_env_choice(env, ENV_COMPILE_MODE, COMPILE_MODES) or "default",
            warmup_shapes=parse_warmup_shapes(env.get(ENV_COMPILE_WARMUP, "")),
            channels_last=_env_flag(env, ENV_CHANNELS_LAST),
            fuse_qkv=_env_flag(env, ENV_FUSE_QKV),
            decode_chunk_size=int(chunk_raw) if chunk_raw else None,
            vae_tiling=_env_flag(env, ENV_VAE_TILING),
            cpu_offload=_env_flag(env, ENV_CPU_OFFLOAD),
        )

    def torch_dtype(self, device: torch.device) -> torch.dtype:
        """The dtype the models run in on ``device``."""
        if self.dtype is None:
            return torch.float16 if device.type == "cuda" else torch.float32
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
            raise PerformanceOptionError(
                f"{ENV_SDPA_BACKEND}=flash needs fp16 or bf16 but {ENV_DTYPE} is fp32"
            )

    def summary(self) -> dict[str, Any]:
        """The settings as a JSON-safe dict (for logs and benchmark results)."""
        return {
            "dtype": self.dtype, "sdpa_backend": self.sdpa_backend, "compile_unet": self.compile_unet,
            "compile_mode": self.compile_mode,
            "warmup_shapes": None if self.warmup_shapes is None else [list(s) for s in self.warmup_shapes],
            "channels_last": self.channels_last, "fuse_qkv": self.fuse_qkv,
            "decode_chunk_size": self.decode_chunk_size, "vae_tiling": self.vae_tiling,
            "cpu_offload": self.cpu_offload,
        }


_SDPA_KERNELS: dict[str, str] = {"flash": "FLASH_ATTENTION", "efficient": "EFFICIENT_ATTENTION", "math": "MATH"}


def _with_sdpa_backend(forward: Callable[..., Any], backend: str) -> Callable[..., Any]:
    """``forward`` run inside ``torch.nn.attention.sdpa_kernel`` limited to ``backend``."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    kernel = getattr(SDPBackend, _SDPA_KERNELS[backend])

    @functools.wraps(forward)
    def run(*args: Any, **kwargs: Any) -> Any:
        with sdpa_kernel([kernel]):
            return forward(*args, **kwargs)

    return run


def _conv2d_channels_last(module: torch.nn.Module) -> int:
    """Put the weights of every Conv2d under ``module`` in channels_last order; returns how many were changed.

    Whole-module ``.to(memory_format=...)`` fails on the UNet's 5-D temporal convolution weights.
    """
    count = 0
    for sub in module.modules():
        if isinstance(sub, torch.nn.Conv2d):
            sub.to(memory_format=torch.channels_last)
            count += 1
    return count


class _StepReporter:
    """Stands in for the pipeline's tqdm bar: ``update()`` runs once per denoising step."""

    def __init__(
        self,
        total: int,
        on_step: StepCallback | None,
        should_cancel: CancelCheck | None,
        on_phase: PhaseCallback | None,
    ) -> None:
        self.total = total
        self.step = 0
        self._on_step = on_step
        self._should_cancel = should_cancel
        self._on_phase = on_phase

    def __enter__(self) -> _StepReporter:
        return self

    def __exit__(self, *exc: object) -> bool:
        return False

    def update(self, n: int = 1) -> None:
        """Count a finished step, report it, and raise GenerationCancelled if the cancel flag is set."""
        for _ in range(n):
            self.step += 1
            if self._on_step is not None:
                self._on_step(self.step, self.total)
            if self.step == self.total and self._on_phase is not None:
                self._on_phase("decoding")
            if self._should_cancel is not None and self._should_cancel():
                raise GenerationCancelled(self.step, self.total)


def _is_out_of_memory(exc: BaseException) -> bool:
    if isinstance(exc, torch.cuda.OutOfMemoryError):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and ("out of memory" in text or "not enough memory" in text)


def _resolve_device(device: str | None) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError as exc:
        raise ValueError(f"device {device!r} is not a torch device name (try 'cpu' or 'cuda')") from exc
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} was asked for but this torch build sees no CUDA GPU")
    return resolved


def _looks_like_path(model: str) -> bool:
    return model.startswith(("/", "./", "../", "~", os.sep)) or model.endswith(("/", os.sep))


class VideoGenerator:
    """A loaded I2VGen-XL pipeline kept warm between jobs. Runs one job at a time."""

    def __init__(
        self,
        pipe: Any,
        *,
        model: str,
        device: torch.device,
        dtype: torch.dtype,
        options: PerformanceOptions | None = None,
    ) -> None:
        """Wrap an already built ``I2VGenXLPipeline`` as it is; use :meth:`load` or :meth:`from_pipeline` instead.

        ``options`` records how ``pipe`` was prepared (decode chunking and offload are read from it at run time).
        """
        self._pipe = pipe
        self.model = model
        self.device = device
        self.dtype = dtype
        self.options = options or PerformanceOptions()
        self._lock = threading.Lock()
        self._low_memory = False
        self._offloaded = False
        self.warmup_s: float = 0.0  # seconds spent in compile warm-up runs at load
        pipe.set_progress_bar_config(disable=True)
        from generator.tiny import ensure_text_model_alias

        ensure_text_model_alias(pipe.text_encoder)  # every pipeline we run comes through here

    @classmethod
    def load(
        cls, model: str, *, device: str | None = None, options: PerformanceOptions | None = None
    ) -> VideoGenerator:
        """Load from a hub id (default ``ali-vilab/i2vgen-xl``), a local folder, or ``"tiny"`` (built offline).

        ``options`` None reads :meth:`PerformanceOptions.from_env` (so the worker honours the ``I2V_*`` settings);
        with none of them set: fp16 on CUDA, fp32 on the CPU. Raises ModelLoadError naming the source when loading
        fails, PerformanceOptionError for a setting the device cannot honour.
        """
        if not isinstance(model, str) or not model.strip():
            raise ValueError(f"model must be a hub id, a folder or 'tiny', got {model!r}")
        model = model.strip()
        torch_device = _resolve_device(device)
        options = PerformanceOptions.from_env() if options is None else options
        if not isinstance(options, PerformanceOptions):
            raise TypeError(f"options must be PerformanceOptions, got {type(options).__name__}")
        options.check_device(torch_device)
        dtype = options.torch_dtype(torch_device)
        if model == TINY_MODEL:
            from generator.tiny import build_tiny_pipeline

            pipe = build_tiny_pipeline()  # fp32 on the CPU
        else:
            pipe = cls._from_pretrained(model, dtype)
        return cls.from_pipeline(pipe, model=model, device=torch_device, options=options)

    @classmethod
    def from_pipeline(
        cls, pipe: Any, *, model: str, device: torch.device, options: PerformanceOptions | None = None
    ) -> VideoGenerator:
        """Prepare a built pipeline (on any device, any dtype) with ``options`` and wrap it.

        Order: dtype and device (or model CPU offload last), channels_last, fused QKV, VAE tiling, the UNet's
        attention backend, torch.compile and its warm-up runs.
        """
        options = options or PerformanceOptions()
        options.check_device(device)
        dtype = options.torch_dtype(device)
        if options.cpu_offload:
            pipe.to(torch.device("cpu"), dtype)  # diffusers' offload moves each model to the GPU when it runs
        else:
            pipe.to(device, dtype)
        if options.channels_last:
            changed = _conv2d_channels_last(pipe.unet) + _conv2d_channels_last(pipe.vae)
            log.info("channels_last: %d Conv2d weights reordered", changed)
        if options.fuse_qkv:
            pipe.unet.fuse_qkv_projections()
        if options.vae_tiling:
            pipe.vae.enable_tiling()
        unet = pipe.unet
        forward = unet.forward
        if options.compile_unet:
            forward = torch.compile(forward, mode=None if options.compile_mode == "default" else options.compile_mode)
        if options.sdpa_backend != "auto":
            forward = _with_sdpa_backend(forward, options.sdpa_backend)  # entered outside the compiled code
        if forward is not unet.forward:
            unet.forward = forward
        generator = cls(pipe, model=model, device=device, dtype=dtype, options=options)
        if options.cpu_offload:
            pipe.enable_model_cpu_offload(device=device)
            generator._offloaded = True
        if options.compile_unet:
            generator.warm_up(preset_warmup_shapes() if options.warmup_shapes is None else options.warmup_shapes)
        return generator

    def warm_up(self, shapes: tuple[WarmupShape, ...]) -> float:
        """Run ``WARMUP_STEPS`` denoising steps (no decode) at each (width, height, frames); returns the seconds.

        With ``compile_unet`` this compiles the UNet for those shapes, so the first jobs do not wait for it.
        """
        grey = Image.new("RGB", WARMUP_ASPECT_PX, (128, 128, 128))
        started = time.perf_counter()
        with self._lock:
            for width, height, frames in shapes:
                shape_started = time.perf_counter()
                try:
                    self._pipe(
                        prompt="warm-up", image=fit_image(grey, width, height), height=height, width=width,
                        num_frames=frames, num_inference_steps=WARMUP_STEPS, guidance_scale=WARMUP_GUIDANCE,
                        generator=torch.Generator(device="cpu").manual_seed(0), output_type="latent",
                    )
                finally:
                    self._recover()
                log.info("warm-up %dx%d, %d frames: %.1f s", width, height, frames,
                         time.perf_counter() - shape_started)
        self.warmup_s += time.perf_counter() - started
        return time.perf_counter() - started

    @staticmethod
    def _from_pretrained(model: str, dtype: torch.dtype) -> Any:
        from diffusers import I2VGenXLPipeline

        folder = Path(model).expanduser()
        if folder.is_dir():
            source = str(folder)
            has_fp16 = any(".fp16." in p.name for p in folder.rglob("*") if p.is_file())
            variants = [FP16_VARIANT, None] if has_fp16 else [None]
        elif _looks_like_path(model):
            raise ModelLoadError(f"I2V_MODEL {model!r} looks like a folder but there is no such folder")
        else:
            source = model
            variants = [FP16_VARIANT, None]
        last: Exception | None = None
        for variant in variants:
            try:
                return I2VGenXLPipeline.from_pretrained(source, dtype=dtype, variant=variant)
            except (OSError, ValueError) as exc:
                last = exc
                log.info("loading %s with variant %s failed: %s", source, variant, exc)
        raise ModelLoadError(f"could not load I2VGen-XL from {model!r}: {last}") from last

    @property
    def pipeline(self) -> Any:
        """The underlying diffusers pipeline (for benchmarks and diagnostics)."""
        return self._pipe

    @property
    def device_name(self) -> str:
        """"cpu" or the GPU's name."""
        if self.device.type == "cuda":
            return torch.cuda.get_device_name(self.device)
        return self.device.type

    @property
    def gpu_memory_bytes(self) -> int | None:
        """Total memory of the GPU in bytes, or None on the CPU."""
        if self.device.type == "cuda":
            return int(torch.cuda.get_device_properties(self.device).total_memory)
        return None

    def _set_low_memory(self, enabled: bool) -> None:
        """Turn the low-memory mode (VAE tiling, model CPU offload on CUDA) on or back to what the options say."""
        if enabled == self._low_memory:
            return
        vae = self._pipe.vae
        if enabled:
            vae.enable_tiling()
            if self.device.type == "cuda" and not self._offloaded:
                self._pipe.enable_model_cpu_offload(device=self.device)
                self._offloaded = True
        else:
            if not self.options.vae_tiling:
                vae.disable_tiling()
            if self._offloaded and not self.options.cpu_offload:
                self._pipe.remove_all_hooks()
                self._pipe.to(self.device)
                self._offloaded = False
        self._low_memory = enabled

    def decode_chunk_size(self, low_memory: bool = False) -> int:
        """Frames per VAE decode call for a job."""
        if low_memory:
            return LOW_MEMORY_DECODE_CHUNK_FRAMES
        if self.options.decode_chunk_size is not None:
            return self.options.decode_chunk_size
        return CUDA_DECODE_CHUNK_FRAMES if self.device.type == "cuda" else CPU_DECODE_CHUNK_FRAMES

    def _recover(self) -> None:
        """Leave the pipeline ready for the next job after an exception mid-run."""
        try:
            self._pipe.maybe_free_model_hooks()
        finally:
            gc.collect()
            if self.device.type == "cuda":
                torch.cuda.empty_cache()

    def _check_request(self, image: Image.Image, params: GenerationParams, width: int, height: int) -> None:
        if not isinstance(params, GenerationParams):
            raise TypeError(f"params must be GenerationParams, got {type(params).__name__}")
        if not isinstance(image, Image.Image):
            raise TypeError(f"image must be a PIL image, got {type(image).__name__}")
        step = max(SIZE_STEP_PX, int(getattr(self._pipe, "vae_scale_factor", SIZE_STEP_PX)))
        for name, value in (("width", width), ("height", height)):
            if isinstance(value, bool) or not isinstance(value, int) or value < MIN_SIZE_PX or value % step:
                raise ValueError(f"{name} must be a multiple of {step} of at least {MIN_SIZE_PX} px, got {value!r}")

    @contextlib.contextmanager
    def _one_job(self) -> Iterator[None]:
        if not self._lock.acquire(blocking=False):
            raise RuntimeError("this VideoGenerator is already running a job; run one job at a time")
        try:
            yield
        finally:
            self._lock.release()

    def generate(
        self,
        image: Image.Image,
        params: GenerationParams,
        *,
        width: int,
        height: int,
        on_step: StepCallback | None = None,
        should_cancel: CancelCheck | None = None,
        low_memory: bool = False,
        on_phase: PhaseCallback | None = None,
    ) -> list[Image.Image]:
        """Generate ``params.frames`` RGB frames of exactly ``width`` x ``height`` from ``image``.

        ``on_step(step, total)`` runs after each denoising step (1..total); ``should_cancel()`` is checked before
        the first step and after every step, and a True stops the run with GenerationCancelled. ``on_phase``
        receives "denoising" and then "decoding". Raises GenerationOutOfMemory (the generator stays usable),
        GenerationFailed on NaN output, ValueError for a bad size.
        """
        self._check_request(image, params, width, height)
        with self._one_job():
            output = self._run(image, params, width, height, on_step, should_cancel, low_memory, on_phase, "np")
        frames = np.asarray(output)
        if frames.shape != (params.frames, height, width, 3):
            raise GenerationFailed(f"the pipeline returned frames of shape {frames.shape}, "
                                   f"expected {(params.frames, height, width, 3)}")
        if not np.isfinite(frames).all():
            raise GenerationFailed("the model produced invalid (NaN or infinite) frames; try another seed")
        pixels = np.clip(np.rint(frames * 255.0), 0, 255).astype(np.uint8)
        return [Image.fromarray(frame) for frame in pixels]

    def generate_array(
        self,
        image: Image.Image,
        params: GenerationParams,
        *,
        width: int,
        height: int,
        output: Literal["latents", "frames"] = "latents",
    ) -> np.ndarray:
        """The same run as :meth:`generate`, returned as float32 for fidelity checks.

        ``"latents"``: the final denoised latents, shape (1, channels, frames, height / f, width / f), before the
        VAE. ``"frames"``: the decoded frames in [0, 1], shape (frames, height, width, 3), before rounding to bytes.
        """
        if output not in ("latents", "frames"):
            raise ValueError(f"output must be 'latents' or 'frames', got {output!r}")
        self._check_request(image, params, width, height)
        with self._one_job():
            result = self._run(image, params, width, height, None, None, False, None,
                               "latent" if output == "latents" else "np")
        if isinstance(result, torch.Tensor):
            return result.detach().to("cpu", torch.float32).numpy()
        return np.asarray(result, dtype=np.float32)

    def _run(
        self,
        image: Image.Image,
        params: GenerationParams,
        width: int,
        height: int,
        on_step: StepCallback | None,
        should_cancel: CancelCheck | None,
        low_memory: bool,
        on_phase: PhaseCallback | None,
        output_type: str,
    ) -> Any:
        """One pipeline call; returns the first video of the output (frames array or latents tensor)."""
        if should_cancel is not None and should_cancel():
            raise GenerationCancelled(0, params.steps)
        fitted = fit_image(image, width, height)
        pipe = self._pipe
        try:
            self._set_low_memory(low_memory)
            reporter = _StepReporter(params.steps, on_step, should_cancel, on_phase)

            def progress_bar(iterable: Any = None, total: int | None = None) -> _StepReporter:
                if total is not None:
                    reporter.total = total
                return reporter

            pipe.progress_bar = progress_bar
            if on_phase is not None:
                on_phase("denoising")
            torch.manual_seed(params.seed)  # the VAE's image encoding samples from the global RNG
            generator = torch.Generator(device="cpu").manual_seed(params.seed)
            output = pipe(
                prompt=params.prompt,
                image=fitted,
                height=height,
                width=width,
                target_fps=16 if params.fps >= HIGH_FPS_CONDITION_FROM else 8,
                num_frames=params.frames,
                num_inference_steps=params.steps,
                guidance_scale=params.guidance,
                negative_prompt=params.negative_prompt,
                generator=generator,
                decode_chunk_size=self.decode_chunk_size(low_memory),
                output_type=output_type,
            )
        except BaseException as exc:
            self._recover()
            if _is_out_of_memory(exc):
                raise GenerationOutOfMemory(width, height, params.frames, self.device_name) from exc
            raise
        finally:
            pipe.__dict__.pop("progress_bar", None)  # back to the class's tqdm factory
        return output.frames[0] if output_type != "latent" else output.frames
