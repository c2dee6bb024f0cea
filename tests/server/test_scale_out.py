"""Two Triton servers behind one frontend: balancing, a server stopped and
restarted under load, and a server whose vLLM engine dies.

Each server is `python -m dsocr.serve --no-frontend` (tritonserver, tiny model
on CPU); the frontend is given both gRPC addresses, as the Kubernetes
manifests give it every Triton pod's.
"""

from __future__ import annotations

import base64
import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import openai
import pytest

from dsocr import paths
from dsocr.triton.contract import ENSEMBLE
from tests.helpers import (
    FRONTEND_ENV,
    Frontend,
    Service,
    page_png,
    processes_with_marker,
    running_frontend,
    start_service,
    stop_service,
)

MODEL = "deepseek-ocr"
PAGE = "data:image/png;base64," + base64.b64encode(page_png()).decode()
MAX_TOKENS = 8
UNREADY_EXIT_S = 15
SERVER_FLAGS = ("--no-frontend", f"--unready-exit-s={UNREADY_EXIT_S}")
FRONTEND = {**FRONTEND_ENV, "MODEL": str(paths.tiny_model_dir("ocr"))}


def ocr(api: openai.OpenAI):
    return api.chat.completions.create(
        model=MODEL,
        max_tokens=MAX_TOKENS,
        messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {"url": PAGE}}]}],
        extra_body={"resolution_mode": "tiny", "ignore_eos": True},
    )


def successes(server: Service) -> int:
    """Requests the server's ensemble has answered, from Triton's statistics."""
    stats = httpx.get(f"{server.triton_http_url}/v2/models/{ENSEMBLE}/stats", timeout=10).json()
    return int(stats["model_stats"][0]["inference_stats"]["success"]["count"])


def wait_for(condition, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.2)


@dataclass
class Outcome:
    started: float
    status: int  # 200, or the API error's status
    error: str = ""


@dataclass
class Load:
    """Clients sending requests back to back through the frontend, until stopped."""

    frontend: Frontend
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
                self.outcomes.append(Outcome(started, 200))
            except openai.APIStatusError as exc:
                self.outcomes.append(Outcome(started, exc.status_code, str(exc.body)))
            except openai.APIConnectionError as exc:
                self.outcomes.append(Outcome(started, 0, repr(exc)))

    def served_since(self, moment: float) -> int:
        return sum(1 for o in self.outcomes if o.status == 200 and o.started > moment)


@dataclass
class Cluster:
    servers: list[Service]
    frontend: Frontend
    logs: Path


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    logs = tmp_path_factory.mktemp("scale_out")
    servers = []
    try:
        # One after the other: tritonservers starting at the same moment on
        # one machine have been seen to abort (boost interprocess lock).
        for name in "ab":
            servers.append(start_service(logs / f"triton-{name}.log", *SERVER_FLAGS))
            servers[-1].wait_ready()
        urls = [server.triton_grpc_url for server in servers]
        with running_frontend(urls, logs / "frontend.log", FRONTEND) as frontend:
            yield Cluster(servers, frontend, logs)
    finally:
        for server in servers:
            if server.process.poll() is None:
                stop_service(server)


def test_requests_spread_over_both_servers(cluster):
    before = [successes(server) for server in cluster.servers]
    api = cluster.frontend.client()
    with ThreadPoolExecutor(4) as pool:
        completions = list(pool.map(lambda _: ocr(api), range(4)))
    assert all(c.choices[0].finish_reason == "length" for c in completions)
    served = [successes(server) - count for server, count in zip(cluster.servers, before, strict=True)]
    assert served == [2, 2], f"requests per server: {served}"


def test_a_server_stopped_and_restarted_under_load_loses_no_request(cluster):
    b = cluster.servers[1]
    with Load(cluster.frontend) as load:
        wait_for(lambda: load.served_since(0) >= 3, 120, "the load is being served")
        stopping = time.monotonic()
        # SIGTERM: Triton finishes what it has in flight and refuses what comes
        # meanwhile ("Server is stopping"), which the frontend sends to a.
        stop_service(b)
        stopped = time.monotonic()
        wait_for(lambda: load.served_since(stopped) >= 4, 120, "requests are served with one server down")

        restarted = start_service(
            b.log_path,
            *SERVER_FLAGS,
            ports={
                "port": b.port,
                "triton_http_port": b.triton_http_port,
                "triton_grpc_port": b.triton_grpc_port,
                "triton_metrics_port": b.triton_metrics_port,
            },
        )
        cluster.servers[1] = restarted
        restarted.wait_ready()
        wait_for(lambda: successes(restarted) >= 2, 120, "the restarted server takes requests again")

    # From the moment b was told to stop, every request is served: while it
    # stops, by it or (refused) by a; once it is gone, by a.
    late = [o for o in load.outcomes if o.started >= stopping]
    assert late and all(o.status == 200 for o in late), [o for o in late if o.status != 200]
    # Only a request that was in flight on b may fail, and then with a clear error.
    failed = [o for o in load.outcomes if o.status != 200]
    assert all(o.started < stopping and o.status == 503 and o.error for o in failed), failed
    assert len(failed) <= load.clients


def engine_core_pids(server: Service) -> list[int]:
    found = []
    for pid in processes_with_marker(server.marker):
        try:
            names = Path(f"/proc/{pid}/cmdline").read_bytes() + Path(f"/proc/{pid}/comm").read_bytes()
        except OSError:
            continue
        if b"EngineCor" in names:  # VLLM::EngineCore (comm keeps 15 characters)
            found.append(pid)
    return found


def test_a_server_whose_engine_dies_goes_not_ready_and_the_rest_keep_serving(cluster):
    b = cluster.servers[1]
    pids = engine_core_pids(b)
    assert pids, "no vLLM EngineCore process found under the server"
    with running_frontend([b.triton_grpc_url], cluster.logs / "frontend-b.log", FRONTEND) as b_only:
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        # The vLLM model unloads itself with the ensemble: Triton says not ready...
        wait_for(lambda: httpx.get(b.ready_url, timeout=5).status_code != 200, 30, "the model is not ready")
        # ...and a frontend with only that server answers 503, in OpenAI's shape.
        wait_for(
            lambda: httpx.get(f"{b_only.base_url}/health/ready", timeout=5).status_code == 503,
            30,
            "the frontend is not ready",
        )
        with pytest.raises(openai.APIStatusError) as refused:
            ocr(b_only.client())
        assert refused.value.status_code == 503
        assert refused.value.body["message"]

    # Through both servers, requests keep being answered (by the other one).
    assert ocr(cluster.frontend.client()).choices[0].finish_reason == "length"
    # serve gives up on a model that stays not ready, so that a restart policy brings a fresh engine.
    assert b.process.wait(timeout=UNREADY_EXIT_S + 60) == 1
    time.sleep(1)
    assert not processes_with_marker(b.marker), "processes outlived the server"
