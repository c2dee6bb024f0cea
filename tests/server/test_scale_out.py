"""Two Triton servers behind one frontend: balancing, and a server stopped and
restarted under load (what a server does when one of its parts dies: tests/server/test_faults.py).

Each server is `python -m dsocr.serve --no-frontend` (tritonserver, tiny model
on CPU); the frontend is given both gRPC addresses, as the Kubernetes
manifests give it every Triton pod's.
"""

from __future__ import annotations

import base64
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from dsocr import paths
from tests.helpers import (
    FRONTEND_ENV,
    Frontend,
    Load,
    Service,
    ocr,
    page_png,
    running_frontend,
    start_service,
    stop_service,
    wait_for,
)

MODEL = "deepseek-ocr"
PAGE = "data:image/png;base64," + base64.b64encode(page_png()).decode()
MAX_TOKENS = 8
UNREADY_EXIT_S = 15
SERVER_FLAGS = ("--no-frontend", f"--unready-exit-s={UNREADY_EXIT_S}")
FRONTEND = {**FRONTEND_ENV, "MODEL": str(paths.tiny_model_dir("ocr"))}


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
    before = [server.successes() for server in cluster.servers]
    api = cluster.frontend.client()
    with ThreadPoolExecutor(4) as pool:
        completions = list(pool.map(lambda _: ocr(api), range(4)))
    assert all(c.choices[0].finish_reason == "length" for c in completions)
    served = [server.successes() - count for server, count in zip(cluster.servers, before, strict=True)]
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
        wait_for(lambda: restarted.successes() >= 2, 120, "the restarted server takes requests again")

    # From the moment b was told to stop, every request is served: while it
    # stops, by it or (refused) by a; once it is gone, by a.
    late = [o for o in load.outcomes if o.started >= stopping]
    assert late and all(o.status == 200 for o in late), [o for o in late if o.status != 200]
    # Only a request that was in flight on b may fail, and then with a clear error.
    failed = [o for o in load.outcomes if o.status != 200]
    assert all(o.started < stopping and o.status == 503 and o.error for o in failed), failed
    assert len(failed) <= load.clients
