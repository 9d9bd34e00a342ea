"""Frames -> MP4 (H.264, yuv420p, even dimensions, faststart) with the ffmpeg that imageio-ffmpeg ships, a
byte-budget re-encoder, and a probe.

No torch here. All functions are synchronous (callers on an event loop run them in a thread). Files are written
to a temporary name beside the target and renamed into place, so a reader never sees half a video.

imageio-ffmpeg provides the binary (``get_ffmpeg_exe``: its wheel's ffmpeg, built with libx264, or the one named by
``IMAGEIO_FFMPEG_EXE``). The encoder pipes raw RGB frames to that binary's stdin itself rather than through
``imageio_ffmpeg.write_frames``: write_frames sends ffmpeg's stderr to ours and never reports its exit status, so a
failed encode would go unnoticed, and it keeps the process to itself, so nothing could stop an ffmpeg that stalls.
Here each encode has a deadline (its ffmpeg is killed past it), a non-zero exit raises ``VideoEncodeError`` with
ffmpeg's own error lines, and the temporary file is removed whatever happens.

Every MP4 carries the parameters that made it (:func:`parameter_tags`) as container metadata: ``comment`` (one line
that any player's info panel shows) and one ``i2v_*`` key per parameter. The MP4 muxer writes keys of its own
choosing only with ``-movflags use_metadata_tags``; ``ffmpeg -i`` lists them. Values are
passed as single arguments (no shell), with control characters replaced and lengths capped.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import imageio_ffmpeg
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
ENCODE_TIMEOUT_BASE_S: float = 60.0  # seconds any one encode may take before its ffmpeg is killed...
ENCODE_TIMEOUT_S_PER_MEGAPIXEL: float = 3.0  # ...plus this per million input pixels (all frames): the slowest
#   encode measured, pure noise on 2 crowded cores, took 1.3 s per megapixel; a clip of a real scene about 0.15 s
PROBE_TIMEOUT_S: float = 120.0  # seconds probe_mp4's decode may take
ERROR_TAIL_LINES: int = 8  # lines of ffmpeg's stderr quoted in an error message

_ROOT_BOX = re.compile(r"type:'(\w{4})' parent:'root' sz: (\d+) (\d+)")  # the mov demuxer's trace of each top box
_FIELD_SPLIT = re.compile(r",\s*(?![^()]*\))")  # commas of a stream line that are not inside parentheses

Frame = Image.Image | np.ndarray

if TYPE_CHECKING:
    from generator.params import GenerationParams

METADATA_VALUE_MAX_CHARS: int = 1000  # characters kept of one metadata value (prompts are at most 500)
METADATA_KEY = re.compile(r"[a-z][a-z0-9_]{0,39}")  # the keys this module writes; anything else is refused
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")  # NUL, newlines, escapes: one space each run


class VideoEncodeError(RuntimeError):
    """ffmpeg failed, produced nothing, or did not finish in time; the message says which, with its error lines."""


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
    """What ``probe_mp4`` found by decoding the file. ``codec`` and ``pix_fmt`` are what the decoder read from the
    stream (``h264``, ``yuv420p``); ``encoder`` is the encoder the file names for its video track
    (``Lavc... libx264``), empty when the file names none."""

    frames: int
    fps: float
    width: int
    height: int
    codec: str
    pix_fmt: str
    duration_s: float
    faststart: bool
    size_bytes: int
    encoder: str = ""


def _as_rgb_arrays(frames: Sequence[Frame]) -> list[np.ndarray]:
    if len(frames) == 0:
        raise ValueError("frames is empty: need at least one frame to encode")
    arrays: list[np.ndarray] = []
    for index, frame in enumerate(frames):
        array = np.asarray(frame.convert("RGB")) if isinstance(frame, Image.Image) else np.asarray(frame)
        if array.ndim != 3 or array.shape[2] != 3 or array.dtype != np.uint8:
            raise ValueError(f"frame {index} must be RGB uint8 (H, W, 3), got {array.shape} {array.dtype}")
        if arrays and array.shape != arrays[0].shape:
            raise ValueError(
                f"frame {index} is {array.shape[1]}x{array.shape[0]}, frame 0 is "
                f"{arrays[0].shape[1]}x{arrays[0].shape[0]}: all frames must be the same size"
            )
        arrays.append(np.ascontiguousarray(array))
    return arrays


def _even_size(width: int, height: int, scale: float) -> tuple[int, int]:
    return max(2, int(width * scale) // 2 * 2), max(2, int(height * scale) // 2 * 2)


def _check_fps(fps: int) -> None:
    if isinstance(fps, bool) or not isinstance(fps, int) or not 1 <= fps <= MAX_FPS:
        raise ValueError(f"fps must be a whole number from 1 to {MAX_FPS}, got {fps!r}")


def _ffmpeg_tail(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return "; ".join(lines[-ERROR_TAIL_LINES:]) or "no error output"


def parameter_tags(
    params: GenerationParams, *, model: str, width: int, height: int, job_id: int | None = None
) -> dict[str, str]:
    """The metadata an MP4 carries about how it was made: ``comment`` (one line) and ``i2v_*`` keys (the README's
    table). ``width``/``height`` are the generated size (a budget encode may shrink the file's picture)."""
    summary = (
        f"i2v-bot{f' job {job_id}' if job_id is not None else ''}: {params.describe()}, "
        f"{width}x{height}, model {model}; prompt: {params.prompt}"
    )
    tags = {
        "comment": summary,
        "i2v_prompt": params.prompt,
        "i2v_negative_prompt": params.negative_prompt,
        "i2v_seed": str(params.seed),
        "i2v_model": model,
        "i2v_resolution": f"{params.resolution} ({width}x{height})",
        "i2v_frames": str(params.frames),
        "i2v_fps": str(params.fps),
        "i2v_steps": str(params.steps),
        "i2v_guidance": str(params.guidance),
    }
    if params.preset:
        tags["i2v_preset"] = params.preset
    if job_id is not None:
        tags["i2v_job"] = str(job_id)
    return tags


def _metadata_arguments(metadata: Mapping[str, str] | None) -> list[str]:
    """``-metadata key=value`` pairs for ffmpeg's argument list, each value one line of bounded length."""
    arguments: list[str] = []
    for key, value in (metadata or {}).items():
        if not METADATA_KEY.fullmatch(key):
            raise ValueError(f"metadata key {key!r} is not allowed (lower-case letters, digits and _)")
        text = _CONTROL.sub(" ", str(value)).strip()[:METADATA_VALUE_MAX_CHARS]
        arguments += ["-metadata", f"{key}={text}"]
    return arguments


def _encode_command(
    src_w: int,
    src_h: int,
    width: int,
    height: int,
    fps: int,
    crf: int,
    max_bitrate: int | None,
    out: Path,
    metadata: Mapping[str, str] | None = None,
) -> list[str]:
    """ffmpeg's arguments: raw RGB frames on stdin -> an H.264 yuv420p MP4 with ``moov`` first and ``metadata``."""
    command = [
        imageio_ffmpeg.get_ffmpeg_exe(),
        "-hide_banner",
        "-nostats",
        "-loglevel",
        "error",
        "-y",
        "-f",
        "rawvideo",
        "-pix_fmt",
        "rgb24",
        "-video_size",
        f"{src_w}x{src_h}",
        "-framerate",
        str(fps),
        "-i",
        "pipe:0",
        "-an",
    ]
    if (width, height) != (src_w, src_h):
        command += ["-vf", f"scale={width}:{height}:flags=lanczos"]
    command += ["-c:v", VIDEO_CODEC, "-pix_fmt", PIXEL_FORMAT, "-preset", X264_PRESET]
    if max_bitrate is None:
        command += ["-crf", str(crf)]
    else:
        rate = str(max_bitrate)
        command += ["-b:v", rate, "-maxrate", rate, "-bufsize", rate]
    flags = "+faststart+use_metadata_tags" if metadata else "+faststart"
    return command + _metadata_arguments(metadata) + ["-movflags", flags, "-f", "mp4", str(out)]


def _run_encoder(command: list[str], arrays: list[np.ndarray], timeout_s: float, name: str) -> None:
    """Pipe ``arrays`` to ffmpeg's stdin; raise VideoEncodeError unless it exits 0 within ``timeout_s``."""
    with tempfile.TemporaryFile() as stderr:
        # own session: a Ctrl-C meant for the worker does not cut its encode short (it finishes or gives back)
        try:
            proc = subprocess.Popen(
                command, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True
            )
        except OSError as exc:  # a missing or non-executable IMAGEIO_FFMPEG_EXE
            raise VideoEncodeError(f"cannot start ffmpeg ({command[0]}): {exc.strerror or exc}") from exc
        killed = threading.Event()

        def kill() -> None:
            if proc.poll() is None:
                killed.set()
                proc.kill()

        watchdog = threading.Timer(timeout_s, kill)
        watchdog.daemon = True
        watchdog.start()
        try:
            assert proc.stdin is not None
            try:
                for array in arrays:
                    proc.stdin.write(array.data)
                proc.stdin.close()
            except (BrokenPipeError, ValueError, OSError):
                pass  # ffmpeg exited or was killed: its status and stderr below say why
            returncode = proc.wait()
        finally:
            watchdog.cancel()
            try:
                if proc.stdin is not None:  # always a pipe here (stdin=PIPE)
                    proc.stdin.close()
            except OSError:
                pass  # the pipe was already broken: nothing left to flush
            if proc.poll() is None:  # interrupted (KeyboardInterrupt, ...): never leave an encoder behind
                proc.kill()
                proc.wait()
        if killed.is_set():
            raise VideoEncodeError(f"ffmpeg did not finish encoding {name} within {timeout_s:.0f} s and was stopped")
        if returncode != 0:
            stderr.seek(0)
            detail = _ffmpeg_tail(stderr.read().decode("utf-8", "replace"))
            raise VideoEncodeError(f"ffmpeg failed encoding {name} (exit status {returncode}): {detail}")


def _encode_arrays(
    arrays: list[np.ndarray],
    path: Path,
    fps: int,
    crf: int,
    max_bitrate: int | None,
    scale: float,
    metadata: Mapping[str, str] | None = None,
) -> tuple[int, int, int]:
    """Encode to ``path`` (via a temporary file); return (bytes, width, height)."""
    src_h, src_w = arrays[0].shape[:2]
    width, height = _even_size(src_w, src_h, scale)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.part")
    timeout_s = ENCODE_TIMEOUT_BASE_S + ENCODE_TIMEOUT_S_PER_MEGAPIXEL * src_w * src_h * len(arrays) / 1e6
    try:
        tmp.touch()  # an unwritable folder fails here, as an OSError naming the path, before ffmpeg starts
        _run_encoder(
            _encode_command(src_w, src_h, width, height, fps, crf, max_bitrate, tmp, metadata),
            arrays,
            timeout_s,
            path.name,
        )
        if tmp.stat().st_size == 0:
            raise VideoEncodeError(f"ffmpeg exited without writing {path.name}")
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
    metadata: Mapping[str, str] | None = None,
) -> int:
    """Write ``frames`` (PIL images or RGB uint8 arrays, all one size) as an H.264 MP4 at ``fps``.

    yuv420p, dimensions rounded down to even, ``moov`` before ``mdat`` (faststart). With ``max_bitrate`` (bit/s)
    the encode is bitrate-driven (capped by the same VBV rate) instead of CRF-driven. ``scale`` shrinks the
    picture first. ``metadata`` (e.g. :func:`parameter_tags`) goes into the file. Returns the bytes written.
    """
    _check_fps(fps)
    if not 0 < scale <= 1.0:
        raise ValueError(f"scale must be in (0, 1], got {scale!r}")
    if isinstance(crf, bool) or not isinstance(crf, int) or not 0 <= crf <= 51:
        raise ValueError(f"crf must be a whole number from 0 to 51, got {crf!r}")
    if max_bitrate is not None and (not isinstance(max_bitrate, int) or max_bitrate < MIN_BITRATE_BPS):
        raise ValueError(f"max_bitrate must be an int of at least {MIN_BITRATE_BPS} bit/s, got {max_bitrate!r}")
    size, _, _ = _encode_arrays(_as_rgb_arrays(frames), Path(path), fps, crf, max_bitrate, scale, metadata)
    return size


def encode_to_budget(
    frames: Sequence[Frame],
    path: str | os.PathLike[str],
    fps: int,
    max_bytes: int,
    *,
    metadata: Mapping[str, str] | None = None,
) -> EncodeResult:
    """Encode so the file is at most ``max_bytes``: first at the default quality, then at lower bitrates, then at
    fewer pixels; every attempt carries ``metadata``. Raises VideoTooLarge (saying what the smallest attempt gave)
    when nothing fits."""
    _check_fps(fps)
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes <= 0:
        raise ValueError(f"max_bytes must be a positive int, got {max_bytes!r}")
    arrays = _as_rgb_arrays(frames)
    target = Path(path)
    duration_s = len(arrays) / fps
    src_h, src_w = arrays[0].shape[:2]
    attempts = 0

    size, width, height = _encode_arrays(arrays, target, fps, DEFAULT_CRF, None, 1.0, metadata)
    attempts += 1
    if size <= max_bytes:
        return EncodeResult(target, size, width, height, int(size * 8 / duration_s), attempts)
    smallest: tuple[int, int, int, int | None] = (size, width, height, None)

    bitrate = int((max_bytes - CONTAINER_OVERHEAD_BYTES) * 8 * BUDGET_SAFETY / duration_s)
    for index, scale in enumerate(BUDGET_SCALES):
        w, h = _even_size(src_w, src_h, scale)
        if min(w, h) < MIN_SIDE_PX and index > 0:
            break
        last_scale = (
            index == len(BUDGET_SCALES) - 1 or min(_even_size(src_w, src_h, BUDGET_SCALES[index + 1])) < MIN_SIDE_PX
        )
        for _ in range(2):
            if attempts >= MAX_BUDGET_ATTEMPTS:
                break
            starved = bitrate < MIN_BITRATE_BPS or bitrate / (w * h * fps) < MIN_BITS_PER_PIXEL
            if starved and not last_scale:
                break  # too few bits for this many pixels: shrink instead
            rate = max(bitrate, MIN_BITRATE_BPS)
            size, width, height = _encode_arrays(arrays, target, fps, DEFAULT_CRF, rate, scale, metadata)
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
    at_rate = f" at {best_rate} bit/s" if best_rate else ""
    raise VideoTooLarge(
        f"cannot fit {len(arrays)} frames at {fps} fps into {max_bytes:,} bytes: the smallest of {attempts} "
        f"encodes was {best_size:,} bytes ({best_w}x{best_h}{at_rate})",
        max_bytes=max_bytes,
        smallest_bytes=best_size,
    )


def _stream_line(header: list[str]) -> tuple[int, str]:
    """Index and text of the input's first video stream line (ffmpeg's listing of ``Input #0``)."""
    for index, line in enumerate(header):
        if line.lstrip().startswith(("Output #", "Stream mapping")):
            break
        if line.lstrip().startswith("Stream #") and ": Video: " in line:
            return index, line
    return -1, ""


def _run_ffmpeg(doing: str, *arguments: str) -> tuple[int, str, str]:
    """Run ffmpeg (the binary imageio-ffmpeg provides) with ``arguments``; return its exit status, stdout and
    stderr. ``doing`` names the work in the ValueError raised after ``PROBE_TIMEOUT_S``."""
    command = [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-nostdin", *arguments]
    try:
        done = subprocess.run(command, capture_output=True, timeout=PROBE_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired as exc:
        raise ValueError(f"{doing} took longer than {PROBE_TIMEOUT_S:.0f} s") from exc
    return done.returncode, done.stdout.decode("utf-8", "replace"), done.stderr.decode("utf-8", "replace")


def _run_ffmpeg_on(file: Path, loglevel: str, *output: str) -> tuple[int, str, str]:
    """Run ffmpeg on ``file``'s first video stream, writing to the null muxer; return its exit status, stdout and
    stderr."""
    return _run_ffmpeg(
        f"decoding {file}",
        *("-nostats", "-loglevel", loglevel, "-progress", "pipe:1", "-i", str(file), "-map", "0:v:0?"),
        *output,
        *("-f", "null", "-"),
    )


def container_tags(path: str | os.PathLike[str]) -> dict[str, str]:
    """The container's metadata, whole (``ffmpeg -i`` lists each value cut at 255 bytes): ffmpeg's ``ffmetadata``
    export, whose values escape ``=``, ``;``, ``#``, backslash and newline with a backslash."""
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"{file} does not exist")
    status, out, err = _run_ffmpeg(
        f"reading the metadata of {file}", "-loglevel", "error", "-i", str(file), "-f", "ffmetadata", "-"
    )
    if status != 0:
        raise ValueError(f"{file} is not a readable video: {_ffmpeg_tail(err)}")
    tags: dict[str, str] = {}
    for line in out.splitlines()[1:]:  # the first line is ";FFMETADATA1"
        if line.startswith("["):  # a [STREAM] or [CHAPTER] section: the container's tags come first
            break
        key, _, value = line.partition("=")
        tags[key] = re.sub(r"\\(.)", r"\1", value)
    return tags


def _top_level_offsets(file: Path) -> dict[str, int]:
    """Offset of the first box of each type at the top of the file, from the mov demuxer's trace (header only)."""
    _, _, log = _run_ffmpeg_on(file, "trace", "-frames:v", "0")
    offsets: dict[str, int] = {}
    for kind, _size, offset in _ROOT_BOX.findall(log):
        offsets.setdefault(kind, int(offset))
    return offsets


def probe_mp4(path: str | os.PathLike[str]) -> VideoInfo:
    """Decode ``path`` fully and report its frame count, fps, size, codec, pixel format, duration, encoder and
    whether ``moov`` precedes ``mdat``.

    Two ffmpeg runs: a full decode to the null muxer counts the frames (``-progress``'s machine-readable lines)
    and lists the stream (codec, pixel format, size, fps, the track's encoder tag); a header-only run at trace
    level reports where each top-level box starts.
    """
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"{file} does not exist")
    returncode, out, log = _run_ffmpeg_on(file, "info")
    header = log.splitlines()
    index, stream = _stream_line(header)
    if not any(line.startswith("Input #0") for line in header):
        raise ValueError(f"{file} is not a readable video: {_ffmpeg_tail(log)}")
    if not stream:
        raise ValueError(f"{file} has no video stream")
    if returncode != 0:
        raise ValueError(f"{file} could not be decoded to the end: {_ffmpeg_tail(log)}")

    progress = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    # "h264 (High) (avc1 / 0x31637661)", "yuv420p(progressive)", "100x66 [SAR 1:1 DAR 50:33]", "20 kb/s", "5 fps"
    fields = _FIELD_SPLIT.split(stream.split(": Video: ", 1)[1])
    codec = fields[0].split(" ", 1)[0]
    pix_fmt = match.group(0) if len(fields) > 1 and (match := re.match(r"\w*", fields[1])) else ""
    size = re.match(r"(\d+)x(\d+)", fields[2]) if len(fields) > 2 else None
    fps = re.search(r"(\d+(?:\.\d+)?) fps", stream)
    duration = re.search(r"Duration: (\d+):(\d\d):(\d\d(?:\.\d+)?)", log)
    encoder = ""
    for line in header[index + 1 :]:
        if line.lstrip().startswith(("Stream #", "Output #", "Stream mapping")):
            break
        key, _, value = line.partition(":")
        if key.strip() == "encoder":
            encoder = value.strip()
            break
    offsets = _top_level_offsets(file)
    return VideoInfo(
        frames=int(progress.get("frame", "0")),
        fps=float(fps.group(1)) if fps else 0.0,
        width=int(size.group(1)) if size else 0,
        height=int(size.group(2)) if size else 0,
        codec=codec,
        pix_fmt=pix_fmt,
        duration_s=(int(duration.group(1)) * 3600 + int(duration.group(2)) * 60 + float(duration.group(3)))
        if duration
        else 0.0,
        faststart="moov" in offsets and "mdat" in offsets and offsets["moov"] < offsets["mdat"],
        size_bytes=file.stat().st_size,
        encoder=encoder,
    )
