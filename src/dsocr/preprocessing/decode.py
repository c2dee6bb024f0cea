"""Decoding the encoded image bytes a client sends into an RGB PIL image.

The result equals DeepSeek's loader: `Image.open`, `ImageOps.exif_transpose`,
`.convert("RGB")`. Around it: size limits checked before any pixel is
decoded, a closed list of formats, and one error type (`ImageError`) whose
message names the problem, whatever the decoder raised.
"""

from __future__ import annotations

import io
import struct
import warnings
from dataclasses import dataclass

from PIL import Image, ImageOps

from .errors import ImageError

# PIL's JPEG reader also opens the MPO files many phones write (a JPEG with
# extra frames), as format "MPO".
SUPPORTED_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF")
_SUPPORTED_NAMES = "JPEG, PNG, WebP, BMP, GIF or TIFF"

DEFAULT_MAX_BYTES = 20 * 1024 * 1024
# Below PIL's own decompression-bomb threshold (about 89 Mpx), above the
# largest phone cameras (50 Mpx).
DEFAULT_MAX_PIXELS = 64_000_000


@dataclass(frozen=True)
class DecodeLimits:
    """What one image may weigh: encoded bytes, and pixels as its header declares."""

    max_bytes: int = DEFAULT_MAX_BYTES
    max_pixels: int = DEFAULT_MAX_PIXELS


def decode_image(data: bytes, limits: DecodeLimits = DecodeLimits()) -> Image.Image:
    """Decode one encoded image (any bytes-like object) into an RGB image, its
    EXIF orientation applied.

    JPEG, PNG, WebP, BMP, GIF and TIFF; animated or multi-page files give
    their first frame. Raises ImageError (code in parentheses) for: empty data
    ("empty"), more than limits.max_bytes ("too_many_bytes"), data that is no
    supported image ("unsupported_format"), a header declaring a zero width or
    height ("zero_size") or more than limits.max_pixels ("too_many_pixels"),
    truncated or corrupt data ("corrupt"), and pixels that do not convert to
    RGB ("unsupported_mode").
    """
    _check_byte_size(data, limits)
    image = _open(data, limits)
    _check_dimensions(image.size, limits)
    _decode_pixels(image)
    _apply_exif_orientation(image)
    return _to_rgb(image)


def _check_byte_size(data: bytes, limits: DecodeLimits) -> None:
    if len(data) == 0:
        raise ImageError("empty", "image data is empty (0 bytes)")
    if len(data) > limits.max_bytes:
        raise ImageError("too_many_bytes", f"image is {len(data)} bytes, over the limit of {limits.max_bytes} bytes")


def _open(data: bytes, limits: DecodeLimits) -> Image.Image:
    """Read the header only (PIL opens lazily); no pixel is decoded yet."""
    try:
        with warnings.catch_warnings():
            # Size limits are ours to enforce (checked right after opening);
            # PIL's warning would only be noise in the server log.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return Image.open(io.BytesIO(data), formats=SUPPORTED_FORMATS)
    except Image.DecompressionBombError as exc:
        # Beyond even PIL's limit (which it enforces inside open()).
        header = bytes(data)
        raise _too_many_pixels(_declared_size(header, _supported_signature(header)), limits) from exc
    except Image.UnidentifiedImageError as exc:
        raise _unidentified(bytes(data)) from exc
    except Exception as exc:
        raise _corrupt(_supported_signature(bytes(data[:16])), exc) from exc


def _check_dimensions(size: tuple[int, int], limits: DecodeLimits) -> None:
    width, height = size
    if width == 0 or height == 0:
        raise ImageError("zero_size", f"image has zero width or height ({width}x{height})")
    if width * height > limits.max_pixels:
        raise _too_many_pixels(size, limits)


def _too_many_pixels(size: tuple[int, int] | None, limits: DecodeLimits) -> ImageError:
    declared = f"{size[0]}x{size[1]} = {size[0] * size[1]} pixels" if size else "more pixels"
    return ImageError("too_many_pixels", f"image is {declared}, over the limit of {limits.max_pixels} pixels")


def _decode_pixels(image: Image.Image) -> None:
    try:
        image.load()
    except Exception as exc:
        raise _corrupt(image.format, exc) from exc


def _corrupt(kind: str | None, exc: Exception) -> ImageError:
    """Whatever a decoder raises on hostile input is the image's fault: one error for all."""
    return ImageError("corrupt", f"{kind or 'image'} data is truncated or corrupt: {exc}")


def _apply_exif_orientation(image: Image.Image) -> None:
    """Rotate/flip as the EXIF Orientation tag says, in place (no copy when absent)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # PIL warns about corrupt EXIF, which we ignore below
            ImageOps.exif_transpose(image, in_place=True)
    except Exception:
        # Malformed EXIF: keep the pixels as stored, as the reference loaders do.
        pass


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode == "RGB":
        return image
    try:
        return image.convert("RGB")
    except Exception as exc:
        raise ImageError("unsupported_mode", f"cannot convert pixel mode {image.mode} to RGB: {exc}") from exc


# --- naming what PIL could not open -------------------------------------------

_UNSUPPORTED_SIGNATURES = (
    (b"%PDF", "a PDF document"),
    (b"%!PS", "a PostScript document"),
    (b"\xc5\xd0\xd3\xc6", "an EPS document"),
)
# The supported formats' signatures, by PIL's format name (WebP's is RIFF....WEBP).
SIGNATURES = (
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"II+\x00", "TIFF"),  # BigTIFF
    (b"MM\x00+", "TIFF"),
)


def _unidentified(data: bytes) -> ImageError:
    """The error for data PIL could not open, saying what the data looks like."""
    supported = _supported_signature(data)
    if supported is not None:
        size = _declared_size(data, supported)
        if size is not None and 0 in size:
            return ImageError("zero_size", f"image has zero width or height ({size[0]}x{size[1]})")
        return ImageError("corrupt", f"{supported} data is truncated or corrupt: its header cannot be read")
    return ImageError("unsupported_format", f"unsupported image format ({_describe(data)}); send {_SUPPORTED_NAMES}")


def image_format(data: bytes) -> str | None:
    """PIL's name of the supported format whose signature opens `data`, or None."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    return next((name for magic, name in SIGNATURES if data.startswith(magic)), None)


def _supported_signature(data: bytes) -> str | None:
    """The format's name as people write it (WebP), for messages."""
    found = image_format(data)
    return "WebP" if found == "WEBP" else found


def _describe(data: bytes) -> str:
    for magic, name in _UNSUPPORTED_SIGNATURES:
        if data.startswith(magic):
            return name
    head = data[:1024].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if head.startswith(b"<svg") or (head.startswith(b"<?xml") and b"<svg" in head):
        return "an SVG image"
    if data[4:8] == b"ftyp":
        brand = data[8:12].decode("ascii", "replace")
        return f"an ISO media file (brand {brand!r}, e.g. HEIC or AVIF)"
    return "unrecognised data"


def _declared_size(data: bytes, kind: str | None) -> tuple[int, int] | None:
    """(width, height) from the header of a PNG, GIF, BMP or JPEG; None if unreadable."""
    try:
        if kind == "PNG" and data[12:16] == b"IHDR":
            return struct.unpack(">II", data[16:24])
        if kind == "GIF":
            return struct.unpack("<HH", data[6:10])
        if kind == "BMP":
            width, height = struct.unpack("<ii", data[18:26])
            return abs(width), abs(height)
        if kind == "JPEG":
            return _jpeg_frame_size(data)
    except struct.error:
        return None
    return None


def _jpeg_frame_size(data: bytes) -> tuple[int, int] | None:
    """Walk the JPEG markers to the first start-of-frame and read its size."""
    start_of_frame = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
    offset = 2
    while offset + 4 <= len(data) and data[offset] == 0xFF:
        marker = data[offset + 1]
        if marker in start_of_frame:
            height, width = struct.unpack(">HH", data[offset + 5 : offset + 9])
            return width, height
        (length,) = struct.unpack(">H", data[offset + 2 : offset + 4])
        offset += 2 + length
    return None
