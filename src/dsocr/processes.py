"""The processes of a running stack: free ports to start one on, and finding every process it started.

A stack started with an environment marker (a variable whose value is unique
to it) can be found whole, whatever the processes renamed themselves to:
every descendant (Triton's stubs, vLLM's engine core) inherits the
environment. vLLM renames its processes with setproctitle, which overwrites
/proc/PID/environ unless SPT_NOENV is set: `marked_environment` sets both.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx

# The port flags of `python -m dsocr.serve`, as keyword names.
SERVE_PORTS = ("port", "triton_http_port", "triton_grpc_port", "triton_metrics_port")


# Below Linux's ephemeral range (32768-60999), from which outgoing connections take their ports: a port
# the kernel picked as free is in that range and can be taken by a client's socket before the server
# that was given it binds it ("Socket ... already in use" at start).
_PORTS = range(20000, 32768)
_handed_out: set[int] = set()


def free_port() -> int:
    """A port no socket holds now and this process has not handed out before."""
    while True:
        port = random.choice(_PORTS)
        if port in _handed_out:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("0.0.0.0", port))  # as tritonserver and uvicorn bind
            except OSError:
                continue
        _handed_out.add(port)
        return port


def free_ports(names: tuple[str, ...] = SERVE_PORTS) -> dict[str, int]:
    return {name: free_port() for name in names}


def port_flags(ports: dict[str, int]) -> list[str]:
    """{"triton_grpc_port": 8001} -> ["--triton-grpc-port=8001"]."""
    return [f"--{name.replace('_', '-')}={port}" for name, port in ports.items()]


def marked_environment(variable: str) -> tuple[str, dict[str, str]]:
    """(marker, the variables that carry it into every descendant process)."""
    marker = uuid.uuid4().hex
    return f"{variable}={marker}", {variable: marker, "SPT_NOENV": "1"}


GROUP_EXIT_TIMEOUT_S = 30.0  # a killed process's memory is freed in well under a second


def stop_group(process: subprocess.Popen, grace_s: float) -> bool:
    """SIGTERM a process started in a session of its own, wait up to grace_s, then SIGKILL whatever is
    left of its process group (stubs, engine cores). True when it had stopped by itself."""
    stopped = True
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            stopped = False
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    # Its stubs and engine die after it, mapping their shared memory until they do: wait for them, so
    # that what is cleaned up next finds that memory free.
    deadline = time.monotonic() + GROUP_EXIT_TIMEOUT_S
    while group_members(process.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    return stopped


def group_members(pgid: int) -> list[int]:
    """Pids of the live processes (zombies aside) in process group `pgid`."""

    def member(stat: bytes) -> bool:
        state, _ppid, pgrp = stat.rsplit(b")", 1)[1].split()[:3]
        return int(pgrp) == pgid and state != b"Z"

    return _pids_where("stat", member)


def processes_with_marker(marker: str) -> list[int]:
    """Pids whose environment carries `marker` ("NAME=value")."""
    return _pids_where("environ", lambda environ: marker.encode() in environ)


def _pids_where(proc_file: str, matches: Callable[[bytes], bool]) -> list[int]:
    """Pids whose /proc/PID/`proc_file` matches (processes that end meanwhile are passed over)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if matches((entry / proc_file).read_bytes()):
                found.append(int(entry.name))
        except (OSError, ValueError):
            continue
    return found


def wait_answering(
    name: str, process: subprocess.Popen, url: str, log: Callable[[], str], timeout_s: float, every_s: float = 0.3
) -> float:
    """Seconds until `url` answers 200; a RuntimeError with the process's log if it exits first or the time
    runs out."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with {process.returncode}:\n{log()}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2).status_code == 200:
                return time.monotonic() - started
        time.sleep(every_s)
    raise RuntimeError(f"{name} not ready after {timeout_s:.0f} s:\n{log()}")
