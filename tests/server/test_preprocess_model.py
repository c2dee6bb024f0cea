"""The `preprocess` Triton model, called directly over gRPC on the running server."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from PIL import Image
from tritonclient.utils import InferenceServerException

from dsocr.preprocessing import preprocess_image, resolution_mode
from dsocr.triton import client as ensemble
from dsocr.triton.contract import PREPROCESS_MODEL

PROMPT = "<image>\nFree OCR."


def encoded(size, mode="RGB", fmt="PNG", color=(30, 120, 200)) -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size, color if mode == "RGB" else 128).save(buffer, fmt)
    return buffer.getvalue()


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header declares a size but carries almost no pixels (a bomb's header)."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    pixels = png_chunk(b"IDAT", zlib.compress(b"\0" * 64))
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + pixels + png_chunk(b"IEND", b"")


@pytest.fixture(scope="module")
def client(service):
    client = grpcclient.InferenceServerClient(service.triton_grpc_url)
    yield client
    client.close()


def preprocess(client, image: bytes, prompt: str = PROMPT, **parameters):
    return client.infer(PREPROCESS_MODEL, ensemble.request_inputs(image, prompt, parameters))


@pytest.mark.parametrize(
    "mode, size",
    [
        ("gundam", (1000, 1400)),
        ("gundam", (300, 200)),
        ("tiny", (900, 600)),
        ("small", (900, 600)),
        ("base", (900, 600)),
        ("large", (1500, 700)),
    ],
)
def test_views_match_the_package(client, mode, size):
    image = encoded(size)
    result = preprocess(client, image, resolution_mode=mode)
    expected = preprocess_image(image, resolution_mode("ocr", mode))
    assert np.array_equal(result.as_numpy("GLOBAL_VIEW"), expected.global_view[None])
    assert np.array_equal(result.as_numpy("TILES"), expected.tiles)
    assert result.as_numpy("SPATIAL_CROP").tolist() == [list(expected.spatial_crop)]


def test_gundam_with_nine_tiles(client):
    result = preprocess(client, encoded((1920, 1920)), resolution_mode="gundam", max_crops=9)
    assert result.as_numpy("TILES").shape == (9, 3, 640, 640)
    assert result.as_numpy("SPATIAL_CROP").tolist() == [[3, 3]]


def truncated_jpeg() -> bytes:
    return encoded((400, 300), fmt="JPEG")[:600]


BAD_INPUTS = [
    ("empty", lambda: b"", {}, PROMPT, "empty"),
    ("garbage", lambda: b"\x00garbage bytes" * 10, {}, PROMPT, "unsupported image format"),
    ("truncated", truncated_jpeg, {}, PROMPT, "truncated or corrupt"),
    ("pdf", lambda: b"%PDF-1.7\n" + b"0" * 200, {}, PROMPT, "PDF"),
    ("too many bytes", lambda: encoded((64, 64)) + b"\0" * 3_000_000, {}, PROMPT, "over the limit"),
    ("too many pixels", lambda: png_header_only(100_000, 100_000), {}, PROMPT, "pixels"),
    ("zero size", lambda: png_header_only(0, 10), {}, PROMPT, "zero"),
    ("no placeholder", lambda: encoded((64, 64)), {}, "Free OCR.", "placeholder"),
    ("two placeholders", lambda: encoded((64, 64)), {}, "<image><image>", "placeholder"),
    ("unknown mode", lambda: encoded((64, 64)), {"resolution_mode": "huge"}, PROMPT, "resolution_mode"),
    ("crops beyond gundam", lambda: encoded((64, 64)), {"resolution_mode": "base", "max_crops": 4}, PROMPT, "gundam"),
]


@pytest.mark.parametrize("case, image, settings, prompt, named", BAD_INPUTS, ids=[c[0] for c in BAD_INPUTS])
def test_bad_input_is_invalid_argument_naming_the_problem(client, case, image, settings, prompt, named):
    with pytest.raises(InferenceServerException) as error:
        preprocess(client, image(), prompt, **settings)
    assert "INVALID_ARGUMENT" in str(error.value.status())
    assert named in error.value.message()
    # ... and the model keeps serving.
    assert preprocess(client, encoded((64, 64))).as_numpy("SPATIAL_CROP").tolist() == [[1, 1]]
