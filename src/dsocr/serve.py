"""Run the service: tritonserver on the model repository, then the OpenAI frontend.

    python -m dsocr.serve [--model M] [--port 8080] ...   (scripts/serve.sh sets up first)

Waits until both are ready, prints where they listen, and stops both on
Ctrl-C / SIGTERM. Exits non-zero when either dies on its own, or when the
model stays not ready (its vLLM engine died): a restart policy
(`docker run --restart`, Kubernetes) then brings a fresh engine. Each child runs
in its own process group and the whole group is killed at the end: the
Python-backend stubs and vLLM's engine-core processes must not outlive the
server (they hold gigabytes).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import select
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from dsocr import envs, healing, paths
from dsocr.engine_config import cpu_environment, served_model
from dsocr.processes import stop_group
from dsocr.triton import contract

CPU_BANNER = """\
************************************************************************
 No GPU and no model configured: serving the TINY RANDOM-WEIGHT model
 {model}
 on CPU. Its output is meaningless text: it proves the serving stack, not
 OCR quality. Set MODEL (or --model) to deepseek-ai/DeepSeek-OCR on a GPU.
************************************************************************"""


# Each Python-backend instance exchanges tensors with the server through its
# own shared-memory region. Sized so that the largest request (a 20 MiB image
# in, 1024 px global view + 9 tiles of 640 px = 14 MiB of uint8 views out)
# fits without growth steps. The five instances (4 preprocess, 1 vLLM) take
# 240 MiB of /dev/shm: containers need --shm-size of at least 512m.
SHM_REGION_BYTES = 48 * 1024 * 1024
SHM_GROWTH_BYTES = 16 * 1024 * 1024
PYTHON_BACKEND_SHM = (
    f"--backend-config=python,shm-default-byte-size={SHM_REGION_BYTES}",
    f"--backend-config=python,shm-growth-byte-size={SHM_GROWTH_BYTES}",
)

# The vLLM model unloads itself when its engine dies, so that Triton's
# readiness says so; Triton allows that in explicit model-control mode only.
MODEL_CONTROL = ("--model-control-mode=explicit", "--load-model=*")
# On SIGTERM Triton finishes the requests in flight, unloads the models and
# exits. It gets this long, within the time the serve command (and
# Kubernetes) give it before a kill, leaving time for vLLM's own shutdown.
STOP_GRACE_S = 60
TRITON_EXIT_TIMEOUT_S = 45
TRITON_FLAGS = (*PYTHON_BACKEND_SHM, *MODEL_CONTROL, f"--exit-timeout-secs={TRITON_EXIT_TIMEOUT_S}")
# Triton's Python backend now and then aborts while it starts its stubs
# (boost::interprocess::lock_exception, SIGABRT; an open upstream issue), most
# often on a loaded machine. Nothing has been served then, so it is started
# again; a server that fails any other way, or every time, is not.
TRITON_START_ATTEMPTS = 3
# A model being reloaded: how long its live instances get to finish their requests before they are stopped.
UNLOAD_GRACE_S = 10.0


def detect_device() -> str:
    device = envs.get("DSOCR_DEVICE")
    if device:
        return device
    if shutil.which("nvidia-smi"):
        probe = subprocess.run(["nvidia-smi", "-L"], capture_output=True)
        if probe.returncode == 0 and b"GPU" in probe.stdout:
            return "gpu"
    return "cpu"


def find_tritonserver() -> str:
    """The virtualenv's launcher (scripts/install_triton.py) first, then PATH."""
    search = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    return shutil.which("tritonserver", path=search) or "tritonserver"


@dataclass
class Child:
    name: str
    process: subprocess.Popen
    ready_url: str

    def __post_init__(self) -> None:
        # Reaped the moment it dies. A dead tritonserver left a zombie keeps its stubs alive (they ask whether
        # their server lives with kill(pid, 0)), and a stub started during a model load holds the load's
        # connection: the heal's repository call would wait out its timeout. (poll() answers None while this
        # thread waits, then the exit code it set.)
        threading.Thread(target=self.process.wait, name=f"reap {self.name}", daemon=True).start()

    def stop(self, grace_s: float) -> None:
        """SIGTERM, wait, then SIGKILL whatever is left of the process group."""
        if not stop_group(self.process, grace_s):
            print(f"[serve] {self.name} did not stop in {grace_s:.0f} s; killed it", flush=True)


@dataclass
class Stack:
    args: argparse.Namespace
    triton: Child | None = None
    frontend: Child | None = None

    @property
    def children(self) -> list[Child]:
        return [child for child in (self.triton, self.frontend) if child is not None]

    def repository(self) -> healing.Repository:
        return healing.Repository(f"http://127.0.0.1:{self.args.triton_http_port}")

    def triton_env(self) -> dict[str, str]:
        env = dict(os.environ)
        # The Python-backend stubs take their environment from the python3 on
        # PATH: this one's, which has the project (a virtualenv's included, when
        # the tritonserver is the system's, as on NGC's image).
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
        if self.args.model:
            env["MODEL"] = self.args.model
        if self.args.device == "cpu":
            env = {**cpu_environment(), **env}  # what the environment sets wins
        return env

    def start_triton(self, stopping: threading.Event) -> bool:
        """Start tritonserver and wait until the model is ready; False if it never is."""
        for attempt in range(1, TRITON_START_ATTEMPTS + 1):
            triton = self.triton = self._spawn_triton()
            if self.wait_ready(triton, self.args.ready_timeout_s, stopping):
                return True
            aborted = triton.process.poll() == -signal.SIGABRT
            if stopping.is_set() or not aborted or attempt == TRITON_START_ATTEMPTS:
                return False
            print(
                f"[serve] tritonserver aborted while starting (attempt {attempt} of {TRITON_START_ATTEMPTS}); "
                "starting it again",
                flush=True,
            )
            triton.stop(self.args.stop_grace_s)
        return False

    def _spawn_triton(self) -> Child:
        a = self.args
        command = [
            a.tritonserver,
            f"--model-repository={a.model_repository}",
            f"--http-port={a.triton_http_port}",
            f"--grpc-port={a.triton_grpc_port}",
            f"--metrics-port={a.triton_metrics_port}",
            "--log-info=false" if a.quiet else "--log-info=true",
            *TRITON_FLAGS,
        ]
        return self._start("tritonserver", command, self.triton_env(), self.model_ready_url())

    def model_ready_url(self) -> str:
        return f"http://127.0.0.1:{self.args.triton_http_port}{contract.ready_path()}"

    def served_model(self) -> str:
        """What Triton serves: --model, else MODEL, else engine.json's model."""
        return self.args.model or served_model(self.args.model_repository)

    def frontend_env(self) -> dict[str, str]:
        # The model decides the names the API answers to (deepseek-ocr or deepseek-ocr-2).
        return {**os.environ, "MODEL": self.served_model()}

    def start_frontend(self) -> Child:
        a = self.args
        command = [
            sys.executable,
            "-m",
            "openai_frontend",
            f"--host={a.host}",
            f"--port={a.port}",
            f"--triton-grpc-url=127.0.0.1:{a.triton_grpc_port}",
        ]
        self.frontend = self._start("frontend", command, self.frontend_env(), f"http://127.0.0.1:{a.port}/health")
        return self.frontend

    def _start(self, name: str, command: list[str], env: dict[str, str], ready_url: str) -> Child:
        print(f"[serve] starting {name}: {' '.join(command)}", flush=True)
        process = subprocess.Popen(command, env=env, start_new_session=True)
        return Child(name, process, ready_url)

    def wait_ready(self, child: Child, timeout_s: float, stopping: threading.Event) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and not stopping.is_set():
            if child.process.poll() is not None:
                print(f"[serve] {child.name} exited with {child.process.returncode} before it was ready", flush=True)
                return False
            if is_ready(child.ready_url):
                return True
            stopping.wait(0.5)
        if not stopping.is_set():
            print(f"[serve] {child.name} not ready after {timeout_s:.0f} s", flush=True)
        return False

    def stop(self) -> None:
        for child in reversed(self.children):
            child.stop(self.args.stop_grace_s)


def is_ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m dsocr.serve", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--model",
        default=envs.get("MODEL"),
        help="HF id or local directory; default: $MODEL, else the tiny model on CPU or engine.json's model on GPU",
    )
    parser.add_argument("--device", choices=["cpu", "gpu"], default=None, help="default: auto-detect")
    parser.add_argument("--host", default=envs.get("DSOCR_HOST"), help="frontend bind address (DSOCR_HOST)")
    parser.add_argument("--port", type=int, default=int(envs.value("DSOCR_PORT")), help="frontend port (DSOCR_PORT)")
    parser.add_argument("--triton-http-port", type=int, default=8000)
    parser.add_argument("--triton-grpc-port", type=int, default=8001)
    parser.add_argument("--triton-metrics-port", type=int, default=8002)
    parser.add_argument("--model-repository", type=Path, default=paths.MODEL_REPOSITORY)
    parser.add_argument("--tritonserver", default=find_tritonserver())
    parser.add_argument("--ready-timeout-s", type=float, default=900.0, help="how long model loading may take")
    parser.add_argument(
        "--stop-grace-s",
        type=float,
        default=float(STOP_GRACE_S),
        help="how long each child may take to stop before it is killed",
    )
    parser.add_argument(
        "--unready-exit-s",
        type=float,
        default=30.0,
        help="exit non-zero once the model has been not ready this long for a reason no heal addresses",
    )
    parser.add_argument(
        "--heal-attempts",
        type=int,
        default=3,
        help="heals of one part (tritonserver, the frontend, a model) within --heal-window-s before giving up",
    )
    parser.add_argument("--heal-window-s", type=float, default=600.0, help="the window --heal-attempts counts heals in")
    parser.add_argument(
        "--no-frontend", action="store_true", help="tritonserver only (one of several behind a frontend elsewhere)"
    )
    parser.add_argument("--quiet", action="store_true", help="less Triton logging")
    args = parser.parse_args(argv)
    args.device = args.device or detect_device()
    if not args.model and args.device == "cpu":
        args.model = str(paths.tiny_model_dir("ocr"))
        args.tiny_model = True
    else:
        args.tiny_model = False
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.tiny_model:
        print(CPU_BANNER.format(model=args.model), flush=True)
    stack = Stack(args)
    stopping = threading.Event()

    def on_signal(signum, _frame):
        print(f"[serve] {signal.Signals(signum).name}: stopping", flush=True)
        stopping.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    # Regions of servers that died here before (a container restarted in a loop fills /dev/shm).
    if removed := healing.remove(healing.stale_shared_memory()):
        print(f"[serve] removed {removed} shared-memory region(s) of dead servers", flush=True)
    try:
        if not stack.start_triton(stopping):
            return 0 if stopping.is_set() else 1
        if not args.no_frontend and not stack.wait_ready(stack.start_frontend(), 60, stopping):
            return 0 if stopping.is_set() else 1
        api = "none (--no-frontend)" if args.no_frontend else f"http://{args.host}:{args.port}/v1"
        print(
            f"[serve] ready: OpenAI API {api} | "
            f"Triton HTTP :{args.triton_http_port} gRPC :{args.triton_grpc_port} "
            f"metrics :{args.triton_metrics_port} | model {args.model or 'from engine.json'}",
            flush=True,
        )
        return watch(stack, stopping)
    finally:
        stack.stop()
        print("[serve] stopped", flush=True)


def watch(stack: Stack, stopping: threading.Event) -> int:
    """Until stopped: heal what dies; 1 when a part cannot be healed within its budget, or the model stays not
    ready for a reason no heal addresses."""
    healer = Healer(stack, stopping)
    unready_since = None
    while not stopping.wait(1.0):
        heals = healer.heals
        states = stack.repository().states()  # None: Triton does not answer (busy, or restarting)
        outcome = healer.check(states)
        if outcome is not None:
            return outcome
        if healer.heals != heals:  # what Triton said before a heal is stale; readiness's clock starts again
            unready_since = None
            continue
        if states is not None and states.get(contract.ENSEMBLE):
            unready_since = None
        elif unready_since is None:
            unready_since = time.monotonic()
            print(
                f"[serve] the model is not ready; exiting unless it recovers in {stack.args.unready_exit_s:.0f} s",
                flush=True,
            )
        elif time.monotonic() - unready_since > stack.args.unready_exit_s:
            print("[serve] the model stayed not ready; stopping", flush=True)
            return 1
    return 0


class Healer:
    """Puts back the parts of the stack that died: the frontend and tritonserver (restarted); a model whose
    stub or engine died (reloaded in place through Triton's repository API, the ensemble with it, or the
    server restarted where Triton cannot let go of a dead stub). Each part has a budget of attempts
    (`--heal-attempts` within `--heal-window-s`, backing off); when one is spent, the serve command exits 1
    for its own supervisor to take over."""

    MODELS = (contract.PREPROCESS_MODEL, contract.VLLM_MODEL)

    def __init__(self, stack: Stack, stopping: threading.Event) -> None:
        self.stack, self.stopping = stack, stopping
        self._budgets: dict[str, healing.Budget] = {}
        self.heals = 0  # done so far
        self._exits: list[int] | None = []  # a pidfd per live stub; None: walk /proc at every check
        self._instances = self._live_instances()  # what serves now: an instance gone from it died

    def _live_instances(self) -> dict[str, dict[str, str]]:
        """{model: {instance: its shared-memory region}}; the stubs found are watched for their exit."""
        assert self.stack.triton is not None  # watched only once started
        table = list(healing.processes())
        stubs = {model: healing.model_stubs(self.stack.triton.process.pid, model, table) for model in self.MODELS}
        self._watch([stub.pid for found in stubs.values() for stub in found])
        return {model: {stub.instance: stub.region for stub in found} for model, found in stubs.items()}

    def _watch(self, pids: list[int]) -> None:
        """A pidfd per stub: a check walks /proc (milliseconds of CPU, every second) only once one has exited."""
        for fd in self._exits or []:
            os.close(fd)
        self._exits = []
        try:
            for pid in pids:
                self._exits.append(os.pidfd_open(pid))
        except OSError:  # gone already (the next check walks), or no pidfds on this kernel
            for fd in self._exits:
                os.close(fd)
            self._exits = None

    def _a_stub_exited(self) -> bool:
        return self._exits is None or bool(select.select(self._exits, [], [], 0)[0])

    def check(self, states: dict[str, bool] | None) -> int | None:
        """`states`: the repository's (healing.Repository.states)."""
        for child in self.stack.children:
            if child.process.poll() is not None:
                print(f"[serve] {child.name} exited with {child.process.returncode}", flush=True)
                return self._healed(self._attempt(child.name, functools.partial(self._restart, child)))
        live = self._live_instances() if self._a_stub_exited() else self._instances
        for model in self.MODELS:
            dead = {region for name, region in self._instances[model].items() if name not in live[model]}
            if dead or (states is not None and states.get(model) is False):
                return self._healed(self._attempt(model, functools.partial(self._reload, model, dead)))
        return None

    def _healed(self, outcome: int | None) -> int | None:
        if outcome is None:
            self.heals += 1
            self._instances = self._live_instances()
            # What the dead part left that the heal's own cleanup passed over: a region written just before
            # the death looked too young to be nobody's then; by now it is not.
            healing.remove(healing.stale_shared_memory())
        return outcome

    def _attempt(self, part: str, heal: Callable[[], bool]) -> int | None:
        args = self.stack.args
        budget = self._budgets.setdefault(part, healing.Budget(args.heal_attempts, args.heal_window_s))
        wait_s = budget.take()
        if wait_s is None:
            print(
                f"[serve] {part} died again: {args.heal_attempts} heals in {args.heal_window_s:.0f} s; giving up",
                flush=True,
            )
            return 1
        if self.stopping.wait(wait_s):
            return 0
        started = time.monotonic()
        if not heal():
            return 0 if self.stopping.is_set() else self._attempt(part, heal)
        print(f"[serve] {part} healed in {time.monotonic() - started:.1f} s", flush=True)
        return None

    def _restart(self, child: Child, grace_s: float | None = None) -> bool:
        """A dead child started again; the frontend goes on while tritonserver restarts (its requests get 503s)."""
        # What is left of its process group (stubs, engine) stops with it.
        child.stop(self.stack.args.stop_grace_s if grace_s is None else grace_s)
        if child is self.stack.frontend:
            return self.stack.wait_ready(self.stack.start_frontend(), 60, self.stopping)
        healing.remove(healing.stale_shared_memory(grace_s=1.0))  # the dead server's regions
        return self.stack.start_triton(self.stopping)

    def _reload(self, model: str, dead_regions: set[str]) -> bool:
        """The model unloaded with the ensemble and loaded again, in place; the whole server restarted where
        Triton cannot let go of a dead instance."""
        repository, triton = self.stack.repository(), self.stack.triton
        assert triton is not None
        if triton.process.poll() is not None:
            # It died during the last attempt: Triton 2.51 can abort (boost lock_exception) finalising an
            # instance whose stub died.
            print(
                f"[serve] tritonserver exited with {triton.process.returncode} while {model} was reloaded; "
                "restarting it",
                flush=True,
            )
            return self._restart(triton, grace_s=0)
        print(f"[serve] {model} is down (a dead instance or engine); reloading it with the ensemble", flush=True)
        started = time.monotonic()
        try:
            repository.unload(model)  # the ensemble with it: readiness says not ready until it is back
        except OSError as exc:  # already unloaded (the vLLM model unloads itself when its engine dies)
            print(f"[serve] unloading {model}: {exc}", flush=True)
        server = triton.process.pid
        self._wait_gone(model, server, UNLOAD_GRACE_S)  # its live instances finish what they hold
        # Triton 2.51 can wait for ever to unload a model one of whose stubs died (the server's exit
        # then times out too): what is left of the model is stopped here.
        table = list(healing.processes())
        stopped = healing.model_stubs(server, model, table)
        self._kill([stub.pid for stub in stopped])
        self._kill(healing.orphan_engines(server, table))
        self._wait_gone(model, server)
        if self._held(dead_regions | {stub.region for stub in stopped}, server):
            # Triton 2.51 never finishes tearing down an instance whose stub died in the middle of a request
            # (it waits on the dead stub), the stubs killed here included: its memory stays mapped and the
            # server's own exit would time out.
            print(f"[serve] tritonserver cannot let go of the dead {model} instance; restarting it", flush=True)
            return self._restart(triton, grace_s=0)
        healing.remove(healing.stale_shared_memory())
        unloaded = time.monotonic()
        try:
            repository.load(model)
            repository.load(contract.ENSEMBLE)
        except OSError as exc:
            print(f"[serve] loading {model} failed: {exc}", flush=True)
            return False
        print(
            f"[serve] {model}: unloaded in {unloaded - started:.1f} s, loaded in {time.monotonic() - unloaded:.1f} s",
            flush=True,
        )
        return self.stack.wait_ready(triton, self.stack.args.ready_timeout_s, self.stopping)

    def _wait_gone(self, model: str, server_pid: int, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while healing.live_instances(server_pid, model, list(healing.processes())) and time.monotonic() < deadline:
            time.sleep(0.2)

    @staticmethod
    def _held(regions: set[str], server_pid: int, timeout_s: float = 5.0) -> bool:
        """Whether the server still maps the regions of dead instances once their model is unloaded."""
        deadline = time.monotonic() + timeout_s
        while regions & healing.mapped_shared_memory([server_pid]):
            if time.monotonic() > deadline:
                return True
            time.sleep(0.5)
        return False

    @staticmethod
    def _kill(pids: list[int]) -> None:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


if __name__ == "__main__":
    sys.exit(main())
