"""Faults healed in place, each under load: a killed preprocess instance, vLLM model stub, EngineCore,
tritonserver (one of two behind a frontend) and frontend.

For each: every request ends 200 or 503 with Retry-After, never a 4xx or another 5xx; readiness (Triton's
and the frontend's, polled) goes false while the part is down and true again within a bound; requests
that start once it is back are served; and the process table and /dev/shm are back to what they were.

Server a is a whole service (`python -m dsocr.serve`: Triton and its frontend); server b runs Triton only,
and a second frontend spreads requests over a and b. The faults run in this file's order on them.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from dsocr import healing, paths
from dsocr.processes import processes_with_marker
from tests.helpers import (
    FRONTEND_ENV,
    Frontend,
    Load,
    OpenAIEndpoint,
    Outcome,
    Service,
    ocr,
    running_frontend,
    start_service,
    wait_for,
    wait_until,
)

# On this CPU: a preprocess instance reloaded in place is back in seconds, a vLLM engine in about a minute,
# a whole server (where Triton cannot let go of a stub that died mid-request) in a few.
HEALED_WITHIN_S = {"preprocess": 300, "engine": 300, "tritonserver": 300, "frontend": 60}
SERVER_RESTARTED = "tritonserver cannot let go"
FRONTEND = {**FRONTEND_ENV, "MODEL": str(paths.tiny_model_dir("ocr"))}


@dataclass
class Cluster:
    a: Service  # Triton and its frontend, under one serve command
    b: Service  # Triton only
    shared: Frontend  # over a and b
    logs: Path


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> Iterator[Cluster]:
    logs = tmp_path_factory.mktemp("faults")
    # One after the other: tritonservers starting at the same moment on one machine have been seen to abort.
    with (
        start_service(logs / "a.log") as a,
        start_service(logs / "b.log", "--no-frontend") as b,
        running_frontend([a.triton_grpc_url, b.triton_grpc_url], logs / "shared.log", FRONTEND) as shared,
    ):
        yield Cluster(a, b, shared, logs)


@dataclass
class Readiness:
    """Polls readiness URLs every 0.2 s in the background: (time, {url: ready})."""

    urls: list[str]
    samples: list[tuple[float, dict[str, bool]]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def __enter__(self) -> Readiness:
        self._thread.start()
        return self

    def __exit__(self, *_exc) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _poll(self) -> None:
        while not self._stop.wait(0.2):
            self.samples.append((time.monotonic(), {url: _ready(url) for url in self.urls}))

    def all_ready(self) -> bool:
        return bool(self.samples) and all(self.samples[-1][1].values())

    def went_unready_after(self, moment: float) -> bool:
        return any(not all(ready.values()) for at, ready in self.samples if at >= moment)


def _ready(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@dataclass(frozen=True)
class Baseline:
    """A server's processes and the shared-memory regions they map, to be back to once a fault is healed."""

    stubs: int
    engines: int
    regions: int

    @classmethod
    def of(cls, server: Service) -> Baseline:
        table = server_processes(server)
        mapped = healing.mapped_shared_memory(process.pid for process in table)
        return cls(
            stubs=sum(1 for p in table if p.is_stub),
            engines=sum(1 for p in table if p.is_engine),
            regions=sum(1 for name in mapped if name.startswith(healing.SHM_PREFIXES)),
        )


def server_processes(server: Service) -> list[healing.Process]:
    marked = set(processes_with_marker(server.marker))
    return [process for process in healing.processes() if process.pid in marked and process.alive]


def pid_of(server: Service, what: str, matches) -> int:
    found = [process.pid for process in server_processes(server) if matches(process)]
    assert found, f"no {what} under the server"
    return found[0]


def stub_pid(server: Service, instance_prefix: str) -> int:
    def matches(process: healing.Process) -> bool:
        argv = process.argv
        return process.is_stub and len(argv) > 8 and argv[8].startswith(instance_prefix)

    return pid_of(server, f"{instance_prefix} stub", matches)


def inject(
    cluster: Cluster,
    server: Service,
    pid: int,
    readiness_urls: list[str],
    part: str,
    through: OpenAIEndpoint | None = None,
) -> dict:
    """Kill `pid` under load (through the shared frontend, unless `through` another); what the clients saw, and
    how long it took to heal."""
    baseline = Baseline.of(server)
    restarts = server.log_path.read_text(errors="replace").count(SERVER_RESTARTED)
    with Load(through or cluster.shared) as load, Readiness(readiness_urls) as readiness:
        wait_for(lambda: load.served_since(0) >= 2, 120, "the load is being served")
        killed = time.monotonic()
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: readiness.went_unready_after(killed), 30, f"readiness to say the {part} is down")
        wait_for(readiness.all_ready, HEALED_WITHIN_S[part], f"the {part} to be healed")
        healed = time.monotonic()
        wait_for(lambda: load.served_since(healed) >= 3, 120, "requests to be served once it is back")
    wait_until(lambda: Baseline.of(server) == baseline, 60)
    assert Baseline.of(server) == baseline, "the server's processes and shared memory as before"
    assert not healing.stale_shared_memory(), "shared memory that no process maps"
    restarted = server.log_path.read_text(errors="replace").count(SERVER_RESTARTED) > restarts
    figures = {"part": part, "ready_again_s": healed - killed, "server_restarted": restarted, **counts(load.outcomes)}
    print(f"\n[fault] {figures}")
    assert_only_200_or_503_with_retry_after(load.outcomes)
    return figures


def counts(outcomes: list[Outcome]) -> dict:
    return {
        "ok": sum(1 for o in outcomes if o.status == 200),
        "503": sum(1 for o in outcomes if o.status == 503),
        "other": [(o.status, o.error) for o in outcomes if o.status not in (200, 503)],
    }


def assert_only_200_or_503_with_retry_after(outcomes: list[Outcome]) -> None:
    assert all(o.status in (200, 503) for o in outcomes), [o for o in outcomes if o.status not in (200, 503)]
    assert all(o.retry_after for o in outcomes if o.status == 503), "a 503 without Retry-After"


def test_a_killed_preprocess_instance_is_replaced(cluster):
    urls = [cluster.a.triton_http_url + "/v2/models/deepseek_ocr/ready", cluster.a.base_url + "/health/ready"]
    inject(cluster, cluster.a, stub_pid(cluster.a, "preprocess_"), urls, "preprocess")


def test_a_killed_vllm_model_stub_is_reloaded_with_its_engine(cluster):
    urls = [cluster.b.triton_http_url + "/v2/models/deepseek_ocr/ready"]
    inject(cluster, cluster.b, stub_pid(cluster.b, "vllm_model_"), urls, "engine")


def test_a_killed_engine_core_is_reloaded(cluster):
    urls = [cluster.a.triton_http_url + "/v2/models/deepseek_ocr/ready", cluster.a.base_url + "/health/ready"]
    # Through server a's own frontend, with no other server to send requests to: 503s while it heals.
    engine = pid_of(cluster.a, "EngineCore", lambda p: "EngineCor" in p.name)
    figures = inject(cluster, cluster.a, engine, urls, "engine", through=cluster.a)
    assert figures["503"] > 0


def test_a_killed_tritonserver_is_restarted_while_the_other_server_serves(cluster):
    urls = [cluster.b.triton_http_url + "/v2/models/deepseek_ocr/ready"]
    pid = pid_of(cluster.b, "tritonserver", lambda p: p.name == "tritonserver")
    inject(cluster, cluster.b, pid, urls, "tritonserver")
    assert cluster.b.process.poll() is None  # the serve command went on


def test_a_killed_frontend_is_restarted(cluster):
    frontend = pid_of(cluster.a, "frontend", lambda p: "openai_frontend" in p.argv)
    with Load(cluster.a) as load:  # through the frontend that dies: refused connections meanwhile
        wait_for(lambda: load.served_since(0) >= 2, 120, "the load is being served")
        killed = time.monotonic()
        os.kill(frontend, signal.SIGKILL)
        wait_for(lambda: load.served_since(killed + 1) >= 3, HEALED_WITHIN_S["frontend"], "the frontend back")
    back = min(o.started for o in load.outcomes if o.status == 200 and o.started > killed + 1)
    print(f"\n[fault] frontend serving again {back - killed:.1f} s after it was killed")
    assert all(o.status in (200, 0) for o in load.outcomes), [o for o in load.outcomes if o.status not in (200, 0)]
    assert ocr(cluster.a.client()).choices[0].finish_reason == "length"
