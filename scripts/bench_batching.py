"""Does vLLM batch requests that arrive through Triton? One run, one comparison.

    python scripts/bench_batching.py [--url 127.0.0.1:8001] [--concurrency 1 4 8]

Against a running service (scripts/serve.sh): sends the same decode-heavy
request (small resolution mode, a fixed number of output tokens) alone and
then N at once through the ensemble, and prints how long N took compared
with one. Serialised requests would take N times as long; batched ones about
as long as one while decoding dominates. (On a CPU the vision encoder of a
large image is compute-bound, so image-heavy loads cannot show batching.)
"""

from __future__ import annotations

import argparse
import io
import json
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import tritonclient.grpc as grpcclient
from PIL import Image, ImageDraw


def page() -> bytes:
    image = Image.new("RGB", (300, 200), "white")
    ImageDraw.Draw(image).text((10, 10), "Total: 17.50 EUR", fill="black")
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def uint8(name: str, data: bytes) -> grpcclient.InferInput:
    tensor = grpcclient.InferInput(name, [len(data)], "UINT8")
    tensor.set_data_from_numpy(np.frombuffer(data, dtype=np.uint8))
    return tensor


def one_request(url: str, image: bytes, settings: dict) -> float:
    errors = []
    client = grpcclient.InferenceServerClient(url)
    client.start_stream(callback=lambda result, error: error and errors.append(error))
    started = time.monotonic()
    client.async_stream_infer("deepseek_ocr", [
        uint8("IMAGE", image), uint8("PROMPT", b"<image>\nFree OCR."), uint8("PARAMETERS", json.dumps(settings).encode()),
    ])
    client.stop_stream()
    client.close()
    if errors:
        raise errors[0]
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="127.0.0.1:8001", help="Triton gRPC endpoint")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[4, 8])
    parser.add_argument("--max-tokens", type=int, default=200)
    args = parser.parse_args()
    image = page()
    settings = {"max_tokens": args.max_tokens, "ignore_eos": True, "resolution_mode": "tiny", "ngram_size": 0}
    one_request(args.url, image, {**settings, "max_tokens": 2})  # warm-up
    alone = one_request(args.url, image, settings)
    print(f"1 request, {args.max_tokens} tokens: {alone:.1f} s")
    for n in args.concurrency:
        started = time.monotonic()
        with ThreadPoolExecutor(n) as pool:
            list(pool.map(lambda _: one_request(args.url, image, settings), range(n)))
        together = time.monotonic() - started
        print(f"{n} at once: {together:.1f} s = {together / alone:.2f}x one request (serialised: {n}x)")


if __name__ == "__main__":
    main()
