"""What every model backend shares: the interface the worker, the CLI and the bench use (:class:`VideoBackend`),
its errors, and the machinery around one pipeline call (one job at a time, cancel, out-of-memory advice, the
low-memory mode, checking the output, unloading).

A backend subclass names its model (``key``; its display name and frame rule come from
:mod:`generator.model_spaces`), its diffusers pipeline class and its defaults; the tiny build
(:func:`generator.models.tiny.build_tiny`), the loading from a folder or hub id and the call of the pipelines with a
step callback (Wan, LTX) are here. A backend overrides what its pipeline does otherwise.

Progress and cancel. ``on_step(step, total)`` runs after each denoising step; ``should_cancel()`` is checked
before the first step and after every step, and True stops the run with :class:`GenerationCancelled` raised from
the step hook (the pipelines' own ``interrupt`` flag would skip the remaining steps but still decode). The
pipeline is then cleaned up (:meth:`VideoBackend._recover`) and runs the next job normally.

Out of memory. An out-of-memory error becomes :class:`GenerationOutOfMemory` (the message says what to lower), the
backend stays usable, and the caller may run the job again with ``low_memory=True``: VAE tiling and, on CUDA,
model CPU offload, switched back off for the next normal job.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Self

import numpy as np
import torch
from PIL import Image

from generator.device import resolve_device
from generator.images import fit_image
from generator.model_files import TINY_MODEL
from generator.model_source import load_pretrained
from generator.model_spaces import SPACES
from generator.params import GenerationParams
from generator.performance import (
    WARMUP_ASPECT_PX,
    WARMUP_GUIDANCE,
    WARMUP_STEPS,
    PerformanceOptions,
    WarmupShape,
    denoiser_of,
    prepare_pipeline,
)

MIN_SIZE_PX: int = 32  # smallest output side accepted

log = logging.getLogger("generator.pipeline")

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
    """The device ran out of memory; the message says what to lower. The backend stays usable."""

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
    """The model produced unusable output (NaN or infinite values, or the wrong shape)."""


def is_out_of_memory(exc: BaseException) -> bool:
    """A CUDA out-of-memory error, or the CPU allocator's equivalent."""
    if isinstance(exc, torch.cuda.OutOfMemoryError):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and ("out of memory" in text or "not enough memory" in text)


class StepReporter:
    """Counts denoising steps for one run: reports each, switches the phase to "decoding" after the last, and
    raises :class:`GenerationCancelled` when the cancel flag is set. ``finished`` is True once the last step ran."""

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

    def step_done(self) -> None:
        """One denoising step finished."""
        self.step += 1
        if self._on_step is not None:
            self._on_step(self.step, self.total)
        if self.step == self.total and self._on_phase is not None:
            self._on_phase("decoding")
        if self._should_cancel is not None and self._should_cancel():
            raise GenerationCancelled(self.step, self.total)


@dataclass(frozen=True)
class Run:
    """What one pipeline call needs, taken from the job's :class:`GenerationParams` (or made up for a warm-up).

    ``output_type``: diffusers' ``"np"`` (frames in [0, 1]) or ``"latent"``; ``low_memory``: the low-memory mode
    is on for this call."""

    prompt: str
    negative_prompt: str
    frames: int
    fps: int
    steps: int
    guidance: float
    seed: int
    width: int
    height: int
    output_type: str = "np"
    low_memory: bool = False

    @classmethod
    def of(cls, params: GenerationParams, width: int, height: int, output_type: str, low_memory: bool) -> Run:
        return cls(
            prompt=params.prompt,
            negative_prompt=params.negative_prompt,
            frames=params.frames,
            fps=params.fps,
            steps=params.steps,
            guidance=params.guidance,
            seed=params.seed,
            width=width,
            height=height,
            output_type=output_type,
            low_memory=low_memory,
        )


class VideoBackend:
    """One loaded model kept warm between jobs; runs one job at a time.

    Subclasses set the class attributes without a default; ``label`` and ``frame_step`` follow from ``key``'s
    model space. ``frame_step``: the frame count must be ``frame_step * k + 1`` (1: any count); ``size_step``: the
    output sides must be multiples of it (the pipeline's own factor is used where it is larger).
    """

    key: ClassVar[str]  # the model key of settings and jobs ("i2vgenxl", "wan22-5b", "ltxv")
    pipeline_class: ClassVar[str]  # the diffusers pipeline class's name
    label: ClassVar[str]  # the model's name for people (its space's display name)
    frame_step: ClassVar[int] = 1  # its space's frame step
    size_step: ClassVar[int] = 8
    cuda_dtype: ClassVar[torch.dtype] = torch.float16  # the dtype on CUDA when I2V_DTYPE is unset
    default_source: ClassVar[str]  # the hub id loaded when the setting is unset
    native_shape: ClassVar[WarmupShape]  # (width, height, frames) its authors recommend: warm-up and bench default
    native_fps: ClassVar[int]  # the frame rate it was trained for
    load_options: ClassVar[Mapping[str, Any]] = {}  # keyword arguments of ``from_pretrained`` beyond the dtype

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        space = SPACES[cls.key]
        cls.label = space.display_name
        cls.frame_step = space.frames.step

    def __init__(
        self,
        pipe: Any,
        *,
        model: str,
        device: torch.device,
        dtype: torch.dtype,
        options: PerformanceOptions | None = None,
    ) -> None:
        """Wrap an already built pipeline as it is; use :meth:`load` or :meth:`from_pipeline` instead.

        ``options`` records how ``pipe`` was prepared (decode chunking and offload are read from it at run time).
        """
        self._pipe: Any = pipe
        self.model = model
        self.device = device
        self.dtype = dtype
        self.options = options or PerformanceOptions()
        self._lock = threading.Lock()
        self._low_memory = False
        self._offloaded = False
        self.warmup_s: float = 0.0  # seconds spent in compile warm-up runs at load
        pipe.set_progress_bar_config(disable=True)

    # -- loading -------------------------------------------------------------------------------------------------

    @classmethod
    def build_tiny(cls) -> Any:
        """The tiny random pipeline of this model, built in code (fp32, CPU)."""
        from generator.models.tiny import build_tiny

        return build_tiny(cls.key)

    @classmethod
    def load_pretrained(cls, source: str, dtype: torch.dtype) -> Any:
        """The pipeline from a local folder or a hub id; raises ``ModelLoadError`` naming the source."""
        import diffusers

        return load_pretrained(
            getattr(diffusers, cls.pipeline_class),
            source,
            cls.load_dtype(dtype),
            label=cls.label,
            setting=SPACES[cls.key].source_setting,
            **cls.load_options,
        )

    @classmethod
    def load_dtype(cls, dtype: torch.dtype) -> torch.dtype | dict[str, torch.dtype]:
        """The dtype ``from_pretrained`` loads in: ``dtype`` for every component unless a model says otherwise."""
        return dtype

    @classmethod
    def load(
        cls, model: str | None = None, *, device: str | None = None, options: PerformanceOptions | None = None
    ) -> Self:
        """Load from a hub id (None: :attr:`default_source`), a local folder, or ``"tiny"`` (built offline).

        ``options`` None reads :meth:`PerformanceOptions.from_env` (so the worker honours the ``I2V_*`` settings).
        Raises ModelLoadError naming the source when loading fails, PerformanceOptionError for a setting the
        device cannot honour.
        """
        if model is None:
            model = cls.default_source
        if not isinstance(model, str) or not model.strip():
            raise ValueError(f"model must be a hub id, a folder or 'tiny', got {model!r}")
        model = model.strip()
        torch_device = resolve_device(device, model)
        options = PerformanceOptions.from_env() if options is None else options
        if not isinstance(options, PerformanceOptions):
            raise TypeError(f"options must be PerformanceOptions, got {type(options).__name__}")
        options.check_device(torch_device)
        dtype = options.torch_dtype(torch_device, cuda_default=cls.cuda_dtype)
        pipe = cls.build_tiny() if model == TINY_MODEL else cls.load_pretrained(model, dtype)
        return cls.from_pipeline(pipe, model=model, device=torch_device, options=options)

    @classmethod
    def from_pipeline(
        cls, pipe: Any, *, model: str, device: torch.device, options: PerformanceOptions | None = None
    ) -> Self:
        """Prepare a built pipeline (on any device, any dtype) with ``options`` and wrap it.

        Order: dtype and device (or model CPU offload last), channels_last, fused QKV, VAE tiling, the denoiser's
        attention backend, torch.compile and its warm-up runs.
        """
        options = options or PerformanceOptions()
        dtype = options.torch_dtype(device, cuda_default=cls.cuda_dtype)
        prepare_pipeline(pipe, options, device, dtype)
        backend = cls(pipe, model=model, device=device, dtype=dtype, options=options)
        backend._after_prepare()
        if options.cpu_offload:
            pipe.enable_model_cpu_offload(device=device)
            backend._offloaded = True
        if options.compile_unet:
            backend.warm_up(backend.default_warmup_shapes() if options.warmup_shapes is None else options.warmup_shapes)
        return backend

    def _after_prepare(self) -> None:
        """Per-model adjustments once the pipeline is on its device and dtype (none by default)."""

    @classmethod
    def default_warmup_shapes(cls) -> tuple[WarmupShape, ...]:
        """The (width, height, frames) shapes compiled at load when ``I2V_COMPILE_WARMUP`` is "presets"."""
        return (cls.native_shape,)

    def warm_up(self, shapes: tuple[WarmupShape, ...]) -> float:
        """Run ``WARMUP_STEPS`` denoising steps (no decode) at each (width, height, frames); returns the seconds.

        With ``compile_unet`` this compiles the denoiser for those shapes, so the first jobs do not wait for it.
        """
        grey = Image.new("RGB", WARMUP_ASPECT_PX, (128, 128, 128))
        started = time.perf_counter()
        with self._one_job():
            for width, height, frames in shapes:
                shape_started = time.perf_counter()
                run = Run(
                    prompt="warm-up",
                    negative_prompt="",
                    frames=frames,
                    fps=self.native_fps,
                    steps=WARMUP_STEPS,
                    guidance=WARMUP_GUIDANCE,
                    seed=0,
                    width=width,
                    height=height,
                    output_type="latent",
                )
                try:
                    self._call(fit_image(grey, width, height), run, StepReporter(WARMUP_STEPS, None, None, None))
                finally:
                    self._recover()
                log.info(
                    "%s warm-up %dx%d, %d frames: %.1f s",
                    self.key,
                    width,
                    height,
                    frames,
                    time.perf_counter() - shape_started,
                )
        elapsed = time.perf_counter() - started
        self.warmup_s += elapsed
        return elapsed

    def unload(self) -> None:
        """Release the pipeline: every hook removed, the models dropped, the GPU's cached memory returned.

        GPU memory goes back to its idle level once nothing else holds the models (the caller drops its own
        references to :attr:`pipeline`). The backend cannot generate afterwards.
        """
        with self._one_job():
            pipe, self._pipe = self._pipe, None
            if pipe is not None:
                with contextlib.suppress(Exception):
                    pipe.remove_all_hooks()
                del pipe
            gc.collect()
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
                torch.cuda.empty_cache()

    @property
    def loaded(self) -> bool:
        """False once :meth:`unload` ran."""
        return self._pipe is not None

    # -- facts ---------------------------------------------------------------------------------------------------

    @property
    def pipeline(self) -> Any:
        """The underlying diffusers pipeline (for benchmarks and diagnostics)."""
        if self._pipe is None:
            raise RuntimeError(f"the {self.label} model was unloaded")
        return self._pipe

    @property
    def denoiser(self) -> torch.nn.Module:
        """The UNet or transformer that runs once per step."""
        return denoiser_of(self.pipeline)

    @property
    def device_name(self) -> str:
        """ "cpu" or the GPU's name."""
        if self.device.type == "cuda":
            return torch.cuda.get_device_name(self.device)
        return self.device.type

    @property
    def gpu_memory_bytes(self) -> int | None:
        """Total memory of the GPU in bytes, or None on the CPU."""
        if self.device.type == "cuda":
            return int(torch.cuda.get_device_properties(self.device).total_memory)
        return None

    def size_multiple(self) -> int:
        """What the output sides must be multiples of."""
        return max(self.size_step, self._pipeline_size_factor())

    def _pipeline_size_factor(self) -> int:
        return int(getattr(self.pipeline, "vae_scale_factor", self.size_step))

    def frame_multiple(self) -> int:
        """The frame count must be ``frame_multiple() * k + 1`` (1: any count)."""
        return self.frame_step

    # -- running -------------------------------------------------------------------------------------------------

    def _set_low_memory(self, enabled: bool) -> None:
        """Turn the low-memory mode (VAE tiling, model CPU offload on CUDA) on or back to what the options say."""
        if enabled == self._low_memory:
            return
        pipe = self.pipeline
        vae = pipe.vae
        if enabled:
            vae.enable_tiling()
            if self.device.type == "cuda" and not self._offloaded:
                pipe.enable_model_cpu_offload(device=self.device)
                self._offloaded = True
        else:
            if not self.options.vae_tiling:
                vae.disable_tiling()
            if self._offloaded and not self.options.cpu_offload:
                pipe.remove_all_hooks()
                pipe.to(self.device)
                self._offloaded = False
        self._low_memory = enabled

    @property
    def low_memory(self) -> bool:
        """Whether the last run was in low-memory mode (it stays on until a normal run switches it off)."""
        return self._low_memory

    def _recover(self) -> None:
        """Leave the pipeline ready for the next job after an exception mid-run."""
        try:
            if self._pipe is not None:
                self._pipe.maybe_free_model_hooks()
        finally:
            gc.collect()
            if self.device.type == "cuda":
                torch.cuda.empty_cache()

    def check_request(self, image: Image.Image, params: GenerationParams, width: int, height: int) -> None:
        """Refuse what this model cannot make, naming the argument and the model's rule."""
        if not isinstance(params, GenerationParams):
            raise TypeError(f"params must be GenerationParams, got {type(params).__name__}")
        if not isinstance(image, Image.Image):
            raise TypeError(f"image must be a PIL image, got {type(image).__name__}")
        if params.model != self.key:
            raise ValueError(f"these parameters are for the model {params.model}, but this backend runs {self.key}")
        step = self.size_multiple()
        for name, value in (("width", width), ("height", height)):
            if isinstance(value, bool) or not isinstance(value, int) or value < MIN_SIZE_PX or value % step:
                raise ValueError(
                    f"{name} must be a multiple of {step} of at least {MIN_SIZE_PX} px for {self.label}, got {value!r}"
                )
        frames_step = self.frame_multiple()
        if frames_step > 1 and params.frames % frames_step != 1:
            raise ValueError(
                f"frames must be {frames_step}k+1 for {self.label} (e.g. "
                f"{params.frames // frames_step * frames_step + 1}), got {params.frames}"
            )

    @contextlib.contextmanager
    def _one_job(self) -> Iterator[None]:
        if not self._lock.acquire(blocking=False):
            raise RuntimeError(f"this {self.label} backend is already running a job; run one job at a time")
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
        receives "denoising" and then "decoding". Raises GenerationOutOfMemory (the backend stays usable),
        GenerationFailed on NaN output, ValueError for a size or frame count this model cannot make.
        """
        self.check_request(image, params, width, height)
        with self._one_job():
            output = self._run(image, params, width, height, on_step, should_cancel, low_memory, on_phase, "np")
        frames = np.asarray(output)
        if frames.shape != (params.frames, height, width, 3):
            raise GenerationFailed(
                f"the pipeline returned frames of shape {frames.shape}, expected {(params.frames, height, width, 3)}"
            )
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

        ``"latents"``: the final denoised latents, before the VAE. ``"frames"``: the decoded frames in [0, 1],
        shape (frames, height, width, 3), before rounding to bytes.
        """
        if output not in ("latents", "frames"):
            raise ValueError(f"output must be 'latents' or 'frames', got {output!r}")
        self.check_request(image, params, width, height)
        with self._one_job():
            result = self._run(
                image, params, width, height, None, None, False, None, "latent" if output == "latents" else "np"
            )
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
        try:
            self._set_low_memory(low_memory)
            reporter = StepReporter(params.steps, on_step, should_cancel, on_phase)
            if on_phase is not None:
                on_phase("denoising")
            torch.manual_seed(params.seed)  # VAE encodings that sample use the global RNG
            output = self._call(fitted, Run.of(params, width, height, output_type, low_memory), reporter)
        except BaseException as exc:
            self._recover()
            if is_out_of_memory(exc):
                raise GenerationOutOfMemory(width, height, params.frames, self.device_name) from exc
            raise
        return output.frames[0] if output_type != "latent" else output.frames

    def _call(self, image: Image.Image, run: Run, reporter: StepReporter) -> Any:
        """Call the pipeline once with ``image`` already fitted; ``reporter.step_done()`` after every step.

        This is the call of the pipelines with a step callback (Wan, LTX), with :meth:`_call_options`' arguments
        added; a backend whose pipeline has none overrides it.
        """
        return self.pipeline(
            image=image,
            prompt=run.prompt,
            negative_prompt=run.negative_prompt,
            height=run.height,
            width=run.width,
            num_frames=run.frames,
            num_inference_steps=run.steps,
            guidance_scale=run.guidance,
            generator=self.seeded_generator(run.seed),
            output_type=run.output_type,
            callback_on_step_end=self.step_callback(reporter),
            callback_on_step_end_tensor_inputs=[],
            **self._call_options(run),
        )

    def _call_options(self, run: Run) -> dict[str, Any]:
        """The model's own arguments of one :meth:`_call` (none by default)."""
        return {}

    def step_callback(self, reporter: StepReporter) -> Callable[..., dict[str, Any]]:
        """A ``callback_on_step_end`` for the transformer pipelines: reports the step, raises to cancel."""

        def callback(pipe: Any, index: int, timestep: Any, tensors: dict[str, Any]) -> dict[str, Any]:
            reporter.step_done()
            return {}

        return callback

    def seeded_generator(self, seed: int) -> torch.Generator:
        """The pipeline's noise generator: on the CPU, so a seed gives the same video on any device."""
        return torch.Generator(device="cpu").manual_seed(seed)
