"""Shared fixtures for the generator tests: one tiny I2VGen-XL kept loaded for the whole session."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

SAMPLE_IMAGE = Path(__file__).resolve().parents[2] / "generator" / "assets" / "sample.png"


TORCH_THREADS = 1  # the CI machine's 2 cores are shared: one thread avoids OpenMP oversubscription stalls (~20x)


@pytest.fixture(scope="session")
def tiny_generator():
    """The tiny, offline I2VGen-XL backend, loaded once (imports torch and diffusers), run on one CPU thread."""
    import torch

    from generator.models.i2vgenxl import I2VGenXLBackend

    previous = torch.get_num_threads()
    torch.set_num_threads(TORCH_THREADS)
    yield I2VGenXLBackend.load("tiny", device="cpu")
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def sample_image() -> Image.Image:
    """The README's sample image as an RGB PIL image."""
    from generator.images import load_image

    return load_image(SAMPLE_IMAGE.read_bytes())
