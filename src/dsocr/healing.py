"""Finding the parts of a running Triton server that died, and what they left behind.

A Python-backend model instance is a stub process, a child of tritonserver
named by its command line (`triton_python_backend_stub <model.py> <shm region>
... <instance name>`). Triton 2.51 neither restarts a stub that died nor
counts it in the model's readiness: its instance fails every request it gets
("Stub process ... is not healthy") while the model says it is ready. vLLM's
engine (its EngineCore and workers) runs in processes of the vLLM model's
stub. So the serve command looks at the processes themselves
(`live_instances`, `orphan_engines`) and heals through Triton's model
repository API (`Repository`): the model is unloaded with the ensemble over
it, so that readiness says not ready while it is down, and loaded again.

Shared memory: each stub's region (`/dev/shm/triton_python_backend_shm_region_*`)
and vLLM's (`psm_*`) outlive a process killed with -9. A region no live
process maps, older than a grace period (so that one being set up is never
taken), belongs to nobody: `stale_shared_memory` finds them.
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

STUB = "triton_python_backend_stub"
SHARED_MEMORY = Path("/dev/shm")
SHM_PREFIXES = ("triton_python_backend_shm_region_", "psm_")
# A region younger than this may be between its creation and its first mapping.
SHM_GRACE_S = 30.0
# vLLM's engine processes rename themselves VLLM::EngineCore, VLLM::Worker... (the kernel's name keeps
# 15 characters: "VLLM::EngineCor").
ENGINE_NAMES = ("EngineCor", "Worker")


@dataclass(frozen=True)
class Process:
    pid: int
    parent: int
    group: int
    state: str  # "Z": a zombie, dead
    argv: tuple[str, ...]
    name: str

    @property
    def alive(self) -> bool:
        return self.state != "Z"

    @property
    def is_engine(self) -> bool:
        return any(name in self.name or name in " ".join(self.argv[:1]) for name in ENGINE_NAMES)

    @property
    def is_stub(self) -> bool:
        return bool(self.argv) and self.argv[0].endswith(STUB)

    # A stub's command line: stub, <repository>/<model>/1/model.py, its shared-memory region, sizes,
    # the server's pid, the backend's directory, ..., its instance's name ("preprocess_0_2").
    @property
    def region(self) -> str:
        return self.argv[2]

    @property
    def instance(self) -> str:
        return self.argv[8]


def processes() -> Iterator[Process]:
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            process = _read(entry)
            if process is not None:
                yield process


def _read(entry: Path) -> Process | None:
    try:
        stat = (entry / "stat").read_text()
        argv = tuple(arg.decode(errors="replace") for arg in (entry / "cmdline").read_bytes().split(b"\0") if arg)
    except OSError:  # gone meanwhile
        return None
    # "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses.
    name, rest = stat[stat.index("(") + 1 : stat.rindex(")")], stat[stat.rindex(")") + 2 :].split()
    return Process(int(entry.name), int(rest[1]), int(rest[2]), rest[0], argv, name)


def model_stubs(server_pid: int, model: str, table: list[Process]) -> list[Process]:
    """The model's stubs that are live children of the server."""
    found = []
    for process in table:
        ours = process.parent == server_pid and process.alive and process.is_stub and len(process.argv) > 8
        if ours and Path(process.argv[1]).parent.parent.name == model:
            found.append(process)
    return found


def live_instances(server_pid: int, model: str, table: list[Process]) -> dict[str, str]:
    """The model's instances whose stub is a live child of the server: {instance name: its region}."""
    return {stub.instance: stub.region for stub in model_stubs(server_pid, model, table)}


def orphan_engines(group: int, table: list[Process]) -> list[int]:
    """vLLM engine processes in the server's process group whose stub is gone: they hold gigabytes."""
    by_pid = {process.pid: process for process in table}
    orphans = []
    for process in table:
        if process.group == group and process.alive and process.is_engine:
            owner = by_pid.get(process.parent)
            while owner is not None and owner.is_engine:
                owner = by_pid.get(owner.parent)  # a worker's EngineCore, then its stub
            if owner is None or not owner.alive or not owner.is_stub:
                orphans.append(process.pid)
    return orphans


def regions() -> list[Path]:
    """The shared-memory regions of Triton's stubs and of vLLM, whoever's they are."""
    return [path for path in SHARED_MEMORY.glob("*") if path.name.startswith(SHM_PREFIXES)]


def mapped_shared_memory(pids: Iterable[int] | None = None) -> set[str]:
    """Names of /dev/shm files that the processes `pids` (by default, all) map."""
    names: set[str] = set()
    for pid in (
        pids if pids is not None else (int(entry.name) for entry in Path("/proc").iterdir() if entry.name.isdigit())
    ):
        try:
            maps = Path(f"/proc/{pid}/maps").read_text()
        except OSError:
            continue
        names.update(line.split("/dev/shm/", 1)[1].split(" ")[0] for line in maps.splitlines() if "/dev/shm/" in line)
    return names


def stale_shared_memory(grace_s: float = SHM_GRACE_S) -> list[Path]:
    """Regions of Triton's stubs and of vLLM that no live process maps, older than `grace_s`."""
    mapped = mapped_shared_memory()
    now = time.time()
    stale = []
    for path in regions():
        if path.name not in mapped:
            try:
                if now - path.stat().st_mtime > grace_s:
                    stale.append(path)
            except OSError:
                continue
    return stale


def remove(paths: list[Path]) -> int:
    removed = 0
    for path in paths:
        try:
            path.unlink()
            removed += 1
        except OSError:
            continue
    return removed


class Repository:
    """Triton's model repository API over HTTP (explicit model-control mode)."""

    def __init__(self, http_url: str, timeout_s: float = 600.0) -> None:
        self.http_url = http_url.rstrip("/")
        self.timeout_s = timeout_s

    def states(self) -> dict[str, bool] | None:
        """{model: whether Triton says it is ready} for the whole repository, in one call (the supervisor asks
        every second); None when Triton does not answer (busy, or restarting): a server slow to answer is no
        reason to reload a model."""
        try:
            index = json.loads(self._post("/v2/repository/index", {}, timeout_s=2))
        except (OSError, ValueError):
            return None
        states: dict[str, bool] = {}
        for entry in index:  # one entry per version: ready when one of them is
            states[entry["name"]] = states.get(entry["name"], False) or entry.get("state") == "READY"
        return states

    def load(self, model: str) -> None:
        """Load the model (again: a loaded model is replaced by a fresh one); raises OSError if Triton refuses."""
        self._post(f"/v2/repository/models/{model}/load", {})

    def unload(self, model: str) -> None:
        """Unload the model and every model that depends on it (the ensemble)."""
        self._post(f"/v2/repository/models/{model}/unload", {"parameters": {"unload_dependents": True}})

    def _post(self, path: str, body: dict, timeout_s: float | None = None) -> bytes:
        request = urllib.request.Request(
            self.http_url + path, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=timeout_s or self.timeout_s) as response:
            return response.read()


@dataclass
class Budget:
    """At most `attempts` heals of one part within `window_s`, `backoff_s` doubling between them."""

    attempts: int
    window_s: float
    backoff_s: float = 1.0

    def __post_init__(self) -> None:
        self._times: list[float] = []

    def take(self) -> float | None:
        """Seconds to wait before the next attempt, or None when the budget is spent."""
        now = time.monotonic()
        self._times = [moment for moment in self._times if now - moment < self.window_s]
        if len(self._times) >= self.attempts:
            return None
        self._times.append(now)
        return self.backoff_s * 2 ** (len(self._times) - 1) if len(self._times) > 1 else 0.0
