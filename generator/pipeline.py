"""I2VGen-XL through diffusers: load once, generate many (the only module besides generator.tiny importing torch).

diffusers' ``I2VGenXLPipeline`` has no step callback and no interrupt. Progress and cancellation go through the
pipeline's progress bar, replaced on the instance for the duration of a job: its ``update()`` is called once per
denoising step; raising from it stops the run, after which the same pipeline runs the next job normally.
Reproducibility needs the global torch RNG seeded as well as the pipeline's generator (the VAE encoding of the
input image samples from the global RNG). The input image is resized and centre-cropped here, because the
pipeline's own crop can leave a black column.

Speed and memory settings: :mod:`generator.performance` (:class:`PerformanceOptions`, re-exported here). Where the
model comes from: :mod:`generator.model_source` (:class:`ModelLoadError` re-exported); its device:
:mod:`generator.device`.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, Literal

import numpy as np
import torch
from PIL import Image

from generator.images import fit_image
from generator.model_files import TINY_MODEL
from generator.device import resolve_device
from generator.model_source import ModelLoadError, load_pretrained
from generator.params import GenerationParams
from generator.performance import (  # re-exported: callers import the options from here
    WARMUP_ASPECT_PX,
    WARMUP_GUIDANCE,
    WARMUP_STEPS,
    PerformanceOptionError,
    PerformanceOptions,
    WarmupShape,
    prepare_pipeline,
    preset_warmup_shapes,
)

__all__ = ["GenerationCancelled", "GenerationFailed", "GenerationOutOfMemory", "ModelLoadError",
           "PerformanceOptionError", "PerformanceOptions", "VideoGenerator"]

CUDA_DECODE_CHUNK_FRAMES: int = 8  # frames per VAE decode call on a GPU (speed only; output is identical)
CPU_DECODE_CHUNK_FRAMES: int = 16  # frames per VAE decode call on the CPU
LOW_MEMORY_DECODE_CHUNK_FRAMES: int = 1  # frames per VAE decode call in low-memory mode
HIGH_FPS_CONDITION_FROM: int = 12  # export fps from which the model is conditioned on 16 fps motion (else 8)
SIZE_STEP_PX: int = 8  # sizes must divide by the VAE factor (8 for the real model; 64 is what it knows)
MIN_SIZE_PX: int = 32  # smallest output side accepted

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
        torch_device = resolve_device(device, model)
        options = PerformanceOptions.from_env() if options is None else options
        if not isinstance(options, PerformanceOptions):
            raise TypeError(f"options must be PerformanceOptions, got {type(options).__name__}")
        options.check_device(torch_device)
        dtype = options.torch_dtype(torch_device)
        if model == TINY_MODEL:
            from generator.tiny import build_tiny_pipeline

            pipe = build_tiny_pipeline()  # fp32 on the CPU
        else:
            pipe = load_pretrained(model, dtype)
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
        prepare_pipeline(pipe, options, device)
        dtype = options.torch_dtype(device)
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
