"""`--serve`: the local stack (`python -m dsocr.serve`: Triton, then the frontend) for the length of a run.

It runs on free ports of 127.0.0.1, in a session of its own (a Ctrl-C meant for the run does not
reach it half-way through), logging to a file; the run waits until it is ready and stops it, with
every process it started, at the end, however the run ends.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from dsocr.processes import free_ports, port_flags, stop_group

READY_TIMEOUT_S = 900.0  # the first start on a GPU downloads the model
STOP_GRACE_S = 120.0


class StackFailed(RuntimeError):
    pass


def serve_command(ports: dict[str, int], extra: list[str] | None = None) -> list[str]:
    return [sys.executable, "-m", "dsocr.serve", "--quiet", "--host=127.0.0.1", *port_flags(ports), *(extra or [])]


@contextlib.contextmanager
def local_stack(log_path: Path, ready_timeout_s: float = READY_TIMEOUT_S) -> Iterator[str]:
    """Yields the frontend's base URL once the stack is ready."""
    ports = free_ports()
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        process = subprocess.Popen(serve_command(ports), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{ports['port']}"
    try:
        wait_ready(process, f"{url}/health/ready", ready_timeout_s, log_path)
        yield url
    finally:
        stop_group(process, STOP_GRACE_S)


def wait_ready(process: subprocess.Popen[bytes], ready_url: str, timeout_s: float, log_path: Path) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise StackFailed(f"the local stack exited with {process.returncode}; its log: {log_path}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(ready_url, timeout=2).status_code == 200:
                return
        time.sleep(1)
    raise StackFailed(f"the local stack was not ready after {timeout_s:.0f} s; its log: {log_path}")
