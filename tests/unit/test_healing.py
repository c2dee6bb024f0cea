"""What the serve command looks at to heal a server: stub and engine processes, shared memory no one maps,
Triton's repository API, the budget of heals. (The heals themselves, on the real stack: tests/server/test_faults.py.)"""

from __future__ import annotations

import http.server
import json
import mmap
import os
import subprocess
import threading
import time
import uuid

import pytest

from dsocr import healing
from dsocr.healing import Process
from dsocr.processes import group_members, stop_group
from tests.helpers import wait_until

SERVER = 100


def stub(pid: int, model: str, instance: str, parent: int = SERVER) -> Process:
    # As Triton 2.51 starts a stub: stub, model.py, region, sizes, parent pid, backend dir, ..., instance name.
    argv = ("/x/triton_python_backend_stub", f"/repo/{model}/1/model.py", f"triton_python_backend_shm_region_{pid}",
            "50331648", "16777216", str(parent), "/x", "336", instance, "DEFAULT")  # fmt: skip
    return Process(pid, parent, SERVER, "S", argv, "triton_python_b")


def test_a_process_is_read_from_proc_as_it_is():
    [me] = [process for process in healing.processes() if process.pid == os.getpid()]
    assert me.parent == os.getppid() and me.group == os.getpgid(0) and me.alive and "python" in me.argv[0]


def test_live_instances_are_the_models_stubs_under_the_server():
    table = [
        stub(1, "preprocess", "preprocess_0_0"),
        stub(2, "preprocess", "preprocess_0_1"),
        stub(3, "vllm_model", "vllm_model_0_0"),
        stub(4, "preprocess", "preprocess_0_0", parent=999),  # another server's
        Process(5, SERVER, SERVER, "Z", stub(5, "preprocess", "preprocess_0_2").argv, "triton_python_b"),  # dead
    ]
    assert healing.live_instances(SERVER, "preprocess", table) == {
        "preprocess_0_0": "triton_python_backend_shm_region_1",
        "preprocess_0_1": "triton_python_backend_shm_region_2",
    }
    assert healing.live_instances(SERVER, "vllm_model", table) == {
        "vllm_model_0_0": "triton_python_backend_shm_region_3"
    }


def test_an_engine_whose_stub_is_gone_is_an_orphan():
    engine = Process(20, 3, SERVER, "S", ("VLLM::EngineCore",), "VLLM::EngineCor")  # the kernel keeps 15 characters
    worker = Process(21, 20, SERVER, "S", ("VLLM::Worker",), "VLLM::Worker")
    served = [stub(3, "vllm_model", "vllm_model_0_0"), engine, worker]
    assert healing.orphan_engines(SERVER, served) == []
    assert sorted(healing.orphan_engines(SERVER, [engine, worker])) == [20, 21]  # the stub was killed
    elsewhere = Process(22, 1, 555, "S", ("VLLM::EngineCore",), "VLLM::EngineCor")
    assert healing.orphan_engines(SERVER, [elsewhere]) == []  # another server's group


@pytest.fixture
def region():
    made = []

    def make(age_s: float) -> str:
        name = f"psm_test_{uuid.uuid4().hex[:8]}"
        path = healing.SHARED_MEMORY / name
        path.write_bytes(bytes(4096))
        then = time.time() - age_s
        os.utime(path, (then, then))
        made.append(path)
        return name

    yield make
    for path in made:
        path.unlink(missing_ok=True)


def test_shared_memory_no_one_maps_is_stale_once_old_enough(region):
    old, young, mapped = region(600), region(0), region(600)
    with open(healing.SHARED_MEMORY / mapped, "r+b") as file, mmap.mmap(file.fileno(), 4096):
        stale = {path.name for path in healing.stale_shared_memory()}
        assert old in stale and young not in stale and mapped not in stale
    assert healing.remove([healing.SHARED_MEMORY / old]) == 1 and not (healing.SHARED_MEMORY / old).exists()


def test_the_budget_backs_off_then_runs_out_and_forgets_old_heals():
    budget = healing.Budget(attempts=3, window_s=0.5, backoff_s=0.1)
    assert [budget.take(), budget.take(), budget.take(), budget.take()] == [0.0, 0.2, 0.4, None]
    time.sleep(0.6)
    assert budget.take() == 0.0


def test_the_repository_api_reloads_a_model_and_unloads_its_dependents():
    requests = []

    class Triton(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            if self.path == "/v2/repository/index":  # as Triton 2.51 answers it
                answer = [
                    {"name": "deepseek_ocr", "version": "1", "state": "READY"},
                    {"name": "preprocess", "version": "1", "state": "READY"},
                    {"name": "vllm_model", "version": "1", "state": "UNAVAILABLE", "reason": "unloaded"},
                ]
            else:
                requests.append((self.path, body))
                answer = {}
            self.send_response(200)
            self.end_headers()
            self.wfile.write(json.dumps(answer).encode())

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Triton)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        repository = healing.Repository(f"http://127.0.0.1:{server.server_address[1]}")
        repository.unload("vllm_model")
        repository.load("vllm_model")
        # The ensemble ready, vllm_model not: Triton said so.
        assert repository.states() == {"deepseek_ocr": True, "preprocess": True, "vllm_model": False}
    finally:
        server.shutdown()
        server.server_close()
    assert repository.states() is None  # no answer: no reason to reload anything
    assert requests == [
        ("/v2/repository/models/vllm_model/unload", {"parameters": {"unload_dependents": True}}),
        ("/v2/repository/models/vllm_model/load", {}),
    ]


def test_a_stopped_group_leaves_no_member_behind():
    """Its members (stubs, engines: here, shells ignoring SIGTERM) are gone when stop_group returns, so
    the shared memory they mapped is free to clean up."""
    group = subprocess.Popen(["bash", "-c", "trap '' TERM; sleep 60 & sleep 60 & wait"], start_new_session=True)
    assert wait_until(lambda: len(group_members(group.pid)) == 3, 10)
    assert stop_group(group, grace_s=0.5) is False  # it would not stop by itself
    assert group_members(group.pid) == []
