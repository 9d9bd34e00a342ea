"""MP4 encoding per preset: seconds and bytes of the imageio-ffmpeg encoder beside the former PyAV one, in one run.

Both encoders get the same frames, alternately (PyAV, ffmpeg, ffmpeg, PyAV, ...), ``--repeats`` times each; the
table shows medians and the ratio after / before. Per preset (the preset's size for the README's landscape sample,
its frames and fps) it times:

  plain   ``encode_mp4``: one CRF encode, what the CLI writes
  budget  ``encode_to_budget`` with the default Discord upload limit (10 MiB), what the worker runs
  tight   ``encode_to_budget`` with a limit of 40 % of the plain encode's bytes (the current encoder's, measured
          first; the same limit for both), which forces the lower-bitrate attempts and, for noise, fewer pixels

"before" is the PyAV encoder the project used until it moved to imageio-ffmpeg, kept here as the baseline only: it
needs ``pip install av`` (no longer a dependency). The budget cases run the same ``encode_to_budget`` loop with its
encode step swapped for the PyAV one. Without av the bench times the current encoder alone.

The frames: ``pan`` (default) moves a window slowly across the sample image, like a generated clip; ``noise`` is
independent noise per frame, the worst case. ``share of a job`` divides the current encoder's budget time by the
seed's fastest GPU time for that preset (quick 20 s, standard 40 s, high 90 s on an RTX 4090): what encoding adds to
a job on the worker.

    .venv/bin/python -m bench.video                          # every preset, pan, 3 repeats
    .venv/bin/python -m bench.video --content noise --presets quick standard --repeats 5 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from fractions import Fraction
from pathlib import Path
from typing import Any

import imageio_ffmpeg
import numpy as np
from PIL import Image

import generator.video as video
from generator.params import PRESETS, target_size

SAMPLE_IMAGE = Path(__file__).resolve().parents[1] / "generator" / "assets" / "sample.png"
UPLOAD_LIMIT_BYTES = 10 * 1024 * 1024  # Discord's default attachment limit
TIGHT_FRACTION = 0.4  # the tight case's limit, as a share of the plain encode's bytes
SEED_GPU_JOB_S: dict[str, float] = {"quick": 20.0, "standard": 40.0, "high": 90.0}  # seed's RTX 4090, fastest
PAN_FRACTION = 0.15  # share of the image's width the pan crosses over the clip
NOISE_SEED = 0
CASES = ("plain", "budget", "tight")


def pyav_encode_arrays(
    arrays: list[np.ndarray], path: Path, fps: int, crf: int, max_bitrate: int | None, scale: float
) -> tuple[int, int, int]:
    """The PyAV encoder as it was in generator/video.py (same signature as ``video._encode_arrays``)."""
    import av  # the baseline only: pip install av

    src_h, src_w = arrays[0].shape[:2]
    width, height = video._even_size(src_w, src_h, scale)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.part")
    try:
        with av.open(str(tmp), mode="w", format="mp4", options={"movflags": "+faststart"}) as container:
            stream = container.add_stream(video.VIDEO_CODEC, rate=fps)
            stream.width = width
            stream.height = height
            stream.pix_fmt = video.PIXEL_FORMAT
            stream.time_base = Fraction(1, fps)
            options = {"preset": video.X264_PRESET}
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


@contextmanager
def encode_step(step: Callable[..., tuple[int, int, int]] | None) -> Iterator[None]:
    """Run ``video``'s functions with ``step`` as their encode step (None: the module's own)."""
    if step is None:
        yield
        return
    own = video._encode_arrays
    video._encode_arrays = step
    try:
        yield
    finally:
        video._encode_arrays = own


def make_frames(content: str, width: int, height: int, count: int) -> list[np.ndarray]:
    if content == "noise":
        rng = np.random.default_rng(NOISE_SEED)
        return [rng.integers(0, 256, (height, width, 3), dtype=np.uint8) for _ in range(count)]
    image = Image.open(SAMPLE_IMAGE).convert("RGB")
    base = image.resize((round(width * (1 + PAN_FRACTION)), height), Image.Resampling.LANCZOS)
    shift = base.width - width
    return [
        np.asarray(base.crop((offset, 0, offset + width, height)))
        for offset in (round(shift * i / max(1, count - 1)) for i in range(count))
    ]


def run_case(case: str, frames: list[np.ndarray], fps: int, out: Path, tight_bytes: int) -> dict[str, Any]:
    started = time.perf_counter()
    if case == "plain":
        size = video.encode_mp4(frames, out, fps)
        attempts, width, height = 1, frames[0].shape[1], frames[0].shape[0]
    else:
        limit = UPLOAD_LIMIT_BYTES if case == "budget" else tight_bytes
        result = video.encode_to_budget(frames, out, fps, limit)
        size, attempts, width, height = result.size_bytes, result.attempts, result.width, result.height
    seconds = time.perf_counter() - started
    info = video.probe_mp4(out)  # not timed: both encoders must have written a whole, right video
    if (info.frames, info.fps, info.width, info.height) != (len(frames), float(fps), width, height):
        raise RuntimeError(f"{case}: wrote {info}, expected {len(frames)} frames {width}x{height} at {fps} fps")
    return {"s": seconds, "bytes": size, "attempts": attempts, "size": f"{width}x{height}"}


def bench_preset(name: str, content: str, repeats: int, encoders: dict[str, Any]) -> dict[str, Any]:
    preset = PRESETS[name]
    with Image.open(SAMPLE_IMAGE) as image:
        width, height = target_size(preset.resolution, image.width, image.height)
    frames = make_frames(content, width, height, preset.frames)
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {e: {c: [] for c in CASES} for e in encoders}
    order = list(encoders)
    with tempfile.TemporaryDirectory() as tmp:
        tight_bytes = int(video.encode_mp4(frames, Path(tmp) / "size.mp4", preset.fps) * TIGHT_FRACTION)
        for repeat in range(repeats):
            for encoder in order if repeat % 2 == 0 else order[::-1]:
                with encode_step(encoders[encoder]):
                    for case in CASES:
                        out = Path(tmp) / f"{case}.mp4"
                        runs[encoder][case].append(run_case(case, frames, preset.fps, out, tight_bytes))
    result: dict[str, Any] = {
        "preset": name,
        "width": width,
        "height": height,
        "frames": preset.frames,
        "fps": preset.fps,
        "tight_limit_bytes": tight_bytes,
        "cases": {},
    }
    for case in CASES:
        row: dict[str, Any] = {}
        for encoder in encoders:
            samples = runs[encoder][case]
            row[encoder] = {
                "median_s": round(statistics.median(r["s"] for r in samples), 3),
                "runs_s": [round(r["s"], 3) for r in samples],
                "bytes": samples[0]["bytes"],
                "attempts": samples[0]["attempts"],
                "size": samples[0]["size"],
            }
        if "before" in row:
            row["time_ratio"] = round(row["after"]["median_s"] / row["before"]["median_s"], 2)
            row["size_ratio"] = round(row["after"]["bytes"] / row["before"]["bytes"], 3)
        result["cases"][case] = row
    result["share_of_job"] = round(result["cases"]["budget"]["after"]["median_s"] / SEED_GPU_JOB_S[name], 4)
    return result


def print_table(results: list[dict[str, Any]], with_before: bool) -> None:
    head = ["preset", "size", "case", "attempts", "after s", "after bytes"]
    if with_before:
        head += ["before s", "before bytes", "time after/before", "bytes after/before"]
    head.append("share of a job")
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for result in results:
        for case, row in result["cases"].items():
            after = row["after"]
            cells = [
                result["preset"],
                f"{result['width']}x{result['height']}x{result['frames']} @{result['fps']}",
                case,
                str(after["attempts"]),
                f"{after['median_s']:.3f}",
                f"{after['bytes']:,}",
            ]
            if with_before:
                before = row["before"]
                attempts = "" if before["attempts"] == after["attempts"] else f" ({before['attempts']} attempts)"
                cells += [
                    f"{before['median_s']:.3f}",
                    f"{before['bytes']:,}{attempts}",
                    f"{row['time_ratio']:.2f}",
                    f"{row['size_ratio']:.3f}",
                ]
            cells.append(f"{result['share_of_job']:.1%}" if case == "budget" else "")
            print("| " + " | ".join(cells) + " |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", choices=sorted(PRESETS), default=["quick", "standard", "high"])
    parser.add_argument("--content", choices=("pan", "noise"), default="pan")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each encoder per case (default 3)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)

    encoders: dict[str, Any] = {"after": None}
    try:
        import av

        encoders = {"before": pyav_encode_arrays, "after": None}
        av_version = av.__version__
    except ImportError:
        av_version = None
        print("PyAV is not installed (pip install av): timing the imageio-ffmpeg encoder alone", file=sys.stderr)
    meta = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "host": platform.node(),
        "cpus": os.cpu_count(),
        "load_avg_1m_start": round(os.getloadavg()[0], 2),
        "content": args.content,
        "repeats": args.repeats,
        "ffmpeg": imageio_ffmpeg.get_ffmpeg_version(),
        "imageio_ffmpeg": imageio_ffmpeg.__version__,
        "av": av_version,
    }
    results = [bench_preset(name, args.content, args.repeats, encoders) for name in args.presets]
    meta["load_avg_1m_end"] = round(os.getloadavg()[0], 2)
    print(", ".join(f"{k} {v}" for k, v in meta.items()))
    print_table(results, "before" in encoders)
    if args.json:
        args.json.write_text(json.dumps({"meta": meta, "results": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
