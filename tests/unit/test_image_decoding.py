"""Decoding: every supported format gives the reference loader's RGB pixels,
and every bad input raises ImageError naming the problem."""

from __future__ import annotations

import io
import struct
import warnings
import zlib

import numpy as np
import pytest
from PIL import Image, ImageOps

from dsocr.preprocessing import DecodeLimits, ImageError, decode_image

WIDTH, HEIGHT = 37, 23  # odd sizes: rotations and subsampling show


def pattern(mode: str = "RGB", width: int = WIDTH, height: int = HEIGHT, seed: int = 0) -> Image.Image:
    """Gradients plus noise in every channel, converted to `mode`."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    rgb = np.stack([x * 255 // width, y * 255 // height, (x + y) % 256], axis=-1)
    rgb = (rgb + rng.integers(0, 40, rgb.shape)).clip(0, 255).astype(np.uint8)
    return Image.fromarray(rgb).convert(mode)


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def reference_decode(data: bytes) -> Image.Image:
    """DeepSeek's loader: open, apply EXIF orientation, convert to RGB."""
    return ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB")


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_bytes(width: int, height: int, bit_depth: int, color_type: int, rows: bytes | None) -> bytes:
    """A PNG written by hand: a header declaring any size, pixel rows optional."""
    header = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    data = png_chunk(b"IDAT", zlib.compress(rows)) if rows is not None else b""
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + data + png_chunk(b"IEND", b"")


def png_16bit_rgb() -> bytes:
    samples = np.random.default_rng(1).integers(0, 65536, (HEIGHT, WIDTH * 3), dtype=np.uint16)
    rows = b"".join(b"\x00" + row.astype(">u2").tobytes() for row in samples)
    return png_bytes(WIDTH, HEIGHT, 16, 2, rows)


def png_16bit_gray() -> bytes:
    samples = (np.arange(WIDTH * HEIGHT, dtype=np.uint16) * 61).reshape(HEIGHT, WIDTH)
    return encode(Image.fromarray(samples), "PNG")


def palette_with_transparency() -> bytes:
    image = pattern("P")
    return encode(image, "PNG", transparency=3)


def animated(fmt: str) -> bytes:
    first, second = pattern("RGB", seed=1), pattern("RGB", seed=2).transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return encode(first, fmt, save_all=True, append_images=[second])


FORMATS = {
    "jpeg": lambda: encode(pattern(), "JPEG", quality=90),
    "jpeg-progressive": lambda: encode(pattern(), "JPEG", progressive=True),
    "jpeg-grayscale": lambda: encode(pattern("L"), "JPEG"),
    "jpeg-cmyk": lambda: encode(pattern("CMYK"), "JPEG"),
    "jpeg-mpo-phone": lambda: animated("MPO"),
    "png-rgb": lambda: encode(pattern(), "PNG"),
    "png-rgba": lambda: encode(pattern("RGBA"), "PNG"),
    "png-palette-transparency": palette_with_transparency,
    "png-grayscale": lambda: encode(pattern("L"), "PNG"),
    "png-grayscale-alpha": lambda: encode(pattern("LA"), "PNG"),
    "png-1bit": lambda: encode(pattern("1"), "PNG"),
    "png-16bit-grayscale": png_16bit_gray,
    "png-16bit-rgb": png_16bit_rgb,
    "webp-lossy": lambda: encode(pattern(), "WEBP", quality=80),
    "webp-lossless-rgba": lambda: encode(pattern("RGBA"), "WEBP", lossless=True),
    "webp-animated": lambda: animated("WEBP"),
    "bmp": lambda: encode(pattern(), "BMP"),
    "bmp-palette": lambda: encode(pattern("P"), "BMP"),
    "gif": lambda: encode(pattern("P"), "GIF"),
    "gif-animated": lambda: animated("GIF"),
    "tiff": lambda: encode(pattern(), "TIFF"),
    "tiff-lzw": lambda: encode(pattern(), "TIFF", compression="tiff_lzw"),
    "tiff-cmyk": lambda: encode(pattern("CMYK"), "TIFF"),
    "tiff-multipage": lambda: animated("TIFF"),
    "tiff-16bit-grayscale": lambda: encode(Image.open(io.BytesIO(png_16bit_gray())), "TIFF"),
}


@pytest.mark.parametrize("name", FORMATS)
def test_format_decodes_to_the_reference_rgb_pixels(name):
    data = FORMATS[name]()
    ours = decode_image(data)
    reference = reference_decode(data)
    assert ours.mode == "RGB"
    assert ours.size == reference.size == (WIDTH, HEIGHT)
    assert np.array_equal(np.asarray(ours), np.asarray(reference))


@pytest.mark.parametrize(
    "wrap",
    [bytearray, memoryview, lambda data: np.frombuffer(data, np.uint8)],
    ids=["bytearray", "memoryview", "numpy"],
)
def test_any_bytes_like_payload_decodes(wrap):
    data = FORMATS["png-rgb"]()
    assert np.array_equal(np.asarray(decode_image(wrap(data))), np.asarray(reference_decode(data)))
    with pytest.raises(ImageError, match="PDF"):
        decode_image(wrap(BAD_INPUTS["pdf"][0]()))


def test_animated_files_give_their_first_frame():
    ours = decode_image(animated("PNG"))
    assert np.array_equal(np.asarray(ours), np.asarray(pattern("RGB", seed=1)))


def with_orientation(image: Image.Image, fmt: str, orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(image, fmt, exif=exif)


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_exif_orientation_is_applied_as_the_reference_does(fmt, orientation):
    data = with_orientation(pattern(), fmt, orientation)
    ours, reference = decode_image(data), reference_decode(data)
    assert ours.size == reference.size == ((HEIGHT, WIDTH) if orientation >= 5 else (WIDTH, HEIGHT))
    assert np.array_equal(np.asarray(ours), np.asarray(reference))


def test_orientation_6_turns_the_stored_pixels_clockwise():
    stored = pattern()
    ours = decode_image(with_orientation(stored, "PNG", 6))
    assert np.array_equal(np.asarray(ours), np.rot90(np.asarray(stored), k=-1))


def test_malformed_exif_keeps_the_stored_pixels_silently():
    data = encode(pattern(), "PNG", exif=b"Exif\x00\x00II*\x00\xff\xff\xff\x7f")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        decoded = decode_image(data)
    assert np.array_equal(np.asarray(decoded), np.asarray(pattern()))


# --- bad inputs ------------------------------------------------------------------


def truncated(data: bytes, keep: float) -> bytes:
    return data[: int(len(data) * keep)]


def gif_zero_size() -> bytes:
    data = bytearray(encode(pattern("P"), "GIF"))
    data[6:10] = bytes(4)  # logical screen
    frame = data.index(b"\x2c", 13)  # image descriptor after the colour table
    data[frame + 5 : frame + 9] = bytes(4)
    return bytes(data)


def bmp_zero_width() -> bytes:
    data = bytearray(encode(pattern(), "BMP"))
    data[18:22] = struct.pack("<i", 0)
    return bytes(data)


def jpeg_zero_height() -> bytes:
    data = bytearray(encode(pattern(), "JPEG"))
    frame = data.index(b"\xff\xc0")
    data[frame + 5 : frame + 7] = bytes(2)
    return bytes(data)


BAD_INPUTS = {
    "empty": (lambda: b"", "empty", "empty"),
    "random-bytes": (lambda: np.random.default_rng(0).bytes(4096), "unsupported_format", "unrecognised data"),
    "text": (lambda: b"hello, this is not an image", "unsupported_format", "unrecognised data"),
    "svg": (
        lambda: b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="9" height="9"/>',
        "unsupported_format",
        "SVG",
    ),
    "pdf": (lambda: b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n", "unsupported_format", "PDF"),
    "postscript": (lambda: b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 9 9\n", "unsupported_format", "PostScript"),
    "heic": (lambda: b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic", "unsupported_format", "HEIC"),
    "ico": (lambda: encode(pattern(), "ICO"), "unsupported_format", "send JPEG, PNG"),
    "ppm": (lambda: encode(pattern(), "PPM"), "unsupported_format", "send JPEG, PNG"),
    "truncated-jpeg": (lambda: truncated(FORMATS["jpeg"](), 0.5), "corrupt", "truncated or corrupt"),
    "truncated-png": (lambda: truncated(encode(pattern(), "PNG"), 0.6), "corrupt", "truncated or corrupt"),
    "truncated-png-header": (lambda: encode(pattern(), "PNG")[:20], "corrupt", "PNG data is truncated or corrupt"),
    "truncated-webp": (lambda: truncated(FORMATS["webp-lossy"](), 0.5), "corrupt", "WebP data is truncated"),
    "truncated-large-jpeg": (
        lambda: truncated(encode(pattern(width=600, height=400), "JPEG"), 0.7),
        "corrupt",
        "JPEG data is truncated or corrupt",
    ),
    "zero-size-png": (lambda: png_bytes(0, 10, 8, 2, None), "zero_size", "zero width or height (0x10)"),
    "zero-size-gif": (gif_zero_size, "zero_size", "zero width or height"),
    "zero-size-bmp": (bmp_zero_width, "zero_size", "zero width or height"),
    "zero-size-jpeg": (jpeg_zero_height, "zero_size", f"zero width or height ({WIDTH}x0)"),
    # Beyond PIL's own bomb limit (it raises): our error all the same.
    "bomb-png-100000x100000": (
        lambda: png_bytes(100_000, 100_000, 8, 2, None),
        "too_many_pixels",
        "100000x100000 = 10000000000 pixels, over the limit",
    ),
    # Between PIL's warning and error thresholds: our limit applies, silently.
    "png-10000x10000": (lambda: png_bytes(10_000, 10_000, 8, 2, None), "too_many_pixels", "10000x10000"),
}


@pytest.mark.parametrize("name", BAD_INPUTS)
def test_bad_input_raises_image_error_naming_the_problem(name):
    make, code, words = BAD_INPUTS[name]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a PIL warning escaping would fail here
        with pytest.raises(ImageError) as error:
            decode_image(make())
    assert error.value.code == code
    assert words in str(error.value)
    assert isinstance(error.value, ValueError)


def test_byte_limit_is_checked_first():
    data = encode(pattern(), "PNG")
    with pytest.raises(ImageError, match=f"{len(data)} bytes, over the limit of {len(data) - 1} bytes") as error:
        decode_image(data, DecodeLimits(max_bytes=len(data) - 1))
    assert error.value.code == "too_many_bytes"
    decode_image(data, DecodeLimits(max_bytes=len(data)))


def test_pixel_limit_is_checked_from_the_header_before_decoding():
    """The header declares 3000x3000 and holds no pixel data: only the size can be judged."""
    header_only = png_bytes(3000, 3000, 8, 2, None)
    with pytest.raises(ImageError, match="3000x3000 = 9000000 pixels, over the limit of 8999999") as error:
        decode_image(header_only, DecodeLimits(max_pixels=8_999_999))
    assert error.value.code == "too_many_pixels"
    with pytest.raises(ImageError) as error:
        decode_image(header_only, DecodeLimits(max_pixels=9_000_000))
    assert error.value.code == "corrupt"
