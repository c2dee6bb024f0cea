"""What a server costs the host outside its engine: the CPU time of its processes, from the processes themselves.

A system is every process carrying its environment marker (dsocr.processes)
but vLLM's engine (its EngineCore and model-runner workers): for our stack
the frontend, tritonserver and its Python-backend stubs (the vLLM model's
stub runs vLLM's output handling, as `vllm serve`'s API server does); for
`vllm serve` its API server process(es); for AsyncLLM in a process of its
own (benchkit.asyncllm) that process. CPU time is user + system, read
before and after a stretch of load: both systems are measured the same way.
"""

from __future__ import annotations

import contextlib
from collections import defaultdict

import psutil

from dsocr.processes import processes_with_marker

# vLLM's engine processes rename themselves VLLM::EngineCore, VLLM::Worker..., VLLM::DPCoordinator.
ENGINE_PROCESS_NAMES = ("EngineCore", "Worker", "DPCoordinator")
ROLES = {  # a process's role, by what its name or command line says (the first that matches)
    "frontend": ("openai_frontend",),
    "preprocess stub": ("/preprocess/1/model.py",),
    "vllm_model stub": ("/vllm_model/1/model.py",),
    "tritonserver": ("tritonserver",),
    "serve supervisor": ("dsocr.serve",),
    "API server": ("vllm.entrypoints", "APIServer"),  # `vllm serve`'s, one or several
    "AsyncLLM process": ("benchmarks.benchkit.asyncllm",),  # the host-cost benchmark's (d)
    "engine": ("VLLM::",),
}


def role(process: psutil.Process) -> str:
    with contextlib.suppress(psutil.Error):
        text = process.name() + " " + " ".join(process.cmdline())
        for name, marks in ROLES.items():
            if any(mark in text for mark in marks):
                return name
    return "other"


def is_engine(process: psutil.Process) -> bool:
    try:
        names = process.name() + " ".join(process.cmdline())
    except psutil.Error:
        return False
    return any(name in names for name in ENGINE_PROCESS_NAMES)


def host_processes(marker: str) -> list[psutil.Process]:
    found = []
    for pid in processes_with_marker(marker):
        with contextlib.suppress(psutil.Error):
            process = psutil.Process(pid)
            if not is_engine(process):
                found.append(process)
    return found


class HostCPU:
    """The CPU seconds a system's host processes have used, by role; read at any moment, to take differences."""

    def __init__(self, marker: str) -> None:
        self.marker = marker
        self._processes: dict[int, tuple[psutil.Process, str]] = {}  # pid -> (process, role)
        self._last: dict[int, float] = {}  # a process that has exited keeps the time it had used

    def by_role(self) -> dict[str, float]:
        for process in host_processes(self.marker):  # processes started since (render workers) join
            if process.pid not in self._processes:
                self._processes[process.pid] = (process, role(process))
        for pid, (process, _) in self._processes.items():
            with contextlib.suppress(psutil.Error):
                times = process.cpu_times()
                self._last[pid] = times.user + times.system
        totals: defaultdict[str, float] = defaultdict(float)
        for pid, seconds in self._last.items():
            totals[self._processes[pid][1]] += seconds
        return dict(totals)
