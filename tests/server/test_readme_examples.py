"""The README's "Calling it" examples, run as written against the real service.

Only what differs on a test machine is changed: the service's ports, and
max_tokens (2048 tokens of the tiny model's meaningless text would take
minutes on CPU). page.png is a generated page in the working directory.
"""

from __future__ import annotations

import re
import subprocess
import sys

from dsocr import paths
from tests.helpers import page_png

SECTION = paths.REPO_ROOT.joinpath("README.md").read_text().split("\n## Calling it\n", 1)[1].split("\n## ", 1)[0]
EXAMPLES = dict(
    zip(["curl", "openai-sdk", "tritonclient"], re.findall(r"```(?:bash|python)\n(.*?)```", SECTION, re.S), strict=True)
)
MAX_TOKENS = 8


def localised(code: str, service) -> str:
    code = code.replace("localhost:8080", f"127.0.0.1:{service.port}")
    code = code.replace("localhost:8001", service.triton_grpc_url)
    code = code.replace("max_tokens=2048", f"max_tokens={MAX_TOKENS}")
    return code.replace('"max_tokens": 2048', f'"max_tokens": {MAX_TOKENS}')


def run_example(name: str, service, tmp_path) -> str:
    (tmp_path / "page.png").write_bytes(page_png())
    command = ["bash", "-euo", "pipefail", "-c"] if name == "curl" else [sys.executable, "-c"]
    run = subprocess.run(
        [*command, localised(EXAMPLES[name], service)], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stderr
    return run.stdout


def test_curl(service, tmp_path):
    health, models, completion = run_example("curl", service, tmp_path).replace(" ", "").split("}{", 2)
    assert '"status"' in health and '"deepseek-ocr"' in models
    assert '"finish_reason":"length"' in completion and f'"completion_tokens":{MAX_TOKENS}' in completion


def test_openai_sdk(service, tmp_path):
    output = run_example("openai-sdk", service, tmp_path)
    # Once for the completion, once for the stream's usage chunk.
    assert output.count(f"CompletionUsage(completion_tokens={MAX_TOKENS},") == 2, output


def test_tritonclient(service, tmp_path):
    output = run_example("tritonclient", service, tmp_path)
    assert output and "StatusCode" not in output, output  # an error prints as [StatusCode.…]
