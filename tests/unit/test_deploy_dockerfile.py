"""The GPU image, checked without a Docker engine: hadolint, the build context,
and that the image runs the serve command the server tests run, on the ports
and paths the service declares."""

from __future__ import annotations

import importlib.util
import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from deploy import render_k8s
from dsocr import envs, serve

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile.triton"
SERVE_MODULE = "dsocr.serve"


INSTRUCTIONS = render_k8s.dockerfile_instructions(DOCKERFILE)


def arguments(keyword: str) -> list[str]:
    return [args for kw, args in INSTRUCTIONS if kw == keyword]


def exec_form(keyword: str) -> list[str]:
    (line,) = arguments(keyword)
    return json.loads(line)  # not JSON: shell form, which would keep signals from the process


def test_hadolint_passes():
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    assert hadolint, "hadolint is not installed: scripts/setup.sh installs requirements/dev-tools.txt"
    result = subprocess.run(
        [hadolint, "--config", str(REPO / "deploy" / "hadolint.yaml"), "--no-color", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_base_image_is_a_pinned_ngc_triton_vllm_release():
    (base,) = arguments("FROM")
    assert re.fullmatch(r"nvcr\.io/nvidia/tritonserver:\d\d\.\d\d-vllm-python-py3", base)


def copied_sources() -> list[str]:
    sources = []
    for line in arguments("COPY"):
        words = [w for w in shlex.split(line) if not w.startswith("--")]
        sources += words[:-1]
    return sources


def test_every_copied_path_exists_and_is_in_the_build_context():
    allowed = {
        line[1:].rstrip("/")
        for line in (REPO / "Dockerfile.triton.dockerignore").read_text().splitlines()
        if line.startswith("!")
    }
    for source in copied_sources():
        assert (REPO / source).exists(), f"COPY {source}: no such path in the repository"
        assert source.rstrip("/") in allowed, f"COPY {source}: excluded by Dockerfile.triton.dockerignore"


def test_installs_the_gpu_pins_into_the_interpreter_the_stubs_run():
    runs = " ".join(arguments("RUN"))
    assert "python3 -m pip install --no-cache-dir -r requirements/gpu-py3.12.lock" in runs
    assert "--no-deps -e ." in runs  # editable: the serve command finds model_repository/ beside src/
    assert re.search(r"^vllm==\d", (REPO / "requirements" / "gpu-py3.12.lock").read_text(), re.M)


def test_default_command_is_the_serve_module_the_server_tests_run():
    entrypoint, command = exec_form("ENTRYPOINT"), exec_form("CMD")
    assert entrypoint[:2] == ["dumb-init", "--single-child"]
    assert entrypoint[-1] == "/opt/nvidia/nvidia_entrypoint.sh"
    assert re.search(r"dumb-init==[\d.]+\S*", " ".join(arguments("RUN")))
    assert command == ["python3", "-m", SERVE_MODULE]
    assert importlib.util.find_spec(SERVE_MODULE) is not None
    assert f'"-m", "{SERVE_MODULE}"' in (REPO / "tests" / "helpers.py").read_text()


def test_ports_and_healthcheck_are_the_services():
    defaults = serve.parse_args(["--device=gpu"])
    frontend = int(envs.DECLARED["DSOCR_PORT"].default)
    assert defaults.port == frontend
    exposed = {int(port) for line in arguments("EXPOSE") for port in line.split()}
    assert exposed == {frontend, defaults.triton_http_port, defaults.triton_grpc_port, defaults.triton_metrics_port}

    (healthcheck,) = arguments("HEALTHCHECK")
    assert f"http://127.0.0.1:{frontend}/health/ready" in healthcheck
    start_period = int(re.search(r"--start-period=(\d+)s", healthcheck).group(1))
    assert start_period >= defaults.ready_timeout_s


def test_hf_cache_is_a_volume_and_the_device_is_fixed():
    env = render_k8s.dockerfile_env(INSTRUCTIONS)
    assert env["DSOCR_DEVICE"] == "gpu"
    assert json.loads(arguments("VOLUME")[0]) == [env["HF_HOME"]]


def test_readme_commands_match_the_image():
    readme = (REPO / "README.md").read_text()
    image = render_k8s.default_image()
    assert f"docker build -f Dockerfile.triton -t {image} ." in readme
    run = re.search(r"^docker run .*?(?=\n\n|```)", readme, re.S | re.M).group(0)
    assert "--gpus all" in run and image in run
    shm = re.search(r"--shm-size=(\d+)([mg])", run)
    assert int(shm.group(1)) * (1024 if shm.group(2) == "g" else 1) >= 512
    assert re.search(r"kubectl apply -n \S+ -f deploy/k8s/", readme)
    assert "deploy/render_k8s.py --image" in readme
