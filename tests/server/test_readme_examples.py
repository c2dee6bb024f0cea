"""The README's "Calling it" and "Documents" examples, run as written against the real service.

Only what differs on a test machine is changed: the service's ports, and
max_tokens (2048 tokens of the tiny model's meaningless text would take
minutes on CPU). page.png and report.pdf are generated in the working directory.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys

from dsocr import paths
from tests.helpers import page_png
from tests.sample_documents import raster_pdf

README = paths.REPO_ROOT.joinpath("README.md").read_text()


def examples(heading: str, names: list[str]) -> dict[str, str]:
    section = README.split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]
    return dict(zip(names, re.findall(r"```(?:bash|python)\n(.*?)```", section, re.S), strict=True))


EXAMPLES = {
    **examples("Calling it", ["curl", "openai-sdk", "tritonclient"]),
    **examples("Documents: PDFs, TIFFs and several images", ["ocr-curl", "ocr-mistral", "ocr-openai"]),
}
MAX_TOKENS = 8


def localised(code: str, service) -> str:
    code = code.replace("localhost:8080", f"127.0.0.1:{service.port}")
    code = code.replace("localhost:8001", service.triton_grpc_url)
    code = code.replace("max_tokens=2048", f"max_tokens={MAX_TOKENS}")
    return code.replace('"max_tokens": 2048', f'"max_tokens": {MAX_TOKENS}')


def run_example(name: str, service, tmp_path) -> str:
    (tmp_path / "page.png").write_bytes(page_png())
    (tmp_path / "report.pdf").write_bytes(raster_pdf())
    command = ["bash", "-euo", "pipefail", "-c"] if name.endswith("curl") else [sys.executable, "-c"]
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


def test_ocr_curl(service, tmp_path):
    response = json.loads(run_example("ocr-curl", service, tmp_path))
    assert [page["index"] for page in response["pages"]] == [0, 1]
    assert all(page["usage"]["completion_tokens"] <= MAX_TOKENS for page in response["pages"])


def test_ocr_mistral_sdk(service, tmp_path):
    lines = run_example("ocr-mistral", service, tmp_path).splitlines()
    assert [line.split(" ", 1)[0] for line in lines] == ["0", "1"], lines
    assert all("dpi=144" in line for line in lines), lines


def test_ocr_openai_file_part(service, tmp_path):
    output = run_example("ocr-openai", service, tmp_path)
    assert output.count("<--- Page Split --->") == 2  # report.pdf's three pages, in one answer
    [completion_tokens] = re.findall(r"completion_tokens=(\d+)", output)
    assert 3 <= int(completion_tokens) <= 3 * MAX_TOKENS  # summed over the pages
