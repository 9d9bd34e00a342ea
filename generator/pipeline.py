"""I2VGen-XL through diffusers: load once, generate many (the only module besides generator.tiny importing torch).

diffusers' ``I2VGenXLPipeline`` has no step callback and no interrupt. Progress and cancellation go through the
pipeline's progress bar, replaced on the instance for the duration of a job: its ``update()`` is called once per
denoising step; raising from it stops the run, after which the same pipeline runs the next job normally.
Reproducibility needs the global torch RNG seeded as well as the pipeline's generator (the VAE encoding of the
input image samples from the global RNG). The input image is resized and centre-cropped here, because the
pipeline's own crop can leave a black column.
"""

from __future__ import annotations

import gc
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from generator.images import fit_image
from generator.params import GenerationParams

DEFAULT_MODEL: str = "ali-vilab/i2vgen-xl"  # hub id of the released checkpoint
TINY_MODEL: str = "tiny"  # I2V_MODEL value selecting the tiny random model built in code
FP16_VARIANT: str = "fp16"  # the hub repository's half-precision weight files
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


class ModelLoadError(RuntimeError):
    """The model could not be loaded from the given source."""


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

    def __init__(self, pipe: Any, *, model: str, device: torch.device, dtype: torch.dtype) -> None:
        """Wrap an already built ``I2VGenXLPipeline``; use :meth:`load` instead of calling this directly."""
        self._pipe = pipe
        self.model = model
        self.device = device
        self.dtype = dtype
        self._lock = threading.Lock()
        self._low_memory = False
        self._offloaded = False
        pipe.set_progress_bar_config(disable=True)

    @classmethod
    def load(cls, model: str, *, device: str | None = None) -> VideoGenerator:
        """Load from a hub id (default ``ali-vilab/i2vgen-xl``), a local folder, or ``"tiny"`` (built offline).

        fp16 on CUDA, fp32 on the CPU. Raises ModelLoadError naming the source when loading fails.
        """
        if not isinstance(model, str) or not model.strip():
            raise ValueError(f"model must be a hub id, a folder or 'tiny', got {model!r}")
        model = model.strip()
        torch_device = _resolve_device(device)
        dtype = torch.float16 if torch_device.type == "cuda" else torch.float32
        if model == TINY_MODEL:
            from generator.tiny import build_tiny_pipeline

            pipe = build_tiny_pipeline()  # fp32 on the CPU
            if torch_device.type != "cpu":
                pipe.to(torch_device, dtype)
            return cls(pipe, model=model, device=torch_device, dtype=dtype)
        pipe = cls._from_pretrained(model, dtype)
        from generator.tiny import ensure_text_model_alias

        ensure_text_model_alias(pipe.text_encoder)
        pipe.to(torch_device)
        return cls(pipe, model=model, device=torch_device, dtype=dtype)

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
        if enabled == self._low_memory:
            return
        vae = self._pipe.vae
        if enabled:
            vae.enable_tiling()
            if self.device.type == "cuda":
                self._pipe.enable_model_cpu_offload(device=self.device)
                self._offloaded = True
        else:
            vae.disable_tiling()
            if self._offloaded:
                self._pipe.remove_all_hooks()
                self._pipe.to(self.device)
                self._offloaded = False
        self._low_memory = enabled

    def _recover(self) -> None:
        """Leave the pipeline ready for the next job after an exception mid-run."""
        try:
            self._pipe.maybe_free_model_hooks()
        finally:
            gc.collect()
            if self.device.type == "cuda":
                torch.cuda.empty_cache()

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
        if not isinstance(params, GenerationParams):
            raise TypeError(f"params must be GenerationParams, got {type(params).__name__}")
        if not isinstance(image, Image.Image):
            raise TypeError(f"image must be a PIL image, got {type(image).__name__}")
        step = max(SIZE_STEP_PX, int(getattr(self._pipe, "vae_scale_factor", SIZE_STEP_PX)))
        for name, value in (("width", width), ("height", height)):
            if isinstance(value, bool) or not isinstance(value, int) or value < MIN_SIZE_PX or value % step:
                raise ValueError(f"{name} must be a multiple of {step} of at least {MIN_SIZE_PX} px, got {value!r}")
        if not self._lock.acquire(blocking=False):
            raise RuntimeError("this VideoGenerator is already running a job; run one job at a time")
        try:
            return self._generate_locked(
                image, params, width, height, on_step, should_cancel, low_memory, on_phase
            )
        finally:
            self._lock.release()

    def _generate_locked(
        self,
        image: Image.Image,
        params: GenerationParams,
        width: int,
        height: int,
        on_step: StepCallback | None,
        should_cancel: CancelCheck | None,
        low_memory: bool,
        on_phase: PhaseCallback | None,
    ) -> list[Image.Image]:
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
            if low_memory:
                decode_chunk = LOW_MEMORY_DECODE_CHUNK_FRAMES
            else:
                decode_chunk = CUDA_DECODE_CHUNK_FRAMES if self.device.type == "cuda" else CPU_DECODE_CHUNK_FRAMES
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
                decode_chunk_size=decode_chunk,
                output_type="np",
            )
        except BaseException as exc:
            self._recover()
            if _is_out_of_memory(exc):
                raise GenerationOutOfMemory(width, height, params.frames, self.device_name) from exc
            raise
        finally:
            pipe.__dict__.pop("progress_bar", None)  # back to the class's tqdm factory
        frames = np.asarray(output.frames[0])
        if frames.shape != (params.frames, height, width, 3):
            raise GenerationFailed(f"the pipeline returned frames of shape {frames.shape}, "
                                   f"expected {(params.frames, height, width, 3)}")
        if not np.isfinite(frames).all():
            raise GenerationFailed("the model produced invalid (NaN or infinite) frames; try another seed")
        pixels = np.clip(np.rint(frames * 255.0), 0, 255).astype(np.uint8)
        return [Image.fromarray(frame) for frame in pixels]
