"""Frames -> MP4 (H.264, yuv420p, even dimensions, faststart) with PyAV, a byte-budget re-encoder, and a probe.

No torch here. All functions are synchronous (callers on an event loop run them in a thread). Files are written
to a temporary name beside the target and renamed into place, so a reader never sees half a video.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image

VIDEO_CODEC: str = "libx264"
PIXEL_FORMAT: str = "yuv420p"
X264_PRESET: str = "medium"
DEFAULT_CRF: int = 20  # x264 constant rate factor for the first, quality-driven encode
MAX_FPS: int = 120  # frames per second accepted by the encoder
BUDGET_SAFETY: float = 0.9  # aim this fraction of the byte budget when choosing a bitrate
CONTAINER_OVERHEAD_BYTES: int = 2_000  # moov/ftyp bytes reserved before computing a bitrate for a budget
MIN_BITS_PER_PIXEL: float = 0.04  # bits per pixel per frame under which fewer pixels beat more bitrate cuts
BUDGET_SCALES: tuple[float, ...] = (1.0, 0.75, 0.5, 0.35, 0.25)  # size factors tried, largest first
MIN_SIDE_PX: int = 64  # never shrink the short side of a budget encode below this
MAX_BUDGET_ATTEMPTS: int = 10  # encodes tried by encode_to_budget before giving up
MIN_BITRATE_BPS: int = 16_000  # bits per second; lower than this x264 cannot go usefully

Frame = Image.Image | np.ndarray


class VideoTooLarge(RuntimeError):
    """The frames cannot be encoded under the byte budget; the message says what the smallest attempt gave."""

    def __init__(self, message: str, *, max_bytes: int, smallest_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.smallest_bytes = smallest_bytes
        super().__init__(message)


@dataclass(frozen=True)
class EncodeResult:
    """What ``encode_to_budget`` wrote: the path, its size, its dimensions, its bitrate (bit/s) and how many
    encodes it took."""

    path: Path
    size_bytes: int
    width: int
    height: int
    bitrate: int
    attempts: int


@dataclass(frozen=True)
class VideoInfo:
    """What ``probe_mp4`` found by decoding the file."""

    frames: int
    fps: float
    width: int
    height: int
    codec: str
    pix_fmt: str
    duration_s: float
    faststart: bool
    size_bytes: int


def _as_rgb_arrays(frames: Sequence[Frame]) -> list[np.ndarray]:
    if len(frames) == 0:
        raise ValueError("frames is empty: need at least one frame to encode")
    arrays: list[np.ndarray] = []
    for index, frame in enumerate(frames):
        if isinstance(frame, Image.Image):
            array = np.asarray(frame.convert("RGB"))
        else:
            array = np.asarray(frame)
        if array.ndim != 3 or array.shape[2] != 3 or array.dtype != np.uint8:
            raise ValueError(f"frame {index} must be RGB uint8 (H, W, 3), got {array.shape} {array.dtype}")
        if arrays and array.shape != arrays[0].shape:
            raise ValueError(f"frame {index} is {array.shape[1]}x{array.shape[0]}, frame 0 is "
                             f"{arrays[0].shape[1]}x{arrays[0].shape[0]}: all frames must be the same size")
        arrays.append(array)
    return arrays


def _even_size(width: int, height: int, scale: float) -> tuple[int, int]:
    return max(2, int(width * scale) // 2 * 2), max(2, int(height * scale) // 2 * 2)


def _check_fps(fps: int) -> None:
    if isinstance(fps, bool) or not isinstance(fps, int) or not 1 <= fps <= MAX_FPS:
        raise ValueError(f"fps must be a whole number from 1 to {MAX_FPS}, got {fps!r}")


def _encode_arrays(
    arrays: list[np.ndarray], path: Path, fps: int, crf: int, max_bitrate: int | None, scale: float
) -> tuple[int, int, int]:
    """Encode to ``path`` (via a temporary file); return (bytes, width, height)."""
    src_h, src_w = arrays[0].shape[:2]
    width, height = _even_size(src_w, src_h, scale)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.part")
    try:
        with av.open(str(tmp), mode="w", format="mp4", options={"movflags": "+faststart"}) as container:
            stream = container.add_stream(VIDEO_CODEC, rate=fps)
            stream.width = width
            stream.height = height
            stream.pix_fmt = PIXEL_FORMAT
            stream.time_base = Fraction(1, fps)
            options = {"preset": X264_PRESET}
            if max_bitrate is None:
                options["crf"] = str(crf)
            else:
                stream.bit_rate = max_bitrate
                options.update({"maxrate": str(max_bitrate), "bufsize": str(max_bitrate)})
            stream.options = options
            for index, array in enumerate(arrays):
                if (width, height) != (src_w, src_h):
                    array = np.asarray(Image.fromarray(array).resize((width, height), Image.Resampling.LANCZOS))
                frame = av.VideoFrame.from_ndarray(array, format="rgb24")
                frame.pts = index
                frame.time_base = Fraction(1, fps)
                for packet in stream.encode(frame):
                    container.mux(packet)
            for packet in stream.encode(None):
                container.mux(packet)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path.stat().st_size, width, height


def encode_mp4(
    frames: Sequence[Frame],
    path: str | os.PathLike[str],
    fps: int,
    *,
    crf: int = DEFAULT_CRF,
    max_bitrate: int | None = None,
    scale: float = 1.0,
) -> int:
    """Write ``frames`` (PIL images or RGB uint8 arrays, all one size) as an H.264 MP4 at ``fps``.

    yuv420p, dimensions rounded down to even, ``moov`` before ``mdat`` (faststart). With ``max_bitrate`` (bit/s)
    the encode is bitrate-driven (capped by the same VBV rate) instead of CRF-driven. ``scale`` shrinks the
    picture first. Returns the bytes written.
    """
    _check_fps(fps)
    if not 0 < scale <= 1.0:
        raise ValueError(f"scale must be in (0, 1], got {scale!r}")
    if isinstance(crf, bool) or not isinstance(crf, int) or not 0 <= crf <= 51:
        raise ValueError(f"crf must be a whole number from 0 to 51, got {crf!r}")
    if max_bitrate is not None and (not isinstance(max_bitrate, int) or max_bitrate < MIN_BITRATE_BPS):
        raise ValueError(f"max_bitrate must be an int of at least {MIN_BITRATE_BPS} bit/s, got {max_bitrate!r}")
    size, _, _ = _encode_arrays(_as_rgb_arrays(frames), Path(path), fps, crf, max_bitrate, scale)
    return size


def encode_to_budget(frames: Sequence[Frame], path: str | os.PathLike[str], fps: int, max_bytes: int) -> EncodeResult:
    """Encode so the file is at most ``max_bytes``: first at the default quality, then at lower bitrates, then at
    fewer pixels. Raises VideoTooLarge (saying what the smallest attempt gave) when nothing fits."""
    _check_fps(fps)
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes <= 0:
        raise ValueError(f"max_bytes must be a positive int, got {max_bytes!r}")
    arrays = _as_rgb_arrays(frames)
    target = Path(path)
    duration_s = len(arrays) / fps
    src_h, src_w = arrays[0].shape[:2]
    attempts = 0

    size, width, height = _encode_arrays(arrays, target, fps, DEFAULT_CRF, None, 1.0)
    attempts += 1
    if size <= max_bytes:
        return EncodeResult(target, size, width, height, int(size * 8 / duration_s), attempts)
    smallest = (size, width, height, None)

    bitrate = int((max_bytes - CONTAINER_OVERHEAD_BYTES) * 8 * BUDGET_SAFETY / duration_s)
    for index, scale in enumerate(BUDGET_SCALES):
        w, h = _even_size(src_w, src_h, scale)
        if min(w, h) < MIN_SIDE_PX and index > 0:
            break
        last_scale = index == len(BUDGET_SCALES) - 1 or min(_even_size(src_w, src_h, BUDGET_SCALES[index + 1])) \
            < MIN_SIDE_PX
        for _ in range(2):
            if attempts >= MAX_BUDGET_ATTEMPTS:
                break
            starved = bitrate < MIN_BITRATE_BPS or bitrate / (w * h * fps) < MIN_BITS_PER_PIXEL
            if starved and not last_scale:
                break  # too few bits for this many pixels: shrink instead
            rate = max(bitrate, MIN_BITRATE_BPS)
            size, width, height = _encode_arrays(arrays, target, fps, DEFAULT_CRF, rate, scale)
            attempts += 1
            if size <= max_bytes:
                return EncodeResult(target, size, width, height, rate, attempts)
            if size < smallest[0]:
                smallest = (size, width, height, rate)
            if rate == MIN_BITRATE_BPS:
                break
            bitrate = int(rate * max_bytes / size * BUDGET_SAFETY)
    target.unlink(missing_ok=True)
    best_size, best_w, best_h, best_rate = smallest
    rate = f" at {best_rate} bit/s" if best_rate else ""
    raise VideoTooLarge(
        f"cannot fit {len(arrays)} frames at {fps} fps into {max_bytes:,} bytes: the smallest of {attempts} "
        f"encodes was {best_size:,} bytes ({best_w}x{best_h}{rate})",
        max_bytes=max_bytes,
        smallest_bytes=best_size,
    )


def _top_level_boxes(path: Path) -> list[str]:
    boxes: list[str] = []
    with path.open("rb") as fh:
        while True:
            header = fh.read(8)
            if len(header) < 8:
                break
            size, kind = struct.unpack(">I4s", header)
            boxes.append(kind.decode("latin-1"))
            if size == 1:
                size = struct.unpack(">Q", fh.read(8))[0]
                fh.seek(size - 16, os.SEEK_CUR)
            elif size == 0:
                break
            else:
                fh.seek(size - 8, os.SEEK_CUR)
    return boxes


def probe_mp4(path: str | os.PathLike[str]) -> VideoInfo:
    """Decode ``path`` fully and report its frame count, fps, size, codec, pixel format, duration and whether
    ``moov`` precedes ``mdat``."""
    file = Path(path)
    with av.open(str(file)) as container:
        if not container.streams.video:
            raise ValueError(f"{file} has no video stream")
        stream = container.streams.video[0]
        frames = sum(1 for _ in container.decode(stream))
        rate = stream.average_rate or stream.guessed_rate
        codec = stream.codec_context.name
        pix_fmt = stream.codec_context.pix_fmt or ""
        width, height = stream.codec_context.width, stream.codec_context.height
        duration = float(stream.duration * stream.time_base) if stream.duration is not None else 0.0
    boxes = _top_level_boxes(file)
    faststart = "moov" in boxes and "mdat" in boxes and boxes.index("moov") < boxes.index("mdat")
    return VideoInfo(
        frames=frames,
        fps=float(rate) if rate else 0.0,
        width=width,
        height=height,
        codec=codec,
        pix_fmt=pix_fmt,
        duration_s=duration,
        faststart=faststart,
        size_bytes=file.stat().st_size,
    )
