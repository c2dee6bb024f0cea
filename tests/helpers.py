"""Helpers shared by the server-tier tests (importable: tests/ is on sys.path)."""

from __future__ import annotations

import contextlib
import http.server
import io
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import tritonclient.grpc as grpcclient
from PIL import Image, ImageDraw

from dsocr import paths
from dsocr.preprocessing import prompt_token_ids
from dsocr.tiny_models import IMAGE_TOKEN


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


def stream_ensemble(url: str, image: bytes, prompt: str, settings: dict, request_id: str = "") -> list:
    """Every response of one streamed ensemble request (an error raises)."""
    responses, errors = [], []
    client = grpcclient.InferenceServerClient(url)
    client.start_stream(callback=lambda result, error: (errors if error else responses).append(error or result))
    try:
        client.async_stream_infer(
            "deepseek_ocr",
            [uint8_input("IMAGE", image), uint8_input("PROMPT", prompt.encode()),
             uint8_input("PARAMETERS", json.dumps(settings).encode())],
            request_id=request_id,
        )
    finally:
        client.stop_stream()  # waits for the stream to end
        client.close()
    if errors:
        raise errors[0]
    return responses


def expected_prompt_ids(tokenizer, prompt: str, image_tokens: int) -> list[int]:
    """The prompt's token ids as DeepSeek's processing lays them out, for one image."""
    return prompt_token_ids(
        prompt,
        [image_tokens],
        lambda text: tokenizer.encode(text, add_special_tokens=False),
        tokenizer.convert_tokens_to_ids(IMAGE_TOKEN),
        tokenizer.bos_token_id,
    )


@contextlib.contextmanager
def serving_image(image: bytes):
    """A local HTTP server on 127.0.0.1: the image at /page.png, /moved redirecting to it, else 404.
    Yields its "host:port"."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path == "/moved":
                self.send_response(302)
                self.send_header("Location", "/page.png")
                self.end_headers()
            elif self.path == "/page.png":
                self.send_response(200)
                self.send_header("Content-Type", "image/png")
                self.send_header("Content-Length", str(len(image)))
                self.end_headers()
                self.wfile.write(image)
            else:
                self.send_error(404)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        thread.join()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def running_frontend(triton_grpc_urls: list[str], log_path: Path, env: dict[str, str] | None = None):
    """An OpenAI frontend over the given Triton servers; yields its base URL once ready."""
    port = free_port()
    command = [sys.executable, "-m", "openai_frontend", "--host=127.0.0.1", f"--port={port}",
               f"--triton-grpc-url={','.join(triton_grpc_urls)}"]
    with open(log_path, "wb") as out:
        process = subprocess.Popen(command, env={**os.environ, **(env or {})}, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, log_path.read_text()
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.3)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


# --- the service: `python -m dsocr.serve` as a subprocess -----------------------

SERVICE_READY_TIMEOUT_S = 900
LOG_TAIL_CHARS = 20_000


def processes_with_marker(marker: str) -> list[int]:
    """Pids whose environment carries `marker`: every descendant inherits it."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if marker.encode() in (entry / "environ").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


@dataclass
class Service:
    process: subprocess.Popen
    log_path: Path
    marker: str
    port: int
    triton_http_port: int
    triton_grpc_port: int
    triton_metrics_port: int
    frontend: bool = True

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def triton_grpc_url(self) -> str:
        return f"127.0.0.1:{self.triton_grpc_port}"

    @property
    def triton_http_url(self) -> str:
        return f"http://127.0.0.1:{self.triton_http_port}"

    @property
    def ready_url(self) -> str:
        if self.frontend:
            return f"{self.base_url}/health/ready"
        return f"{self.triton_http_url}/v2/models/deepseek_ocr/ready"

    def log_tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-LOG_TAIL_CHARS:]

    def wait_ready(self) -> None:
        deadline = time.monotonic() + SERVICE_READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"service exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                if httpx.get(self.ready_url, timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(1)
        raise RuntimeError(f"service not ready after {SERVICE_READY_TIMEOUT_S} s:\n{self.log_tail()}")

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=120)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()


SERVICES: list[Service] = []

# The frontend's settings the tests rely on.
FRONTEND_ENV = {
    # Small enough that the tests can send an image over it cheaply.
    "DSOCR_MAX_IMAGE_BYTES": "2000000",
    # URL images from the HTTP server a test starts on loopback, and no other host.
    "DSOCR_IMAGE_URL_HOSTS": "127.0.0.1",
    "DSOCR_IMAGE_URL_ALLOW_PRIVATE": "true",
}


def start_service(log_path: Path, *flags: str, ports: dict[str, int] | None = None, family: str = "ocr",
                  model: str | None = None, device: str = "cpu") -> Service:
    """`python -m dsocr.serve` on free ports (or `ports`): a tiny model on CPU, unless `model`/`device`."""
    marker = f"DSOCR_TEST_SERVICE={uuid.uuid4().hex}"
    env = {**os.environ, **FRONTEND_ENV, "MODEL": model or str(paths.tiny_model_dir(family)), "DSOCR_DEVICE": device}
    # vLLM renames its processes (setproctitle), which by default overwrites
    # /proc/PID/environ, where the marker is looked for.
    env["SPT_NOENV"] = "1"
    env[marker.split("=")[0]] = marker.split("=")[1]
    names = ("port", "triton_http_port", "triton_grpc_port", "triton_metrics_port")
    ports = ports or {name: free_port() for name in names}
    command = [sys.executable, "-m", "dsocr.serve", "--quiet", "--host=127.0.0.1", *flags]
    command += [f"--{name.replace('_', '-')}={port}" for name, port in ports.items()]
    with open(log_path, "ab") as log:
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    service = Service(process, log_path, marker, **ports, frontend="--no-frontend" not in flags)
    SERVICES.append(service)
    return service


def stop_service(service: Service) -> None:
    """Stop it; it must exit cleanly and leave no process behind."""
    code = service.stop()
    time.sleep(1)
    leftovers = processes_with_marker(service.marker)
    for pid in leftovers:
        os.kill(pid, signal.SIGKILL)
    SERVICES.remove(service)
    assert code == 0, f"serve exited with {code}:\n{service.log_tail()}"
    # Triton unloads every model and exits, rather than giving up after its exit timeout.
    assert "Exit timeout expired" not in service.log_tail(), service.log_tail()
    assert not leftovers, f"processes outlived the service: {leftovers}"
