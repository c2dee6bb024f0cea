"""Helpers shared by the tests: images, the real service and frontends as subprocesses, clients of them."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import http.server
import io
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import openai
from PIL import Image, ImageDraw

from dsocr import paths
from dsocr.engine_config import engine_json, load_engine_args
from dsocr.preprocessing import prompt_token_ids
from dsocr.processes import (
    free_port,
    free_ports,
    marked_environment,
    port_flags,
    processes_with_marker,
    wait_answering,
)
from dsocr.tiny_models import IMAGE_TOKEN
from dsocr.triton import client as ensemble
from dsocr.triton.contract import ENSEMBLE, ready_path


def page_png(text: str = "Invoice 42\nTotal: 17.50 EUR", size=(480, 360)) -> bytes:
    image = Image.new("RGB", size, "white")
    ImageDraw.Draw(image).multiline_text((20, 20), text, fill="black", spacing=12)
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def stream_ensemble(url: str, image: bytes, prompt: str, parameters: dict, request_id: str = "") -> list:
    """Every response of one streamed ensemble request (a streamed error raises InferenceServerException)."""
    return asyncio.run(ensemble.collect(url, ensemble.ensemble_request(image, prompt, parameters, request_id)))


def cancel_ensemble_request(url: str, request_id: str) -> None:
    """The CANCEL a client of the ensemble sends; returns once the vLLM model has answered it."""
    asyncio.run(ensemble.collect(url, ensemble.cancel_request(request_id)))


def openai_client(base_url: str, *, api_key: str = "unused", timeout: float = 120, **kwargs) -> openai.OpenAI:
    """The official SDK on a frontend, without the SDK's retries (a test sees every answer)."""
    return openai.OpenAI(base_url=f"{base_url}/v1", api_key=api_key, max_retries=0, timeout=timeout, **kwargs)


def async_openai_client(base_url: str, *, api_key: str = "unused", timeout: float = 120) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{base_url}/v1", api_key=api_key, max_retries=0, timeout=timeout)


def prometheus_value(metrics_url: str, name: str) -> float:
    """The sum over labels of a sample on a Prometheus endpoint; it must be there."""
    text = httpx.get(f"{metrics_url}/metrics", timeout=10).text
    samples = [line for line in text.splitlines() if line.startswith((f"{name}{{", f"{name} "))]
    assert samples, f"the metrics do not carry {name}"
    return sum(float(line.rsplit(" ", 1)[1]) for line in samples)


def metric_when_still(service: Service, name: str, quiet_s: float = 2.0, timeout_s: float = 30) -> float:
    """A metric's value once it has not moved for quiet_s (longer than the engine metrics' one-second lag,
    dsocr.triton.metrics): what the engine did is all counted, and it does nothing more."""
    deadline = time.monotonic() + timeout_s
    value = service.metric(name)
    while time.monotonic() < deadline:
        time.sleep(quiet_s)
        latest = service.metric(name)
        if latest == value:
            return value
        value = latest
    raise AssertionError(f"{name} still moving after {timeout_s} s")


def wait_until(condition: Callable[[], bool], timeout_s: float = 30) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return False


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
def serving_image(image: bytes, files: dict[str, tuple[bytes, str]] | None = None):
    """A local HTTP server on 127.0.0.1: the image at /page.png, /moved redirecting to it, `files`
    ({path: (body, content type)}), else 404. Yields its "host:port"."""
    served = {"/page.png": (image, "image/png"), **(files or {})}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path == "/moved":
                self.send_response(302)
                self.send_header("Location", "/page.png")
                self.end_headers()
            elif self.path in served:
                body, content_type = served[self.path]
                self.send_response(200)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
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


class OpenAIEndpoint:
    """Something that serves the OpenAI API at `base_url`, and the SDK's clients of it."""

    base_url: str

    def client(self, **kwargs) -> openai.OpenAI:
        return openai_client(self.base_url, **kwargs)

    def async_client(self, **kwargs) -> openai.AsyncOpenAI:
        return async_openai_client(self.base_url, **kwargs)


@dataclass(frozen=True)
class Frontend(OpenAIEndpoint):
    base_url: str


@contextlib.contextmanager
def running_frontend(
    triton_grpc_urls: list[str], log_path: Path, env: dict[str, str] | None = None
) -> Iterator[Frontend]:
    """An OpenAI frontend over the given Triton servers, once ready."""
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "openai_frontend",
        "--host=127.0.0.1",
        f"--port={port}",
        f"--triton-grpc-url={','.join(triton_grpc_urls)}",
    ]
    with open(log_path, "wb") as out:
        process = subprocess.Popen(command, env={**os.environ, **(env or {})}, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_answering("the frontend", process, f"{url}/health", log_path.read_text, timeout_s=60)
        yield Frontend(url)
    finally:
        process.terminate()
        process.wait(timeout=30)


# --- the service: `python -m dsocr.serve` as a subprocess -----------------------

SERVICE_READY_TIMEOUT_S = 900
LOG_TAIL_CHARS = 20_000


@dataclass
class Service(OpenAIEndpoint):
    """`python -m dsocr.serve` as a subprocess; `with` waits until it is ready and stops it after."""

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
    def triton_metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.triton_metrics_port}"

    @property
    def ready_url(self) -> str:
        if self.frontend:
            return f"{self.base_url}/health/ready"
        return f"{self.triton_http_url}{ready_path()}"

    def successes(self) -> int:
        """Requests the server's ensemble has answered, from Triton's statistics."""
        stats = httpx.get(f"{self.triton_http_url}/v2/models/{ENSEMBLE}/stats", timeout=10).json()
        return int(stats["model_stats"][0]["inference_stats"]["success"]["count"])

    def metric(self, name: str) -> float:
        """A sample of Triton's metrics endpoint (vLLM's engine metrics included)."""
        return prometheus_value(self.triton_metrics_url, name)

    def __enter__(self) -> Service:
        self.wait_ready()
        return self

    def __exit__(self, *exc_info) -> None:
        stop_service(self)

    def log_tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-LOG_TAIL_CHARS:]

    def wait_ready(self) -> None:
        wait_answering("the service", self.process, self.ready_url, self.log_tail, SERVICE_READY_TIMEOUT_S, every_s=1)

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=120)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()


SERVICES: list[Service] = []

# The context of the engine the test services run (engine.json's CPU section).
SERVICE_MAX_MODEL_LEN = load_engine_args(engine_json(), on_cpu=True)["max_model_len"]

# The frontend's settings the tests rely on.
FRONTEND_ENV = {
    # Small enough that the tests can send an image over it cheaply.
    "DSOCR_MAX_IMAGE_BYTES": "2000000",
    "DSOCR_MAX_DOCUMENT_BYTES": "2000000",
    # A page of the tiny model's text takes a second or two on CPU: the SDK's calls, which cannot
    # name max_tokens, get a few tokens a page.
    "DSOCR_OCR_MAX_TOKENS": "4",
    # URL images from the HTTP server a test starts on loopback, and no other host.
    "DSOCR_IMAGE_URL_HOSTS": "127.0.0.1",
    "DSOCR_IMAGE_URL_ALLOW_PRIVATE": "true",
}


def start_service(
    log_path: Path,
    *flags: str,
    ports: dict[str, int] | None = None,
    family: str = "ocr",
    model: str | None = None,
    device: str = "cpu",
) -> Service:
    """`python -m dsocr.serve` on free ports (or `ports`): a tiny model on CPU, unless `model`/`device`."""
    marker, marking = marked_environment("DSOCR_TEST_SERVICE")
    model = model or str(paths.tiny_model_dir(family))
    env = {**os.environ, **FRONTEND_ENV, **marking, "MODEL": model, "DSOCR_DEVICE": device}
    ports = ports or free_ports()
    command = [sys.executable, "-m", "dsocr.serve", "--quiet", "--host=127.0.0.1", *flags, *port_flags(ports)]
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


# --- load while something happens ------------------------------------------------

LOAD_PAGE = "data:image/png;base64," + base64.b64encode(page_png()).decode()
LOAD_MAX_TOKENS = 8


def ocr(api: openai.OpenAI, max_tokens: int = LOAD_MAX_TOKENS):
    """A small, fixed request: the tiny mode, a few tokens (ignore_eos), the served model."""
    return api.chat.completions.create(
        model="deepseek-ocr",
        max_tokens=max_tokens,
        messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {"url": LOAD_PAGE}}]}],
        extra_body={"resolution_mode": "tiny", "ignore_eos": True},
    )


def wait_for(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    assert wait_until(condition, timeout_s), f"timed out waiting until {what}"


@dataclass
class Outcome:
    started: float
    ended: float
    status: int  # 200, the API error's status, or 0 for a connection that failed
    retry_after: str | None = None
    error: str = ""


@dataclass
class Load:
    """Clients sending requests back to back through a frontend, until stopped."""

    frontend: OpenAIEndpoint
    clients: int = 3
    outcomes: list[Outcome] = field(default_factory=list)

    def __post_init__(self):
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._client, daemon=True) for _ in range(self.clients)]

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_exc) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=180)

    def _client(self) -> None:
        api = self.frontend.client()
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                assert ocr(api).choices[0].finish_reason == "length"
                self.outcomes.append(Outcome(started, time.monotonic(), 200))
            except openai.APIStatusError as exc:
                retry_after = exc.response.headers.get("retry-after")
                self.outcomes.append(Outcome(started, time.monotonic(), exc.status_code, retry_after, str(exc.body)))
            except openai.APIConnectionError as exc:
                self.outcomes.append(Outcome(started, time.monotonic(), 0, None, repr(exc)))
                time.sleep(0.2)  # a frontend that is down: do not spin

    def served_since(self, moment: float) -> int:
        return sum(1 for o in self.outcomes if o.status == 200 and o.started > moment)
