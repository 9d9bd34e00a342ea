"""The optimised paths compute the same function as the plain pipeline (tiny model, CPU).

Each PerformanceOptions setting that can run on a CPU is loaded on the same tiny weights and run on the same image,
prompt and seed as the plain path; the relative error ||out - ref|| / ||ref|| of the final latents (or, for the
decode-only settings, of the decoded frames as floats before rounding) must stay within the setting's tolerance:
about 1e-2 for bf16 (see BF16_TOLERANCE), 1e-5 for settings that only reorder the same fp32 arithmetic. The CUDA-only
settings are refused on the CPU with an error naming them. torch.compile takes ~90 s to compile the tiny UNet on
this 2-core machine, over the 60 s budget of this file, so its check runs only with I2V_TEST_COMPILE=1.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from generator.models.i2vgenxl import I2VGenXLBackend
from generator.params import GenerationParams, resolve_params
from generator.performance import PerformanceOptionError, PerformanceOptions

TORCH_THREADS = 1  # the shared 2-core machine: one thread, as in conftest.py
WIDTH, HEIGHT = 128, 64  # px; small, multiples of 64
TILED_WIDTH = 576  # px; wider than the tiny VAE's 512-px tile, so tiling really splits the frame
EXACT_TOLERANCE = 1e-5  # same fp32 arithmetic in another order or layout
# bf16 keeps 8 mantissa bits (unit roundoff 2**-9 ~ 2e-3); classifier-free guidance at scale 9 multiplies the
# difference of two noisy predictions by up to 9, and the steps accumulate it. Measured on these weights: 1.1e-2 at
# guidance 1, 1.5e-2 at guidance 9 (10 steps), 1.7e-2 at guidance 9 (30 steps).
BF16_TOLERANCE = 2.5e-2
# VAE tiling blends overlapping tiles (a quarter tile of overlap): a small, deliberate change of the frames.
TILING_TOLERANCE = 5e-2
COMPILE_ENV = "I2V_TEST_COMPILE"


def _rel_error(out: np.ndarray, ref: np.ndarray) -> float:
    assert out.shape == ref.shape, (out.shape, ref.shape)
    assert np.isfinite(out).all(), "the optimised path produced NaN or infinite values"
    return float(np.linalg.norm(out.astype(np.float64) - ref) / np.linalg.norm(ref.astype(np.float64)))


@pytest.fixture(scope="module", autouse=True)
def _one_thread() -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(TORCH_THREADS)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def params() -> GenerationParams:
    return resolve_params("the boat sails to the right", frames=8, steps=10, fps=8, seed=4321, guidance=9.0)


@pytest.fixture(scope="module")
def reference() -> I2VGenXLBackend:
    return I2VGenXLBackend.load("tiny", device="cpu", options=PerformanceOptions())


@pytest.fixture(scope="module")
def reference_latents(reference: I2VGenXLBackend, sample_image: Image.Image, params: GenerationParams) -> np.ndarray:
    latents = reference.generate_array(sample_image, params, width=WIDTH, height=HEIGHT, output="latents")
    assert latents.shape == (1, 4, 8, HEIGHT // 16, WIDTH // 16) and np.abs(latents).mean() > 0.1
    return latents


def _latents(options: PerformanceOptions, image: Image.Image, params: GenerationParams) -> tuple[Any, np.ndarray]:
    generator = I2VGenXLBackend.load("tiny", device="cpu", options=options)
    return generator, generator.generate_array(image, params, width=WIDTH, height=HEIGHT, output="latents")


def test_bf16_latents_within_bf16_tolerance(
    sample_image: Image.Image, params: GenerationParams, reference_latents: np.ndarray
) -> None:
    generator, latents = _latents(PerformanceOptions(dtype="bf16"), sample_image, params)
    assert {p.dtype for p in generator.pipeline.unet.parameters()} == {torch.bfloat16}
    assert generator.dtype == torch.bfloat16
    error = _rel_error(latents, reference_latents)
    print(f"bf16 latents relative error {error:.3e}")
    assert 0 < error < BF16_TOLERANCE  # > 0: the bf16 path really ran in bf16


def test_channels_last_latents_exact(
    sample_image: Image.Image, params: GenerationParams, reference_latents: np.ndarray
) -> None:
    generator, latents = _latents(PerformanceOptions(channels_last=True), sample_image, params)
    convs = [m for m in generator.pipeline.unet.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(m.weight.is_contiguous(memory_format=torch.channels_last) for m in convs)
    assert not all(m.weight.is_contiguous() for m in convs)
    error = _rel_error(latents, reference_latents)
    print(f"channels_last latents relative error {error:.3e}")
    assert error < EXACT_TOLERANCE


def test_fused_qkv_latents_exact(
    sample_image: Image.Image, params: GenerationParams, reference_latents: np.ndarray
) -> None:
    generator, latents = _latents(PerformanceOptions(fuse_qkv=True), sample_image, params)
    processors = {type(p).__name__ for p in generator.pipeline.unet.attn_processors.values()}
    assert processors == {"FusedAttnProcessor2_0"}
    assert any(getattr(m, "fused_projections", False) for m in generator.pipeline.unet.modules())
    error = _rel_error(latents, reference_latents)
    print(f"fused QKV latents relative error {error:.3e}")
    assert error < EXACT_TOLERANCE


def test_math_sdpa_backend_is_used_in_the_unet_and_latents_exact(
    sample_image: Image.Image, params: GenerationParams, reference_latents: np.ndarray
) -> None:
    generator = I2VGenXLBackend.load("tiny", device="cpu", options=PerformanceOptions(sdpa_backend="math"))
    seen: list[tuple[bool, bool]] = []
    attention = next(m for name, m in generator.pipeline.unet.named_modules() if name.endswith("attn1"))
    hook = attention.register_forward_hook(
        lambda *_: seen.append((torch.backends.cuda.math_sdp_enabled(), torch.backends.cuda.flash_sdp_enabled()))
    )
    try:
        latents = generator.generate_array(sample_image, params, width=WIDTH, height=HEIGHT, output="latents")
    finally:
        hook.remove()
    assert seen and set(seen) == {(True, False)}  # only the math kernel was allowed inside the UNet
    assert torch.backends.cuda.flash_sdp_enabled()  # and the restriction ended with the UNet call
    error = _rel_error(latents, reference_latents)
    print(f"math SDPA latents relative error {error:.3e}")
    assert error < EXACT_TOLERANCE


def test_decode_chunk_size_changes_no_frame(
    reference: I2VGenXLBackend, sample_image: Image.Image, params: GenerationParams
) -> None:
    ref = reference.generate_array(sample_image, params, width=WIDTH, height=HEIGHT, output="frames")
    chunked = I2VGenXLBackend.load("tiny", device="cpu", options=PerformanceOptions(decode_chunk_size=3))
    assert (reference.decode_chunk_size(), chunked.decode_chunk_size()) == (16, 3)
    frames = chunked.generate_array(sample_image, params, width=WIDTH, height=HEIGHT, output="frames")
    assert frames.shape == (8, HEIGHT, WIDTH, 3)
    error = _rel_error(frames, ref)
    print(f"decode_chunk_size=3 frames relative error {error:.3e}")
    assert error < EXACT_TOLERANCE


def test_vae_tiling_changes_frames_only_slightly(
    reference: I2VGenXLBackend, sample_image: Image.Image, params: GenerationParams
) -> None:
    ref = reference.generate_array(sample_image, params, width=TILED_WIDTH, height=HEIGHT, output="frames")
    tiled = I2VGenXLBackend.load("tiny", device="cpu", options=PerformanceOptions(vae_tiling=True))
    assert tiled.pipeline.vae.use_tiling and not reference.pipeline.vae.use_tiling
    frames = tiled.generate_array(sample_image, params, width=TILED_WIDTH, height=HEIGHT, output="frames")
    error = _rel_error(frames, ref)
    print(f"VAE tiling frames relative error {error:.3e}")
    assert 0 < error < TILING_TOLERANCE  # > 0: the frame was really decoded in blended tiles
    # the low-memory retry turns tiling on and off again; a generator asked for tiling keeps it afterwards
    tiled.generate(sample_image, params, width=WIDTH, height=HEIGHT, low_memory=True)
    tiled.generate(sample_image, params, width=WIDTH, height=HEIGHT)
    assert tiled.pipeline.vae.use_tiling


@pytest.mark.skipif(
    os.environ.get(COMPILE_ENV) != "1",
    reason=f"torch.compile of the tiny UNet takes ~90 s on 2 CPU cores; set {COMPILE_ENV}=1",
)
def test_compiled_unet_latents_exact(
    sample_image: Image.Image, params: GenerationParams, reference_latents: np.ndarray
) -> None:
    started = time.perf_counter()
    options = PerformanceOptions(compile_unet=True, warmup_shapes=((WIDTH, HEIGHT, params.frames),))
    generator = I2VGenXLBackend.load("tiny", device="cpu", options=options)
    assert generator.warmup_s > 0
    latents = generator.generate_array(sample_image, params, width=WIDTH, height=HEIGHT, output="latents")
    error = _rel_error(latents, reference_latents)
    print(f"torch.compile latents relative error {error:.3e}; load + compile {time.perf_counter() - started:.0f} s")
    assert error < EXACT_TOLERANCE


@pytest.mark.parametrize(
    ("options", "setting"),
    [
        (PerformanceOptions(sdpa_backend="flash"), "I2V_SDPA_BACKEND=flash"),
        (PerformanceOptions(sdpa_backend="efficient"), "I2V_SDPA_BACKEND=efficient"),
        (PerformanceOptions(cpu_offload=True), "I2V_CPU_OFFLOAD=1"),
    ],
)
def test_cuda_only_settings_are_refused_on_the_cpu(options: PerformanceOptions, setting: str) -> None:
    with pytest.raises(PerformanceOptionError, match=setting):
        I2VGenXLBackend.load("tiny", device="cpu", options=options)


def test_options_from_env_defaults_and_values() -> None:
    assert PerformanceOptions.from_env({}) == PerformanceOptions()
    options = PerformanceOptions.from_env(
        {
            "I2V_DTYPE": "bf16",
            "I2V_SDPA_BACKEND": "flash",
            "I2V_COMPILE": "1",
            "I2V_COMPILE_MODE": "max-autotune",
            "I2V_COMPILE_WARMUP": "832x512x16, 1280x768x24",
            "I2V_CHANNELS_LAST": "1",
            "I2V_FUSE_QKV": "true",
            "I2V_DECODE_CHUNK_SIZE": "4",
            "I2V_VAE_TILING": "0",
            "I2V_CPU_OFFLOAD": "",
        }
    )
    assert options == PerformanceOptions(
        dtype="bf16",
        sdpa_backend="flash",
        compile_unet=True,
        compile_mode="max-autotune",
        warmup_shapes=((832, 512, 16), (1280, 768, 24)),
        channels_last=True,
        fuse_qkv=True,
        decode_chunk_size=4,
    )
    assert PerformanceOptions.from_env({"I2V_COMPILE_WARMUP": "none"}).warmup_shapes == ()
    with pytest.raises(PerformanceOptionError, match="I2V_SDPA_BACKEND=flash needs fp16 or bf16"):
        PerformanceOptions(sdpa_backend="flash", dtype="fp32").check_device(torch.device("cuda"))


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"I2V_DTYPE": "fp8"}, "I2V_DTYPE"),
        ({"I2V_SDPA_BACKEND": "cudnn"}, "I2V_SDPA_BACKEND"),
        ({"I2V_COMPILE": "maybe"}, "I2V_COMPILE"),
        ({"I2V_DECODE_CHUNK_SIZE": "0"}, "I2V_DECODE_CHUNK_SIZE"),
        ({"I2V_DECODE_CHUNK_SIZE": "four"}, "I2V_DECODE_CHUNK_SIZE"),
        ({"I2V_COMPILE_WARMUP": "832x512"}, "I2V_COMPILE_WARMUP"),
        ({"I2V_FUSE_QKV": "2"}, "I2V_FUSE_QKV"),
    ],
)
def test_bad_settings_name_the_variable(env: dict[str, str], named: str) -> None:
    with pytest.raises(PerformanceOptionError, match=named):
        PerformanceOptions.from_env(env)


def test_load_reads_the_environment_when_no_options_are_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("I2V_DECODE_CHUNK_SIZE", "5")
    monkeypatch.setenv("I2V_CHANNELS_LAST", "1")
    generator = I2VGenXLBackend.load("tiny", device="cpu")
    assert generator.options == PerformanceOptions(decode_chunk_size=5, channels_last=True)
    assert generator.decode_chunk_size() == 5 and generator.decode_chunk_size(low_memory=True) == 1
