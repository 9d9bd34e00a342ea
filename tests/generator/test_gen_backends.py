"""Every model backend's tiny model through its real diffusers pipeline class (CPU): the MP4, progress, cancel,
the out-of-memory retry, unloading, and the rules each model puts on frames and sizes."""

from __future__ import annotations

import gc
import re
import subprocess
import sys
import weakref
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from generator.faults import FaultPlan
from generator.model_spaces import I2VGENXL, LTXV, SPACES, WAN22_5B
from generator.models import BACKENDS, backend_class
from generator.models.base import GenerationCancelled, GenerationOutOfMemory, VideoBackend
from generator.models.tiny import UNK_TOKEN, build_tiny_word_tokenizer
from generator.params import GenerationParams
from generator.video import encode_mp4, probe_mp4

SIZE = 64  # px; a multiple of every model's size step
FRAMES = {I2VGENXL: 10, WAN22_5B: 13, LTXV: 17}  # counts each model accepts (any; 4k+1; 8k+1)
GUIDANCE = {I2VGENXL: 3.0, WAN22_5B: 3.0, LTXV: 1.0}  # LTX-Video's distilled model takes 1.0 only
STEPS = 10  # within every model's range; a step is one UNet or transformer call
FPS = 24  # within every model's range


def _params(key: str, *, seed: int = 7, steps: int = STEPS) -> GenerationParams:
    resolution = next(iter(SPACES[key].resolutions))
    return GenerationParams(
        prompt="the boat sails to the right",
        negative_prompt="blurry, static",
        resolution=resolution,
        frames=FRAMES[key],
        fps=FPS,
        steps=steps,
        guidance=GUIDANCE[key],
        seed=seed,
        model=key,
    )


def _arrays(frames: list[Image.Image]) -> np.ndarray:
    return np.stack([np.asarray(f) for f in frames])


@pytest.fixture(scope="session")
def tiny_backends(tiny_generator: VideoBackend) -> dict[str, VideoBackend]:
    """One tiny backend per model, loaded once (the I2VGen-XL one is conftest's)."""
    loaded: dict[str, VideoBackend] = {I2VGENXL: tiny_generator}
    for key in (WAN22_5B, LTXV):
        loaded[key] = backend_class(key).load("tiny", device="cpu")
    return loaded


@pytest.fixture(params=list(BACKENDS))
def backend(request: pytest.FixtureRequest, tiny_backends: dict[str, VideoBackend]) -> VideoBackend:
    return tiny_backends[request.param]


def test_the_registry_names_each_backend_and_imports_no_torch() -> None:
    assert {key: backend_class(key).key for key in BACKENDS} == {k: k for k in (I2VGENXL, WAN22_5B, LTXV)}
    with pytest.raises(ValueError, match="unknown model 'wan'.*i2vgenxl, wan22-5b, ltxv"):
        backend_class("wan")
    probe = "import sys, generator.models; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_each_backend_runs_its_real_pipeline_class(tiny_backends: dict[str, VideoBackend]) -> None:
    names = {key: type(b.pipeline).__name__ for key, b in tiny_backends.items()}
    assert names == {I2VGENXL: "I2VGenXLPipeline", WAN22_5B: "WanImageToVideoPipeline", LTXV: "LTXConditionPipeline"}
    wan = tiny_backends[WAN22_5B].pipeline
    assert wan.config.expand_timesteps is True and wan.transformer_2 is None and wan.image_encoder is None
    assert wan.vae.config.z_dim == 48 and wan.vae.config.patch_size == 2
    assert (tiny_backends[WAN22_5B].frame_multiple(), tiny_backends[LTXV].frame_multiple()) == (4, 8)
    assert all(b.size_multiple() == 32 for b in (tiny_backends[WAN22_5B], tiny_backends[LTXV]))


def test_mp4_decodes_to_the_frames_asked_for(backend: VideoBackend, sample_image: Image.Image, tmp_path: Path) -> None:
    params = _params(backend.key)
    frames = backend.generate(sample_image, params, width=SIZE, height=SIZE)
    assert len(frames) == params.frames and {f.size for f in frames} == {(SIZE, SIZE)}
    assert _arrays(frames).std() > 1.0  # not a blank video
    out = tmp_path / f"{backend.key}.mp4"
    encode_mp4(frames, out, params.fps)
    info = probe_mp4(out)
    assert (info.frames, info.fps, info.width, info.height) == (params.frames, float(FPS), SIZE, SIZE)


def test_same_seed_same_video_other_seed_other_video(backend: VideoBackend, sample_image: Image.Image) -> None:
    first = _arrays(backend.generate(sample_image, _params(backend.key, seed=3), width=SIZE, height=SIZE))
    torch.rand(100)  # the global RNG moved between jobs
    again = _arrays(backend.generate(sample_image, _params(backend.key, seed=3), width=SIZE, height=SIZE))
    other = _arrays(backend.generate(sample_image, _params(backend.key, seed=4), width=SIZE, height=SIZE))
    assert np.array_equal(first, again)
    assert np.abs(first.astype(int) - other.astype(int)).mean() > 0.5


def test_progress_once_per_step_then_decoding(backend: VideoBackend, sample_image: Image.Image) -> None:
    events: list[object] = []
    backend.generate(
        sample_image,
        _params(backend.key),
        width=SIZE,
        height=SIZE,
        on_step=lambda step, total: events.append((step, total)),
        on_phase=events.append,
    )
    assert events == ["denoising", *[(k, STEPS) for k in range(1, STEPS + 1)], "decoding"]


def test_cancel_at_step_k_stops_before_decoding(
    backend: VideoBackend, sample_image: Image.Image, monkeypatch: pytest.MonkeyPatch
) -> None:
    reference = _arrays(backend.generate(sample_image, _params(backend.key, seed=11), width=SIZE, height=SIZE))
    vae = backend.pipeline.vae
    decodes: list[int] = []
    real_decode = vae.decode

    def counting_decode(*args: Any, **kwargs: Any) -> Any:
        decodes.append(1)
        return real_decode(*args, **kwargs)

    monkeypatch.setattr(vae, "decode", counting_decode)
    seen: list[int] = []
    with pytest.raises(GenerationCancelled) as info:
        backend.generate(
            sample_image,
            _params(backend.key, seed=99),
            width=SIZE,
            height=SIZE,
            on_step=lambda step, total: seen.append(step),
            should_cancel=lambda: len(seen) >= 3,
        )
    assert (info.value.step, info.value.total) == (3, STEPS)
    assert seen == [1, 2, 3] and decodes == []  # no later step ran, nothing was decoded
    monkeypatch.undo()
    after = _arrays(backend.generate(sample_image, _params(backend.key, seed=11), width=SIZE, height=SIZE))
    assert np.array_equal(after, reference)  # the cancelled run left nothing behind


def test_cancel_before_the_first_step(backend: VideoBackend, sample_image: Image.Image) -> None:
    steps: list[int] = []
    with pytest.raises(GenerationCancelled) as info:
        backend.generate(
            sample_image,
            _params(backend.key),
            width=SIZE,
            height=SIZE,
            on_step=lambda s, t: steps.append(s),
            should_cancel=lambda: True,
        )
    assert info.value.step == 0 and steps == []


def test_injected_out_of_memory_then_the_low_memory_retry_succeeds(
    backend: VideoBackend, sample_image: Image.Image
) -> None:
    """The worker's fault hook raises CUDA's out-of-memory error at step 2, once: the first run ends with the
    advice, the retry in low-memory mode (VAE tiling) makes the whole video, the next normal run switches back."""
    faults = FaultPlan(oom_at_step=2, oom_times=1)
    job_id, attempt = 41, 1
    params = _params(backend.key, seed=5)
    steps: list[int] = []

    def on_step(step: int, total: int) -> None:
        steps.append(step)
        faults.on_step(job_id, attempt, step)

    with pytest.raises(GenerationOutOfMemory) as info:
        backend.generate(sample_image, params, width=SIZE, height=SIZE, on_step=on_step)
    assert steps == [1, 2] and isinstance(info.value.__cause__, torch.cuda.OutOfMemoryError)
    assert f"{SIZE}x{SIZE} with {params.frames} frames" in str(info.value)
    steps.clear()
    frames = backend.generate(sample_image, params, width=SIZE, height=SIZE, on_step=on_step, low_memory=True)
    assert len(frames) == params.frames and steps == list(range(1, STEPS + 1))
    assert backend.low_memory and backend.pipeline.vae.use_tiling is True
    backend.generate(sample_image, params, width=SIZE, height=SIZE)
    assert not backend.low_memory and backend.pipeline.vae.use_tiling is False


@pytest.mark.parametrize("key", [WAN22_5B, LTXV])
def test_what_the_model_cannot_make_is_refused_by_name(
    key: str, tiny_backends: dict[str, VideoBackend], sample_image: Image.Image
) -> None:
    backend = tiny_backends[key]
    with pytest.raises(ValueError, match="width must be a multiple of 32 .* for " + re.escape(backend.label)):
        backend.generate(sample_image, _params(key), width=48, height=SIZE)
    other = tiny_backends[I2VGENXL]
    with pytest.raises(ValueError, match=f"parameters are for the model {key}, but this backend runs i2vgenxl"):
        other.generate(sample_image, _params(key), width=SIZE, height=SIZE)
    # a frame count off the model's rule never reaches it (GenerationParams refuses it); the backend checks too
    odd = _params(key)
    object.__setattr__(odd, "frames", FRAMES[key] + 1)
    rule = f"{backend.frame_multiple()}k+1"
    with pytest.raises(ValueError, match=re.escape(f"frames must be {rule} for {backend.label}")):
        backend.generate(sample_image, odd, width=SIZE, height=SIZE)


def test_the_tiny_tokenizer_is_word_level_and_built_in_code() -> None:
    tokenizer = build_tiny_word_tokenizer()
    ids = tokenizer("The boat SAILS, zebra!").input_ids
    tokens = tokenizer.convert_ids_to_tokens(ids)
    assert tokens == ["the", "boat", "sails", ",", UNK_TOKEN, "!", "</s>"]
    padded = tokenizer("a cat", padding="max_length", max_length=8, truncation=True, return_attention_mask=True)
    assert padded.input_ids[3:] == [tokenizer.pad_token_id] * 5 and padded.attention_mask == [1, 1, 1, 0, 0, 0, 0, 0]


@pytest.mark.parametrize("key", [WAN22_5B, LTXV])
def test_a_saved_folder_loads_the_same_model(
    key: str, tiny_backends: dict[str, VideoBackend], sample_image: Image.Image, tmp_path: Path
) -> None:
    tiny_backends[key].pipeline.save_pretrained(tmp_path / key)
    from_folder = backend_class(key).load(str(tmp_path / key), device="cpu")
    assert from_folder.pipeline.config.get("expand_timesteps", None) is (True if key == WAN22_5B else None)
    params = _params(key, seed=21)
    a = _arrays(tiny_backends[key].generate(sample_image, params, width=SIZE, height=SIZE))
    b = _arrays(from_folder.generate(sample_image, params, width=SIZE, height=SIZE))
    assert np.array_equal(a, b)


@pytest.mark.parametrize("key", list(BACKENDS))
def test_unload_releases_the_models(key: str, sample_image: Image.Image) -> None:
    backend = backend_class(key).load("tiny", device="cpu")
    denoiser = weakref.ref(backend.denoiser)
    vae = weakref.ref(backend.pipeline.vae)
    backend.unload()
    gc.collect()
    assert denoiser() is None and vae() is None and not backend.loaded
    with pytest.raises(RuntimeError, match="unloaded"):
        backend.generate(sample_image, _params(key), width=SIZE, height=SIZE)
