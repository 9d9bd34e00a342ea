"""generator.video: MP4 properties, byte budgets, refusals, and what happens when ffmpeg fails or stalls."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest
from PIL import Image

import generator.video as video
from generator.video import VideoEncodeError, VideoTooLarge, encode_mp4, encode_to_budget, probe_mp4

X264_SEI = re.compile(rb"x264 - core \d+[^\0]*? - options: ([^\0]+)")  # libx264's own text, in the first frame


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
    frames = [np.full((64, 64, 3), (200, 40, 90), dtype=np.uint8)] * 8
    out = tmp_path / "solid.mp4"
    encode_mp4(frames, out, 8)
    reader = imageio_ffmpeg.read_frames(str(out))
    meta = next(reader)
    assert meta["size"] == (64, 64)
    decoded = [np.frombuffer(f, np.uint8).reshape(64, 64, 3) for f in reader]
    assert len(decoded) == 8
    assert np.abs(decoded[3].astype(int) - (200, 40, 90)).max() <= 6


def _x264_options(path: Path) -> dict[str, str]:
    match = X264_SEI.search(path.read_bytes())
    assert match, f"no libx264 SEI in {path}"
    return dict(item.split("=", 1) for item in match.group(1).decode("ascii").split() if "=" in item)


def test_the_encoder_was_libx264_writing_yuv420p(tmp_path: Path) -> None:
    """Read back from the files: the decoder sees H.264 in yuv420p (from the SPS), the track names libx264 as its
    encoder, and libx264's own SEI text in the stream carries the rate control each mode asked for."""
    frames = _noise_frames(8, 128, 96)
    crf_out, rate_out = tmp_path / "crf.mp4", tmp_path / "rate.mp4"
    encode_mp4(frames, crf_out, 8)
    encode_mp4(frames, rate_out, 8, max_bitrate=200_000)
    for out in (crf_out, rate_out):
        info = probe_mp4(out)
        assert (info.codec, info.pix_fmt) == ("h264", "yuv420p"), info
        assert info.encoder.split()[-1] == "libx264", info.encoder
    crf = _x264_options(crf_out)
    assert (crf["rc"], crf["crf"]) == ("crf", f"{video.DEFAULT_CRF}.0"), crf
    rate = _x264_options(rate_out)
    assert rate["rc"] == "cbr" and rate["bitrate"] == rate["vbv_maxrate"] == rate["vbv_bufsize"] == "200", rate


def test_probe_tells_a_file_without_faststart(tmp_path: Path) -> None:
    fast = tmp_path / "fast.mp4"
    encode_mp4(_noise_frames(4, 64, 64), fast, 8)
    slow = tmp_path / "slow.mp4"
    subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-i", str(fast), "-c", "copy", str(slow)], check=True
    )
    assert probe_mp4(fast).faststart and not probe_mp4(slow).faststart
    assert probe_mp4(slow).frames == 4


def test_probe_refuses_what_is_not_a_video(tmp_path: Path) -> None:
    text = tmp_path / "notes.mp4"
    text.write_text("not a video at all\n")
    with pytest.raises(ValueError, match="not a readable video"):
        probe_mp4(text)
    sound = tmp_path / "sound.mp4"
    subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-f", "lavfi", "-i", "sine=d=1", "-c:a", "aac", str(sound)],
        check=True,
    )
    with pytest.raises(ValueError, match="has no video stream"):
        probe_mp4(sound)
    with pytest.raises(FileNotFoundError):
        probe_mp4(tmp_path / "missing.mp4")


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


def _fake_ffmpeg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, body: str) -> Path:
    """Point imageio-ffmpeg at a script in place of ffmpeg (its IMAGEIO_FFMPEG_EXE setting); the script writes its
    pid to the returned path."""
    script = tmp_path / "ffmpeg"
    pid_file = tmp_path / "ffmpeg.pid"
    script.write_text(f"#!/bin/sh\necho $$ > {pid_file}\n{body}\n")
    script.chmod(0o755)
    monkeypatch.setenv("IMAGEIO_FFMPEG_EXE", str(script))
    return pid_file


def _assert_gone(pid_file: Path) -> None:
    with pytest.raises(ProcessLookupError):
        os.kill(int(pid_file.read_text()), 0)


def test_an_ffmpeg_that_dies_mid_encode_gives_its_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pid_file = _fake_ffmpeg(tmp_path, monkeypatch, "head -c 1000 > /dev/null\necho 'x264 crashed here' >&2\nexit 3")
    out = tmp_path / "out" / "dead.mp4"
    with pytest.raises(VideoEncodeError, match=r"failed encoding dead.mp4 \(exit status 3\): x264 crashed here"):
        encode_mp4(_noise_frames(8, 256, 256), out, 8)
    with pytest.raises(VideoEncodeError, match="exit status 3"):  # not VideoTooLarge: the budget never ran
        encode_to_budget(_noise_frames(8, 256, 256), out, 8, 10_000)
    assert list((tmp_path / "out").iterdir()) == []  # neither the video nor a temporary file
    _assert_gone(pid_file)


def test_an_ffmpeg_that_stalls_is_stopped_at_the_deadline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pid_file = _fake_ffmpeg(tmp_path, monkeypatch, "exec sleep 600")  # never reads its stdin, never exits
    monkeypatch.setattr(video, "ENCODE_TIMEOUT_BASE_S", 1.0)
    monkeypatch.setattr(video, "ENCODE_TIMEOUT_S_PER_MEGAPIXEL", 0.0)
    out = tmp_path / "stalled.mp4"
    with pytest.raises(VideoEncodeError, match="did not finish encoding stalled.mp4 within 1 s"):
        encode_mp4(_noise_frames(8, 256, 256), out, 8)  # 1.5 MB: far more than a pipe holds
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ffmpeg", "ffmpeg.pid"]
    _assert_gone(pid_file)


def test_an_ffmpeg_that_writes_nothing_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_ffmpeg(tmp_path, monkeypatch, "cat > /dev/null\nexit 0")
    out = tmp_path / "empty.mp4"
    with pytest.raises(VideoEncodeError, match="without writing empty.mp4"):
        encode_mp4(_noise_frames(2, 64, 64), out, 8)
    assert not out.exists() and not list(tmp_path.glob(".*part"))


def test_a_missing_ffmpeg_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMAGEIO_FFMPEG_EXE", str(tmp_path / "no-ffmpeg-here"))
    out = tmp_path / "none.mp4"
    with pytest.raises(VideoEncodeError, match="cannot start ffmpeg .*no-ffmpeg-here"):
        encode_mp4(_noise_frames(2, 64, 64), out, 8)
    assert not out.exists() and not list(tmp_path.glob(".*part"))


def test_the_parameters_travel_in_the_mp4_and_ffmpeg_i_lists_them(tmp_path: Path) -> None:
    from generator.params import resolve_params

    params = resolve_params("the sea moves", preset="quick", seed=42, negative_prompt="blurry")
    tags = video.parameter_tags(params, model="ali-vilab/i2vgen-xl", width=832, height=512, job_id=7)
    out = tmp_path / "tagged.mp4"
    encode_to_budget(_noise_frames(8, 64, 48), out, 8, 10 * 2**20, metadata=tags)
    listing = subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-i", str(out)], capture_output=True, text=True, check=False
    ).stderr  # no output file: ffmpeg lists the input and exits 1
    for line in (
        "i2v_prompt      : the sea moves",
        "i2v_negative_prompt: blurry",
        "i2v_seed        : 42",
        "i2v_model       : ali-vilab/i2vgen-xl",
        "i2v_resolution  : 512p (832x512)",
        "i2v_frames      : 8",
        "i2v_fps         : 8",
        "i2v_steps       : 30",
        "i2v_guidance    : 9.0",
        "i2v_preset      : quick",
        "i2v_job         : 7",
    ):
        assert line in listing, listing
    assert video.container_tags(out) == {
        "major_brand": "isom",
        "minor_version": "512",
        "compatible_brands": "isomiso2avc1mp41",
        "encoder": video.container_tags(out)["encoder"],
        **tags,
    }
    assert tags["comment"] == (
        "i2v-bot job 7: quick preset: I2VGen-XL, 512p, 8 frames, 8 fps, 30 steps, guidance 9.0, seed 42, "
        "832x512, model ali-vilab/i2vgen-xl; prompt: the sea moves"
    )
    assert probe_mp4(out).faststart


def test_hostile_metadata_values_stay_one_bounded_line_and_bad_keys_are_refused(tmp_path: Path) -> None:
    hostile = '-y\n"; rm -rf / $(touch pwned) `x`\x00\x1b[31m=\r\nend ' + "é🌊" * 2000
    out = tmp_path / "hostile.mp4"
    encode_mp4(_noise_frames(4, 32, 32), out, 4, metadata={"i2v_prompt": hostile, "comment": "=x=y"})
    tags = video.container_tags(out)
    expected = video._CONTROL.sub(" ", hostile).strip()[: video.METADATA_VALUE_MAX_CHARS]
    assert tags["i2v_prompt"] == expected and "\n" not in tags["i2v_prompt"]
    assert len(tags["i2v_prompt"]) == video.METADATA_VALUE_MAX_CHARS
    assert tags["comment"] == "=x=y"
    assert not (tmp_path / "pwned").exists() and not Path("pwned").exists()
    for key in ("Comment", "i2v prompt", "a=b", "x" * 41, ""):
        with pytest.raises(ValueError, match="metadata key"):
            encode_mp4(_noise_frames(2, 32, 32), tmp_path / "no.mp4", 4, metadata={key: "v"})
    assert not (tmp_path / "no.mp4").exists()
