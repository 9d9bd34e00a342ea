"""I2VGen-XL through diffusers' ``I2VGenXLPipeline`` (the default model, key ``i2vgenxl``).

The pipeline is deprecated and frozen upstream: it has no step callback and no interrupt. Progress and
cancellation go through the pipeline's progress bar, replaced on the instance for the duration of a job: its
``update()`` is called once per denoising step; raising from it stops the run, after which the same pipeline runs
the next job normally. Reproducibility needs the global torch RNG seeded as well as the pipeline's generator (the
VAE encoding of the input image samples from the global RNG). The input image is resized and centre-cropped by
the base class, because the pipeline's own crop can leave a black column.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from PIL import Image

from generator.model_spaces import I2VGENXL
from generator.models.base import Run, StepReporter, VideoBackend
from generator.performance import WarmupShape, preset_warmup_shapes

CUDA_DECODE_CHUNK_FRAMES: int = 8  # frames per VAE decode call on a GPU (speed only; output is identical)
CPU_DECODE_CHUNK_FRAMES: int = 16  # frames per VAE decode call on the CPU
LOW_MEMORY_DECODE_CHUNK_FRAMES: int = 1  # frames per VAE decode call in low-memory mode
HIGH_FPS_CONDITION_FROM: int = 12  # export fps from which the model is conditioned on 16 fps motion (else 8)


class _ProgressBar:
    """Stands in for the pipeline's tqdm bar: ``update()`` runs once per denoising step."""

    def __init__(self, reporter: StepReporter) -> None:
        self._reporter = reporter

    def __enter__(self) -> _ProgressBar:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def update(self, n: int = 1) -> None:
        for _ in range(n):
            self._reporter.step_done()


class I2VGenXLBackend(VideoBackend):
    """A loaded I2VGen-XL pipeline kept warm between jobs."""

    key: ClassVar[str] = I2VGENXL
    pipeline_class: ClassVar[str] = "I2VGenXLPipeline"
    size_step: ClassVar[int] = 8  # the VAE's factor; the UNet is at home with multiples of 64
    cuda_dtype: ClassVar[torch.dtype] = torch.float16
    default_source: ClassVar[str] = "ali-vilab/i2vgen-xl"
    native_shape: ClassVar[WarmupShape] = (1280, 704, 16)  # the training size (VGen's README)
    native_fps: ClassVar[int] = 8

    def __init__(self, pipe: Any, **kwargs: Any) -> None:
        super().__init__(pipe, **kwargs)
        from generator.models.tiny import ensure_text_model_alias

        ensure_text_model_alias(pipe.text_encoder)  # every pipeline we run comes through here

    @classmethod
    def default_warmup_shapes(cls) -> tuple[WarmupShape, ...]:
        return preset_warmup_shapes()

    def decode_chunk_size(self, low_memory: bool = False) -> int:
        """Frames per VAE decode call for a job."""
        if low_memory:
            return LOW_MEMORY_DECODE_CHUNK_FRAMES
        if self.options.decode_chunk_size is not None:
            return self.options.decode_chunk_size
        return CUDA_DECODE_CHUNK_FRAMES if self.device.type == "cuda" else CPU_DECODE_CHUNK_FRAMES

    def _call(self, image: Image.Image, run: Run, reporter: StepReporter) -> Any:
        pipe = self.pipeline

        def progress_bar(iterable: Any = None, total: int | None = None) -> _ProgressBar:
            if total is not None:
                reporter.total = total
            return _ProgressBar(reporter)

        pipe.progress_bar = progress_bar
        try:
            return pipe(
                prompt=run.prompt,
                image=image,
                height=run.height,
                width=run.width,
                target_fps=16 if run.fps >= HIGH_FPS_CONDITION_FROM else 8,
                num_frames=run.frames,
                num_inference_steps=run.steps,
                guidance_scale=run.guidance,
                negative_prompt=run.negative_prompt,
                generator=self.seeded_generator(run.seed),
                decode_chunk_size=self.decode_chunk_size(run.low_memory),
                output_type=run.output_type,
            )
        finally:
            pipe.__dict__.pop("progress_bar", None)  # back to the class's tqdm factory
