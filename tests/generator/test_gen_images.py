"""generator.images: every bad-image kind has its outcome; fitting is exact."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from generator.images import (
    MAX_DECODE_BYTES,
    MAX_INPUT_BYTES,
    MAX_INPUT_PIXELS,
    ImageError,
    decode_bytes,
    fit_image,
    load_image,
)


def _encode(image: Image.Image, fmt: str, **kwargs: object) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **kwargs)
    return buf.getvalue()


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def _png_header_only(width: int, height: int, *, bit_depth: int = 8, colour_type: int = 2) -> bytes:
    """A PNG that declares a size but carries (almost) no pixel data: enough to test checks made before decoding."""
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", zlib.compress(b"\x00" * 16))


def _noise(width: int, height: int, seed: int = 0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8))


def _code(data: bytes) -> str:
    with pytest.raises(ImageError) as info:
        load_image(data)
    assert str(info.value)  # a user-facing message
    return info.value.code


def test_plain_png_and_jpeg_decode_to_rgb() -> None:
    for fmt in ("PNG", "JPEG", "WEBP", "BMP"):
        image = load_image(_encode(Image.new("RGB", (80, 60), (10, 200, 30)), fmt))
        assert image.mode == "RGB" and image.size == (80, 60)
        assert np.abs(np.asarray(image).astype(int) - (10, 200, 30)).max() < 8


def test_not_an_image() -> None:
    assert _code(b"hello, this is definitely a text file\n" * 10) == "not_image"
    assert _code(b"%PDF-1.7\n" + bytes(range(256)) * 4) == "not_image"


def test_truncated_file() -> None:
    png = _encode(_noise(200, 150), "PNG")
    assert _code(png[: len(png) // 2]) == "truncated"
    jpeg = _encode(_noise(200, 150), "JPEG")
    assert _code(jpeg[: len(jpeg) // 2]) == "truncated"


def test_decompression_bomb_refused_before_decoding() -> None:
    # Header-only files: if the pixels were decoded these would fail as truncated, not as bombs.
    assert MAX_INPUT_PIXELS < 8000 * 6000
    assert _code(_png_header_only(8000, 6000)) == "bomb"  # over our limit, under Pillow's own
    assert _code(_png_header_only(60000, 60000)) == "bomb"  # over Pillow's hard limit too


def test_a_16_bit_grey_bomb_is_refused_by_its_decode_memory_before_decoding() -> None:
    # 30 MP is under the pixel limit; as 8-bit RGB it passes the checks and fails as truncated when decoded, as
    # 16-bit grey (a few KiB of PNG that would take about a gigabyte to convert) it is refused before decoding.
    width, height = 6000, 5000
    assert width * height < MAX_INPUT_PIXELS
    assert _code(_png_header_only(width, height)) == "truncated"
    with pytest.raises(ImageError) as info:
        load_image(_png_header_only(width, height, bit_depth=16, colour_type=0))
    assert info.value.code == "bomb" and "I;16" in str(info.value) and "MiB" in str(info.value), str(info.value)
    assert decode_bytes("I;16", width, height) > MAX_DECODE_BYTES >= decode_bytes("RGB", width, height)
    # the whole file, really compressed: a tiny upload, refused just the same
    bomb = _encode(Image.new("I;16", (width, height)), "PNG")
    assert len(bomb) < 200_000 and _code(bomb) == "bomb"
    # a 16-bit grey picture of an ordinary size still decodes (scaled to 8 bits)
    small = load_image(_encode(Image.fromarray(np.full((300, 400), 65535, dtype=np.uint16)), "PNG"))
    assert small.size == (400, 300) and np.asarray(small).min() == 255


def test_too_many_bytes() -> None:
    assert _code(b"\x89PNG" + b"\x00" * (MAX_INPUT_BYTES + 1)) == "too_large"


def test_zero_size() -> None:
    assert _code(b"") == "empty"
    assert _code(_png_header_only(0, 100)) == "empty"
    assert _code(_png_header_only(100, 0)) == "empty"


def test_too_small() -> None:
    assert _code(_encode(Image.new("RGB", (10, 10)), "PNG")) == "too_small"


def test_extreme_aspect_ratio() -> None:
    assert _code(_encode(Image.new("RGB", (1000, 100)), "PNG")) == "aspect"
    assert _code(_encode(Image.new("RGB", (100, 1000)), "PNG")) == "aspect"
    assert load_image(_encode(Image.new("RGB", (400, 100)), "PNG")).size == (400, 100)  # 4:1 is still fine


def test_unsupported_format_is_refused() -> None:
    assert _code(_encode(Image.new("RGB", (64, 64)), "PPM")) == "unsupported"


@pytest.mark.parametrize("fmt", ["GIF", "WEBP"])
def test_animated_takes_first_frame(fmt: str) -> None:
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255)]
    frames = [Image.new("RGB", (64, 48), c) for c in colours]
    data = _encode(
        frames[0],
        fmt,
        save_all=True,
        append_images=frames[1:],
        duration=100,
        loop=0,
        **({"lossless": True} if fmt == "WEBP" else {}),
    )
    assert getattr(Image.open(io.BytesIO(data)), "n_frames", 1) == 3
    image = load_image(data)
    assert image.mode == "RGB" and image.size == (64, 48)
    r, g, b = np.asarray(image).reshape(-1, 3).mean(axis=0)
    assert r > 240 and g < 15 and b < 15


def test_cmyk_jpeg_becomes_rgb() -> None:
    data = _encode(Image.new("CMYK", (64, 64), (0, 255, 255, 0)), "JPEG")  # pure red in CMYK
    assert Image.open(io.BytesIO(data)).mode == "CMYK"
    image = load_image(data)
    assert image.mode == "RGB"
    r, g, b = np.asarray(image).reshape(-1, 3).mean(axis=0)
    assert r > 230 and g < 25 and b < 25


@pytest.mark.parametrize("fmt", ["PNG", "TIFF"])
def test_16_bit_grey_is_scaled_not_clipped(fmt: str) -> None:
    array = np.full((40, 60), 32768, dtype=np.uint16)
    array[:, 30:] = 65535
    data = _encode(Image.fromarray(array), fmt)
    assert Image.open(io.BytesIO(data)).mode.startswith("I")
    image = load_image(data)
    pixels = np.asarray(image)
    assert image.mode == "RGB" and image.size == (60, 40)
    assert abs(int(pixels[0, 0, 0]) - 128) <= 1  # Pillow's convert("RGB") would give 255 here
    assert pixels[0, 59, 0] == 255


def test_exif_orientation_is_applied() -> None:
    array = np.zeros((32, 64, 3), dtype=np.uint8)
    array[:, :32] = (255, 0, 0)  # left half red
    array[:, 32:] = (0, 0, 255)  # right half blue
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    data = _encode(Image.fromarray(array), "JPEG", exif=exif.tobytes(), quality=95)
    image = load_image(data)
    assert image.size == (32, 64)  # portrait after rotation
    top, bottom = np.asarray(image)[4, 16], np.asarray(image)[60, 16]
    assert top[0] > 200 and top[2] < 60  # the left (red) side is now on top
    assert bottom[2] > 200 and bottom[0] < 60


def test_palette_with_transparency_is_flattened_on_white() -> None:
    image = Image.new("P", (64, 64), 0)
    image.putpalette([0, 0, 0, 255, 0, 0] + [0] * (256 * 3 - 6))
    image.paste(1, (0, 0, 32, 64))  # left half: index 1 = red; right half index 0 = transparent
    data = _encode(image, "PNG", transparency=0)
    decoded = Image.open(io.BytesIO(data))
    assert decoded.mode == "P" and "transparency" in decoded.info
    pixels = np.asarray(load_image(data))
    assert tuple(pixels[10, 10]) == (255, 0, 0)
    assert tuple(pixels[10, 50]) == (255, 255, 255)


def test_rgba_alpha_is_flattened() -> None:
    rgba = Image.new("RGBA", (64, 64), (0, 0, 0, 0))
    rgba.paste((0, 255, 0, 255), (0, 0, 64, 32))
    pixels = np.asarray(load_image(_encode(rgba, "PNG")))
    assert tuple(pixels[5, 5]) == (0, 255, 0)
    assert tuple(pixels[50, 5]) == (255, 255, 255)


def test_content_decides_not_the_name() -> None:
    # load_image never sees a file name or content type: a JPEG is a JPEG whatever it was called.
    data = _encode(Image.new("RGB", (64, 64), (1, 2, 3)), "JPEG")
    assert load_image(data).size == (64, 64)


@pytest.mark.parametrize("size", [(1024, 576), (1279, 720), (501, 281), (1920, 1080), (700, 1000)])
def test_fit_image_is_exact_without_black_edges(size: tuple[int, int]) -> None:
    out = fit_image(Image.new("RGB", size, (255, 255, 255)), 1280, 704)
    assert out.size == (1280, 704) and out.mode == "RGB"
    assert np.asarray(out).min() >= 250  # no padded column or row anywhere


def test_fit_image_crops_the_centre() -> None:
    array = np.zeros((100, 300, 3), dtype=np.uint8)
    array[:, :100] = (255, 0, 0)
    array[:, 100:200] = (0, 255, 0)
    array[:, 200:] = (0, 0, 255)
    out = np.asarray(fit_image(Image.fromarray(array), 64, 64))
    assert out[:, 2:-2, 1].min() > 200 and out[:, 2:-2, 0].max() < 40  # only the green middle third is left


def test_fit_image_refuses_bad_size() -> None:
    with pytest.raises(ValueError, match="width"):
        fit_image(Image.new("RGB", (10, 10)), 0, 64)
