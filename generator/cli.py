"""Command line: ``python -m generator IMAGE "PROMPT" [options]`` writes one MP4 and prints what it used.

Bad input (unreadable image, out-of-range option, an output path whose folder cannot be written) prints one
line on stderr and exits with status 2 before the model loads; a failure while generating (out of memory, model
not loadable, NaN frames, the MP4 not writable) prints one line and exits with status 1; Ctrl-C exits with 130.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from PIL import Image

from config.catalog import CLI, default_text
from config.helptext import settings_help
from config.logs import setup_logging
from config.reader import SettingsError, environment, read, report_bad_setting
from generator.images import ImageError, load_image
from generator.params import RESOLUTIONS, GenerationParams, ParamError, resolve_params, target_size

if TYPE_CHECKING:
    from generator.performance import PerformanceOptions

MODEL_ENV: str = "I2V_MODEL"  # hub id, local folder or "tiny"
DEFAULT_MODEL: str = default_text(MODEL_ENV)
DEFAULT_OUTPUT_DIR: Path = Path(default_text("OUTPUT_DIR"))
PROG: str = "i2v-generate"  # how its one-line settings errors begin
CLI_SETTINGS: tuple[str, ...] = ("I2V_MODEL", "I2V_DEVICE", "OUTPUT_DIR")
OUTPUT_NAME_FORMAT: str = "video_%Y%m%d_%H%M%S"  # the seed's naming: outputs/video_YYYYMMDD_HHMMSS.mp4
EXIT_BAD_INPUT: int = 2
EXIT_FAILED: int = 1
EXIT_INTERRUPTED: int = 130


class _OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is a single line on stderr and exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_BAD_INPUT, f"error: {message} (see python -m generator --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The CLI's argument parser."""
    parser = _OneLineParser(
        prog="python -m generator",
        description="Turn an image and a prompt into a short MP4 with I2VGen-XL. "
        f"The model comes from ${MODEL_ENV} (a hub id, a local folder, or 'tiny'; default {DEFAULT_MODEL}).",
        epilog=settings_help(CLI),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("image", help="input image file (PNG, JPEG, WebP, GIF; decided by its content)")
    parser.add_argument("prompt", help='what should move and how, e.g. "the waves roll in, camera pans right"')
    parser.add_argument("--preset", help="quick, standard or high (explicit options override it)")
    parser.add_argument("--resolution", help="short side: " + ", ".join(RESOLUTIONS))
    parser.add_argument("--frames", help="number of frames, 8-32")
    parser.add_argument("--fps", help="frames per second of the MP4, 4-24")
    parser.add_argument("--steps", help="denoising steps, 10-100")
    parser.add_argument("--guidance", help="guidance scale, 1.0-20.0")
    parser.add_argument("--seed", help="0-4294967295 (random when left out; always printed)")
    parser.add_argument("--negative-prompt", help="what to avoid (default: VGen's standard negative prompt)")
    parser.add_argument(
        "-o", "--output", help="output .mp4 file or folder (default OUTPUT_DIR/video_YYYYMMDD_HHMMSS.mp4)"
    )
    parser.add_argument("--model", help=f"overrides ${MODEL_ENV}")
    parser.add_argument("--device", help="cpu, cuda or cuda:N (overrides $I2V_DEVICE; default: cuda when available)")
    parser.add_argument("--low-memory", action="store_true", help="VAE tiling and CPU offload for small GPUs")
    return parser


def _fail(code: int, message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code


def default_output_path(directory: Path, now: datetime | None = None) -> Path:
    """``directory/video_YYYYMMDD_HHMMSS.mp4``, with ``_2``, ``_3``... if that name is taken."""
    stem = (now or datetime.now()).strftime(OUTPUT_NAME_FORMAT)
    candidate = directory / f"{stem}.mp4"
    counter = 2
    while candidate.exists():
        candidate = directory / f"{stem}_{counter}.mp4"
        counter += 1
    return candidate


def _output_path(option: str | None, output_dir: Path = DEFAULT_OUTPUT_DIR) -> Path:
    if option is None:
        return _writable(default_output_path(output_dir), "the default output folder (OUTPUT_DIR)")
    path = Path(option).expanduser()
    if path.is_dir() or option.endswith(("/", os.sep)):
        return _writable(default_output_path(path), f"--output {option!r}")
    if path.suffix.lower() != ".mp4":
        raise ValueError(f"--output {option!r} must end in .mp4 (or name a folder)")
    return _writable(path, f"--output {option!r}")


def _writable(path: Path, what: str) -> Path:
    """``path`` if its folder exists and is writable, or can be created (its nearest existing ancestor is a
    writable folder): checked before the model loads, not after minutes of generating."""
    folder = path.absolute().parent
    while not folder.exists():
        folder = folder.parent
    if not folder.is_dir():
        raise ValueError(f"{what}: {folder} is a file, not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ValueError(f"{what}: no permission to write in {folder}")
    return path


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # usage error (one line, status 2) or --help (status 0)
        return int(exc.code or 0)
    from generator.performance import PerformanceOptions

    env = environment()
    try:
        settings = read(env, CLI_SETTINGS)
        options = PerformanceOptions.from_env(env)
        setup_logging(env, process="cli")
    except (SettingsError, ValueError) as exc:
        return report_bad_setting(PROG, exc)
    image_path = Path(args.image)
    try:
        data = image_path.read_bytes()
    except OSError as exc:
        return _fail(EXIT_BAD_INPUT, f"cannot read image {args.image!r}: {exc.strerror or exc}")
    try:
        image = load_image(data)
    except ImageError as exc:
        return _fail(EXIT_BAD_INPUT, f"image {args.image!r}: {exc}")
    try:
        params = resolve_params(
            args.prompt,
            preset=args.preset,
            resolution=args.resolution,
            frames=args.frames,
            fps=args.fps,
            steps=args.steps,
            guidance=args.guidance,
            seed=args.seed,
            negative_prompt=args.negative_prompt,
        )
        width, height = target_size(params.resolution, image.width, image.height)
        output = _output_path(args.output, Path(str(settings["OUTPUT_DIR"])))
    except ParamError as exc:
        return _fail(EXIT_BAD_INPUT, str(exc).replace("_", "-", 1) if exc.field == "negative_prompt" else str(exc))
    except ValueError as exc:
        return _fail(EXIT_BAD_INPUT, str(exc))
    model = args.model or str(settings[MODEL_ENV])
    device = args.device or str(settings["I2V_DEVICE"]) or None
    return _run(image, image_path, params, width, height, output, model, device, args.low_memory, options)


def _run(
    image: Image.Image,
    image_path: Path,
    params: GenerationParams,
    width: int,
    height: int,
    output: Path,
    model: str,
    device: str | None,
    low_memory: bool,
    options: PerformanceOptions | None = None,
) -> int:
    """Load the model, generate with a progress bar, encode, and print the result."""
    print(f"Image:      {image_path} ({image.width}x{image.height}) -> {width}x{height}")
    print(f"Prompt:     {params.prompt}")
    print(f"Negative:   {params.negative_prompt}")
    print(f"Parameters: {params.describe()}")
    print(f"Seed:       {params.seed}")
    print(f"Model:      {model}", flush=True)

    from tqdm import tqdm

    from generator.model_source import ModelLoadError
    from generator.models.base import GenerationFailed, GenerationOutOfMemory
    from generator.models.i2vgenxl import I2VGenXLBackend
    from generator.video import VideoEncodeError, encode_mp4, parameter_tags

    quiet_libraries()
    started = time.monotonic()
    try:
        generator = I2VGenXLBackend.load(model, device=device, options=options)
    except (ModelLoadError, ValueError) as exc:
        return _fail(EXIT_FAILED, str(exc))
    print(f"Device:     {generator.device_name} (model ready in {time.monotonic() - started:.1f} s)", flush=True)
    bar = tqdm(total=params.steps, desc="Denoising", unit="step", file=sys.stderr, dynamic_ncols=True)

    def on_step(step: int, total: int) -> None:
        bar.total = total
        bar.update(step - bar.n)

    def on_phase(phase: str) -> None:
        if phase == "decoding":
            bar.set_description("Decoding")

    try:
        frames = generator.generate(
            image, params, width=width, height=height, on_step=on_step, on_phase=on_phase, low_memory=low_memory
        )
    except (GenerationOutOfMemory, GenerationFailed) as exc:
        bar.close()
        return _fail(EXIT_FAILED, str(exc))
    except KeyboardInterrupt:
        bar.close()
        return _fail(EXIT_INTERRUPTED, "interrupted; no video written")
    bar.close()
    try:
        size = encode_mp4(
            frames, output, params.fps, metadata=parameter_tags(params, model=model, width=width, height=height)
        )
    except OSError as exc:
        return _fail(EXIT_FAILED, f"cannot write {output}: {exc.strerror or exc}")
    except VideoEncodeError as exc:
        return _fail(EXIT_FAILED, str(exc))
    elapsed = time.monotonic() - started
    print(
        f"Saved:      {output} ({params.frames} frames, {width}x{height}, {params.fps} fps, {size:,} bytes, "
        f"{elapsed:.1f} s)"
    )
    return 0


def quiet_libraries() -> None:
    """Hide the pipeline's deprecation notice and similar library chatter (errors still show)."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    diffusers_logging.set_verbosity_error()
    transformers_logging.set_verbosity_error()
