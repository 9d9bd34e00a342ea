"""Safe decoding of uploaded images and fitting them to the output size (no torch).

An upload is an image only if Pillow decodes it; its name and content type are never trusted. The pixel count is
checked from the header before any pixels are decoded (decompression bombs). The result is always an 8-bit RGB
image: first frame of an animation, EXIF orientation applied, alpha flattened onto white, palette, CMYK, 16-bit
and other modes converted. Each refusal is an :class:`ImageError` with a distinct ``code``.
"""

from __future__ import annotations

import io
import struct
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

MAX_INPUT_BYTES: int = 32 * 1024 * 1024  # bytes; larger uploads are refused before decoding
MAX_INPUT_PIXELS: int = 40_000_000  # width * height; larger images are refused as decompression bombs
MIN_INPUT_SIDE_PX: int = 32  # pixels; smaller images carry too little to animate
MAX_INPUT_ASPECT: float = 4.0  # long side / short side; beyond this centre-cropping to 2:1 loses most of it
ALLOWED_FORMATS: tuple[str, ...] = ("PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF", "MPO")
FLATTEN_BACKGROUND_RGB: tuple[int, int, int] = (255, 255, 255)  # transparent pixels become white
MAX_DECODE_BYTES: int = MAX_INPUT_PIXELS * 12  # bytes decoding may take at the peak: an 8-bit RGB at the pixel limit
DECODE_BYTES_PER_PIXEL: dict[str, int] = {
    # the peak of load_image per pixel, by the mode Pillow decodes to: the decoded image (Pillow keeps RGB in 4
    # bytes), the EXIF-rotated copy, and the conversion to 8-bit RGB (alpha: RGBA, its background and the
    # composite; 16-bit and float grey: float64 arrays while scaling)
    "1": 6,
    "L": 6,
    "P": 6,
    "RGB": 12,
    "CMYK": 12,
    "YCbCr": 12,
    "LAB": 12,
    "HSV": 12,
    "LA": 24,
    "La": 24,
    "PA": 24,
    "RGBA": 24,
    "RGBa": 24,
    "I;16": 34,
    "I;16B": 34,
    "I;16L": 34,
    "I;16N": 34,
    "I": 38,
    "F": 38,
}
UNKNOWN_MODE_BYTES_PER_PIXEL: int = 38  # a mode not listed: assume the costliest

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_MESSAGES = {
    "not_image": "That file is not an image I can read (send a PNG, JPEG, WebP or GIF).",
    "truncated": "That image file is cut off or damaged (it ends before the picture does).",
    "too_large": "That image file is too large.",
    "bomb": "That image has too many pixels.",
    "empty": "That image is empty.",
    "too_small": "That image is too small.",
    "aspect": "That image is too long and thin.",
    "unsupported": "That image format is not supported (send a PNG, JPEG, WebP or GIF).",
}


class ImageError(ValueError):
    """An upload was refused. ``code`` is one of not_image, truncated, too_large, bomb, empty, too_small, aspect,
    unsupported; ``str()`` is a short user-facing message."""

    def __init__(self, code: str, detail: str = "") -> None:
        if code not in _MESSAGES:
            raise ValueError(f"unknown ImageError code {code!r}")
        self.code = code
        self.detail = detail
        super().__init__(f"{_MESSAGES[code]} {detail}".strip())


def _declares_zero_size(data: bytes) -> bool:
    """True if a PNG or GIF header declares a zero width or height (Pillow refuses those without saying why)."""
    if data.startswith(_PNG_SIGNATURE) and len(data) >= 24 and data[12:16] == b"IHDR":
        width, height = struct.unpack(">II", data[16:24])
        return width == 0 or height == 0
    if data[:6] in (b"GIF87a", b"GIF89a") and len(data) >= 10:
        width, height = struct.unpack("<HH", data[6:10])
        return width == 0 or height == 0
    return False


def _to_rgb(image: Image.Image) -> Image.Image:
    """Convert any decoded mode to 8-bit RGB, scaling 16-bit and float data and flattening alpha."""
    mode = image.mode
    if mode.startswith("I;16") or mode == "I":
        # 16-bit (or 32-bit integer) grey: Pillow's convert() clips to 255 instead of scaling.
        array = np.asarray(image, dtype=np.float64)
        peak = 65535.0 if mode.startswith("I;16") or array.max(initial=0) > 255 else 255.0
        grey = np.clip(array / peak * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(grey).convert("RGB")
    if mode == "F":
        array = np.asarray(image, dtype=np.float64)
        peak = 1.0 if array.max(initial=0) <= 1.0 else 255.0
        grey = np.clip(array / peak * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(grey).convert("RGB")
    has_alpha = mode in ("RGBA", "LA", "La", "RGBa", "PA") or (mode == "P" and "transparency" in image.info)
    if mode in ("L", "1", "P") and not has_alpha:
        return image.convert("RGB")
    if has_alpha:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, FLATTEN_BACKGROUND_RGB + (255,))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")  # RGB, CMYK, YCbCr, LAB, HSV


def decode_bytes(mode: str, width: int, height: int) -> int:
    """The memory ``load_image`` takes at its peak for an image of this mode and size, in bytes."""
    return width * height * DECODE_BYTES_PER_PIXEL.get(mode, UNKNOWN_MODE_BYTES_PER_PIXEL)


def load_image(data: bytes) -> Image.Image:
    """Decode upload bytes into an RGB image, or raise ImageError with a specific code.

    Checks, in order: size in bytes, that Pillow identifies an allowed format, declared dimensions (zero, pixel
    bomb, too small, aspect ratio) and the memory decoding would take (:func:`decode_bytes`) before decoding, then
    decodes the first frame (truncation), applies the EXIF orientation and converts to RGB.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"load_image needs bytes, got {type(data).__name__}")
    data = bytes(data)
    if not data:
        raise ImageError("empty", "(the file has no bytes)")
    if len(data) > MAX_INPUT_BYTES:
        raise ImageError("too_large", f"({len(data):,} bytes; the limit is {MAX_INPUT_BYTES:,})")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(data))
        except Image.DecompressionBombError as exc:
            raise ImageError("bomb", f"(the limit is {MAX_INPUT_PIXELS:,} pixels)") from exc
        except (UnidentifiedImageError, SyntaxError, ValueError, OSError, struct.error) as exc:
            if _declares_zero_size(data):
                raise ImageError("empty", "(it is 0 pixels wide or high)") from exc
            raise ImageError("not_image") from exc
        if image.format not in ALLOWED_FORMATS:
            raise ImageError("unsupported", f"({image.format} files are not accepted)")
        width, height = image.size
        if width <= 0 or height <= 0:
            raise ImageError("empty", "(it is 0 pixels wide or high)")
        if width * height > MAX_INPUT_PIXELS:
            raise ImageError("bomb", f"({width}x{height}; the limit is {MAX_INPUT_PIXELS:,} pixels)")
        if min(width, height) < MIN_INPUT_SIDE_PX:
            raise ImageError("too_small", f"({width}x{height}; each side needs at least {MIN_INPUT_SIDE_PX} px)")
        if max(width, height) / min(width, height) > MAX_INPUT_ASPECT:
            raise ImageError(
                "aspect", f"({width}x{height}; the long side may be at most {MAX_INPUT_ASPECT:g}x the short side)"
            )
        need = decode_bytes(image.mode, width, height)
        if need > MAX_DECODE_BYTES:  # a few KiB of 16-bit grey PNG can ask for a gigabyte
            raise ImageError(
                "bomb",
                f"({width}x{height} {image.mode}: decoding it takes about {need // 2**20:,} MiB; "
                f"the limit is {MAX_DECODE_BYTES // 2**20:,} MiB)",
            )
        try:
            image.seek(0)  # first frame of an animation
            image.load()
        except Image.DecompressionBombError as exc:
            raise ImageError("bomb", f"(the limit is {MAX_INPUT_PIXELS:,} pixels)") from exc
        except (OSError, SyntaxError, ValueError, EOFError, struct.error) as exc:
            raise ImageError("truncated") from exc
    try:
        oriented = ImageOps.exif_transpose(image)
    except (OSError, SyntaxError, ValueError, struct.error):
        oriented = image  # a broken EXIF block is not worth refusing the image over
    if oriented is None:  # pragma: no cover - exif_transpose(in_place=False) always returns an image
        oriented = image
    return _to_rgb(oriented)


def fit_image(image: Image.Image, width: int, height: int) -> Image.Image:
    """Scale ``image`` to cover (width, height) and centre-crop to exactly that size (one Lanczos resample).

    The crop box is computed in source coordinates, so there is no off-by-one padding column (the pipeline's own
    crop has one).
    """
    for name, value in (("width", width), ("height", height)):
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"fit_image: {name} must be a positive int, got {value!r}")
    rgb = image if image.mode == "RGB" else _to_rgb(image)
    src_w, src_h = rgb.size
    if (src_w, src_h) == (width, height):
        return rgb.copy()
    target_aspect = width / height
    if src_w / src_h > target_aspect:  # source is wider: crop the sides
        crop_w, crop_h = src_h * target_aspect, float(src_h)
    else:  # source is taller: crop top and bottom
        crop_w, crop_h = float(src_w), src_w / target_aspect
    left = (src_w - crop_w) / 2.0
    top = (src_h - crop_h) / 2.0
    return rgb.resize((width, height), Image.Resampling.LANCZOS, box=(left, top, left + crop_w, top + crop_h))
