"""generator.video: MP4 properties, byte budgets, refusals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from generator.video import VideoTooLarge, encode_mp4, encode_to_budget, probe_mp4


def _noise_frames(count: int, width: int, height: int, seed: int = 0) -> list[np.ndarray]:
    """Independent noise frames: the hardest content there is for a video encoder."""
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (height, width, 3), dtype=np.uint8) for _ in range(count)]


def test_mp4_has_the_requested_frames_fps_and_even_size(tmp_path: Path) -> None:
    frames = [Image.new("RGB", (101, 67), (i * 20, 100, 200 - i * 20)) for i in range(10)]
    out = tmp_path / "sub" / "odd.mp4"
    size = encode_mp4(frames, out, 5)
    info = probe_mp4(out)
    assert size == out.stat().st_size > 0
    assert (info.frames, info.fps, info.width, info.height) == (10, 5.0, 100, 66)
    assert (info.codec, info.pix_fmt, info.faststart) == ("h264", "yuv420p", True)
    assert info.duration_s == pytest.approx(2.0, abs=0.01)
    assert not list(tmp_path.glob("sub/.*part"))  # no temporary file left behind


def test_colours_survive_the_round_trip(tmp_path: Path) -> None:
    import av

    frames = [np.full((64, 64, 3), (200, 40, 90), dtype=np.uint8)] * 8
    out = tmp_path / "solid.mp4"
    encode_mp4(frames, out, 8)
    with av.open(str(out)) as container:
        decoded = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(decoded) == 8
    assert np.abs(decoded[3].astype(int) - (200, 40, 90)).max() <= 6


def test_scale_shrinks_the_picture(tmp_path: Path) -> None:
    out = tmp_path / "half.mp4"
    encode_mp4(_noise_frames(4, 256, 128), out, 8, scale=0.5)
    info = probe_mp4(out)
    assert (info.width, info.height, info.frames) == (128, 64, 4)


def test_budget_encoder_fits_a_512p_16_frame_clip_under_300kb(tmp_path: Path) -> None:
    frames = _noise_frames(16, 512, 512)
    plain = encode_mp4(frames, tmp_path / "plain.mp4", 8)
    assert plain > 300_000  # so the budget really has to do something
    result = encode_to_budget(frames, tmp_path / "budget.mp4", 8, 300_000)
    info = probe_mp4(result.path)
    assert result.size_bytes == result.path.stat().st_size <= 300_000
    assert result.attempts > 1
    assert (info.frames, info.fps) == (16, 8.0)
    assert (info.width, info.height) == (result.width, result.height)
    assert info.faststart and info.pix_fmt == "yuv420p"


def test_budget_encoder_keeps_the_first_encode_when_it_fits(tmp_path: Path) -> None:
    frames = [np.full((128, 128, 3), 90, dtype=np.uint8)] * 8
    result = encode_to_budget(frames, tmp_path / "small.mp4", 8, 1_000_000)
    assert result.attempts == 1 and (result.width, result.height) == (128, 128)


def test_budget_encoder_shrinks_pixels_when_bitrate_is_not_enough(tmp_path: Path) -> None:
    result = encode_to_budget(_noise_frames(16, 512, 512), tmp_path / "tight.mp4", 8, 25_000)
    assert result.size_bytes <= 25_000
    assert result.width < 512 and result.width % 2 == 0
    assert probe_mp4(result.path).frames == 16


def test_impossible_budget_is_reported(tmp_path: Path) -> None:
    out = tmp_path / "never.mp4"
    with pytest.raises(VideoTooLarge) as info:
        encode_to_budget(_noise_frames(16, 512, 512), out, 8, 2_000)
    message = str(info.value)
    assert "cannot fit 16 frames" in message and "2,000 bytes" in message
    assert info.value.smallest_bytes > 2_000
    assert not out.exists()


@pytest.mark.parametrize(
    ("frames", "fps", "fragment"),
    [
        ([], 8, "frames is empty"),
        ([np.zeros((8, 8, 3), np.uint8), np.zeros((8, 10, 3), np.uint8)], 8, "same size"),
        ([np.zeros((8, 8), np.uint8)], 8, "RGB uint8"),
        ([np.zeros((8, 8, 3), np.uint8)], 0, "fps"),
    ],
)
def test_bad_encoder_input_is_refused(tmp_path: Path, frames: list, fps: int, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        encode_mp4(frames, tmp_path / "x.mp4", fps)
