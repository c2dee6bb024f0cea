"""Helpers shared by the server-tier tests (importable: tests/ is on sys.path)."""

from __future__ import annotations

import io
import json

import numpy as np
import tritonclient.grpc as grpcclient
from PIL import Image, ImageDraw


def page_png(text: str = "Invoice 42\nTotal: 17.50 EUR", size=(480, 360)) -> bytes:
    image = Image.new("RGB", size, "white")
    ImageDraw.Draw(image).multiline_text((20, 20), text, fill="black", spacing=12)
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def uint8_input(name: str, data: bytes) -> grpcclient.InferInput:
    tensor = grpcclient.InferInput(name, [len(data)], "UINT8")
    tensor.set_data_from_numpy(np.frombuffer(data, dtype=np.uint8))
    return tensor


def stream_ensemble(url: str, image: bytes, prompt: str, settings: dict) -> list:
    """Every response of one streamed ensemble request (an error raises)."""
    responses, errors = [], []
    client = grpcclient.InferenceServerClient(url)
    client.start_stream(callback=lambda result, error: (errors if error else responses).append(error or result))
    try:
        client.async_stream_infer(
            "deepseek_ocr",
            [uint8_input("IMAGE", image), uint8_input("PROMPT", prompt.encode()),
             uint8_input("PARAMETERS", json.dumps(settings).encode())],
        )
    finally:
        client.stop_stream()  # waits for the stream to end
        client.close()
    if errors:
        raise errors[0]
    return responses
