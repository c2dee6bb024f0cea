"""Shared fixtures. The `service` fixture runs the real stack once per session:
`python -m dsocr.serve` (tritonserver + vLLM on CPU with the tiny model, and
the OpenAI frontend) on free ports. A failing test that used it gets the tail
of the service log in its report.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from dsocr import paths

# Shared test helpers (tests/helpers.py) import as `helpers`.
sys.path.insert(0, str(Path(__file__).parent))

SERVICE_READY_TIMEOUT_S = 900
LOG_TAIL_CHARS = 20_000


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


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

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def triton_grpc_url(self) -> str:
        return f"127.0.0.1:{self.triton_grpc_port}"

    @property
    def triton_http_url(self) -> str:
        return f"http://127.0.0.1:{self.triton_http_port}"

    def log_tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-LOG_TAIL_CHARS:]

    def wait_ready(self) -> None:
        deadline = time.monotonic() + SERVICE_READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"service exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                if httpx.get(f"{self.base_url}/health/ready", timeout=2).status_code == 200:
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


_SERVICES: list[Service] = []


@pytest.fixture(scope="session")
def service(tmp_path_factory) -> Service:
    log_path = tmp_path_factory.mktemp("service") / "service.log"
    marker = f"DSOCR_TEST_SERVICE={uuid.uuid4().hex}"
    env = dict(os.environ)
    env[marker.split("=")[0]] = marker.split("=")[1]
    env["MODEL"] = str(paths.tiny_model_dir("ocr"))
    env["DSOCR_DEVICE"] = "cpu"
    # Small enough that the tests can send an image over it cheaply.
    env["DSOCR_MAX_IMAGE_BYTES"] = "2000000"
    # URL images from the HTTP server a test starts on loopback, and no other host.
    env["DSOCR_IMAGE_URL_HOSTS"] = "127.0.0.1"
    env["DSOCR_IMAGE_URL_ALLOW_PRIVATE"] = "true"
    ports = {name: free_port() for name in ("port", "triton_http_port", "triton_grpc_port", "triton_metrics_port")}
    command = [sys.executable, "-m", "dsocr.serve", "--quiet", "--host=127.0.0.1"]
    command += [f"--{name.replace('_', '-')}={port}" for name, port in ports.items()]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    service = Service(process, log_path, marker, **ports)
    _SERVICES.append(service)
    try:
        service.wait_ready()
        yield service
    finally:
        code = service.stop()
        time.sleep(1)
        leftovers = processes_with_marker(marker)
        for pid in leftovers:
            os.kill(pid, signal.SIGKILL)
        _SERVICES.remove(service)
        assert code == 0, f"serve exited with {code}:\n{service.log_tail()}"
        assert not leftovers, f"processes outlived the service: {leftovers}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed and "service" in getattr(item, "fixturenames", ()) and _SERVICES:
        report.sections.append(("service log (tail)", _SERVICES[-1].log_tail()))
