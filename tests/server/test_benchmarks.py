"""The benchmark scripts, each on one tiny input, so that they do not rot.

The benchmarks themselves are not part of the suite (benchmarks/bench.sh runs
them). Here each script runs against the session's stack on one small image
and a couple of output tokens, with its results, report and plot written to
a temporary folder. `vllm serve` and the in-process AsyncLLM would each start
another engine (a minute on CPU), so for those the test covers what is
theirs: the command line and engine settings, the request bodies and engine
inputs, and the report rendered from a measured sample.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from PIL import Image

from benchmarks import batch as bench_batch
from benchmarks import batching as bench_batching
from benchmarks import compare as bench_compare
from benchmarks import documents as bench_documents
from benchmarks import host_cost as bench_host_cost
from benchmarks import perf_analyzer as bench_perf_analyzer
from benchmarks import preprocess as bench_preprocess
from benchmarks import preprocess_instances as bench_preprocess_instances
from benchmarks import soak as bench_soak
from benchmarks.benchkit import asyncllm, report, systems
from benchmarks.benchkit.host import HostCPU, host_processes
from benchmarks.benchkit.images import make_images

TINY = ["--device", "cpu", "--image-set", "small", "--images", "1", "--concurrency", "1"]


def outputs(tmp_path: Path) -> list[str]:
    return ["--results-dir", str(tmp_path / "results"), "--report", str(tmp_path / "BENCHMARKS.md")]


@pytest.fixture(scope="module")
def compared(service, tmp_path_factory) -> tuple[dict, Path]:
    """(a) and (b) with the stage breakdown, measured on the session's stack."""
    tmp_path = tmp_path_factory.mktemp("compare")
    data = bench_compare.main([
        *TINY, *outputs(tmp_path), "--systems", "frontend", "ensemble", "--max-tokens", "2", "--warmup", "0",
        "--min-requests", "1", "--requests-per-worker", "1", "--breakdown-requests", "1", "--ttft-pairs", "2",
        "--frontend-url", service.base_url, "--triton-grpc-url", service.triton_grpc_url,
        "--triton-http-url", service.triton_http_url,
        "--triton-metrics-url", f"http://127.0.0.1:{service.triton_metrics_port}",
    ])  # fmt: skip
    return data, tmp_path


def test_compare_measures_the_frontend_and_the_ensemble_alike(compared):
    data, tmp_path = compared
    frontend, ensemble = data["systems"]["frontend"][0], data["systems"]["ensemble"][0]
    assert frontend["completion_tokens"] == ensemble["completion_tokens"] == [2]
    assert frontend["requests"] == ensemble["requests"] == 2  # one per pass, pooled
    assert frontend["prompt_tokens"] == ensemble["prompt_tokens"]
    assert frontend["images_per_s"] > 0 and frontend["ttft_p50_s"] <= frontend["e2e_p50_s"]
    stages = data["breakdown"]["stages"]
    assert stages["vLLM engine (its queue, encoder, prefill, decode)"] > 0
    assert stages["preprocess (decode, views, tensor copies)"] > 0
    # Each stage is per request and net of the engine's time: none can be negative but by noise,
    # and the path outside Triton and the engine is milliseconds, not the engine's spread.
    assert 0 < stages["gRPC, ensemble hand-offs, response streaming"] < 0.5
    assert abs(stages["frontend (HTTP, JSON, base64, SSE)"]) < 0.5
    added = data["breakdown"]["added_ttft"]
    assert added["pairs"] == 2
    # Net of the engine's own TTFT: what remains is the path to and from the engine, milliseconds.
    assert all(0 < seconds < data["breakdown"]["engine_ttft_s"] for seconds in added["outside_engine_p50_s"].values())
    assert (tmp_path / "results" / "compare-cpu.json").exists()
    assert (tmp_path / "benchmarks-cpu.png").stat().st_size > 0


def test_compare_report_rendered_with_all_four_systems(compared, tmp_path):
    """Rendering only: (c) and (d) take the measured sample of (b) (this report is thrown away)."""
    data = {**compared[0], "systems": dict(compared[0]["systems"])}
    data["systems"]["vllm_serve"] = data["systems"]["asyncllm"] = data["systems"]["ensemble"]
    report.save("compare", "cpu", data, tmp_path)
    written = report.render(tmp_path, tmp_path / "BENCHMARKS.md")
    text = written[0].read_text()
    assert "<!-- BEGIN compare-cpu -->" in text and "(c) vllm serve" in text and "(d) AsyncLLM" in text
    assert "(a) throughput >= (c) vllm serve at every concurrency" in text
    assert written[1].name == "benchmarks-cpu.png"


def test_the_long_workload_is_a_result_and_report_block_of_its_own(compared, tmp_path):
    args = bench_compare.parse_args(["--device", "cpu", "--workload", "long"])
    assert args.max_tokens == 1024 and args.ttft_pairs == 0
    assert bench_compare.parse_args(["--device", "cpu", "--workload", "long", "--ttft-pairs", "3"]).ttft_pairs == 3
    long = {**compared[0], "settings": {**compared[0]["settings"], "workload": "long"}}
    report.save(bench_compare.WORKLOADS["long"], "cpu", long, tmp_path)
    # Into the real report: the block lands in its place in the CPU section, not appended.
    shutil.copy(report.REPORT, tmp_path / "BENCHMARKS.md")
    text = report.render(tmp_path, tmp_path / "BENCHMARKS.md")[0].read_text()
    block = text.index("<!-- BEGIN compare_long-cpu -->")
    assert text.index("## CPU") < block < text.index("## GPU")
    assert "Workload `long`" in text[block : text.index("<!-- END compare_long-cpu -->")]
    assert "<!-- BEGIN compare_long-gpu -->" in text  # its GPU place, waiting


def test_preprocess_benchmark_runs_both_sides_on_the_same_images(tmp_path):
    data = bench_preprocess.main(["--only", "1", "--repeat", "1", *outputs(tmp_path)])
    assert set(data["seconds"]) == {"ours", "ours 1 thread", "vLLM"}
    assert all(clocks["wall"]["A4 150 DPI JPEG"] > 0 for clocks in data["seconds"].values())
    assert "<!-- BEGIN preprocess-cpu -->" in (tmp_path / "BENCHMARKS.md").read_text()


def test_batching_benchmark_sends_requests_together_and_alone(service, tmp_path):
    data = bench_batching.main(
        [
            "--device",
            "cpu",
            "--url",
            service.triton_grpc_url,
            "--concurrency",
            "2",
            "--max-tokens",
            "4",
            "--repeat",
            "1",
            *outputs(tmp_path),
        ]
    )
    assert [lv["requests"] for lv in data["levels"]] == [1, 2]
    assert all(lv["completion_tokens"] == [4] and lv["wall_s"] > 0 for lv in data["levels"])
    assert "<!-- BEGIN batching-cpu -->" in (tmp_path / "BENCHMARKS.md").read_text()


def test_vllm_serve_gets_the_engine_settings_of_the_triton_model():
    engine_args = systems.engine_args(None, "cpu")
    command = systems.vllm_serve_command(engine_args, 1234)
    joined = " ".join(command)
    for flag in (
        "--no-enable-prefix-caching",
        "--mm-processor-cache-gb 0",
        "--enforce-eager",
        f"--max-num-seqs {engine_args['max_num_seqs']}",
        f"--max-model-len {engine_args['max_model_len']}",
        "--logits-processors vllm.model_executor.models.deepseek_ocr:NGramPerReqLogitsProcessor",
    ):
        assert flag in joined
    assert Path(command[command.index("--chat-template") + 1]).exists()
    assert systems.serve_env(None, "cpu")["VLLM_CPU_KVCACHE_SPACE"]


def test_vllm_serve_and_asyncllm_are_asked_for_the_same_work():
    args = bench_compare.parse_args([*TINY, "--max-tokens", "2"])
    image = make_images("small", 1)[0]
    whitelist = bench_compare.ngram_whitelist(systems.default_model("cpu"))
    client_body = bench_compare.vllm_serve_extra_body(args, whitelist)
    assert client_body["ignore_eos"] and client_body["vllm_xargs"]["ngram_size"] == args.ngram_size
    inputs = asyncllm.engine_inputs(bench_compare.prompt(args), asyncllm.decode(image.data))
    assert inputs["prompt"] == "<image>\nFree OCR." and isinstance(inputs["multi_modal_data"]["image"], Image.Image)
    settings = asyncllm.generation_parameters(args.max_tokens)
    assert settings.ignore_eos and settings.max_tokens == 2 and settings.ngram_size == args.ngram_size


def test_perf_analyzer_runs_on_the_ensemble(service, tmp_path):
    data = bench_perf_analyzer.main([
        *TINY, *outputs(tmp_path), "--url", service.triton_grpc_url, "--max-tokens", "2", "--requests", "1",
        "--warmup-requests", "0", "--work-dir", str(tmp_path / "work"),
    ])  # fmt: skip
    level = data["levels"][0]
    assert level["requests"] >= 1 and level["throughput"] > 0
    assert 0 < level["first_response_p50_s"] <= level["p50_latency_s"]
    assert "<!-- BEGIN perf_analyzer-cpu -->" in (tmp_path / "BENCHMARKS.md").read_text()


def test_preprocess_instances_script(service, tmp_path):
    data = bench_preprocess_instances.main([
        *TINY[:6], *outputs(tmp_path), "--url", service.triton_grpc_url, "--target", "preprocess",
        "--concurrency", "1", "--requests", "1", "--warmup", "0",
    ])  # fmt: skip
    assert data["levels"][0]["images_per_s"] > 0
    repository = bench_preprocess_instances.repository_with_instances(tmp_path / "repo", 3)
    assert "count: 3" in (repository / "preprocess" / "config.pbtxt").read_text()
    assert (repository / "vllm_model" / "1" / "engine.json").exists()


def test_documents_benchmark_sends_a_pdf_whole_and_page_by_page(service, tmp_path):
    args = ["--device", "cpu", "--url", service.base_url, "--systems", "document", "one_by_one"]
    args += ["--pages", "2", "--max-tokens", "2", "--passes", "1", *outputs(tmp_path)]
    data = bench_documents.main(args)
    assert set(data["systems"]) == {"document", "one_by_one"}
    assert all(run["pages"] == 2 and run["pages_per_s"] > 0 for run in data["systems"].values())
    assert data["render_ms_per_page"] > 0
    assert "<!-- BEGIN documents-cpu -->" in (tmp_path / "BENCHMARKS.md").read_text()


def test_documents_floor_gets_the_pages_the_stack_renders():
    """What the offline floor hands vLLM: each page rendered by the stack's renderer at 144 DPI."""
    pdf = bench_documents.document(3, [100, 50])
    pages = bench_documents.rendered(pdf)
    assert [page.size for page in pages] == [(200, 100)] * 3
    assert len({page.tobytes() for page in pages}) == 3  # distinct pages, in order


def test_host_cost_counts_the_stacks_processes_outside_the_engine(service):
    """What the interleaved benchmark meters: the frontend, tritonserver and the stubs, not vLLM's engine."""
    names = {process.name() for process in host_processes(service.marker)}
    assert "tritonserver" in names and any("python" in name for name in names), names
    assert not any("EngineCore" in name or "Worker" in name for name in names), names
    meter = HostCPU(service.marker)
    before = meter.by_role()
    assert {"frontend", "tritonserver", "preprocess stub", "vllm_model stub", "serve supervisor"} <= set(before)
    client = service.client()
    path = ("frontend", "preprocess stub", "vllm_model stub")
    content = [{"type": "image_url", "image_url": {"url": make_images("small", 1)[0].data_url}}]
    for _ in range(5):  # CPU time counts in 10 ms ticks: one short request may not reach a tick in every process
        client.chat.completions.create(
            model="deepseek-ocr", messages=[{"role": "user", "content": content}], max_tokens=2
        )
        used = bench_host_cost.difference(meter.by_role(), before)
        if all(used[role] > 0 for role in path):
            break
    assert all(used[role] > 0 for role in path), used  # the requests' path


def test_host_cost_asks_every_vllm_serve_for_the_same_engine_and_says_how_each_differs():
    engine_args = {"max_model_len": 4096, "stream_interval": 8}
    assert bench_host_cost.serve_flags("vllm_serve", engine_args) == {"max_model_len": 4096}  # vLLM's default
    assert bench_host_cost.serve_flags("vllm_serve_matched", engine_args)["stream_interval"] == 8
    api2 = systems.vllm_serve_command(bench_host_cost.serve_flags("vllm_serve_api2", {"max_model_len": 4096}), 9)
    assert api2[api2.index("--api-server-count") + 1] == "2"
    level = {"concurrency": 1, "requests": 4, "wall_s": 2.0, "output_tokens_per_s": 20.0, "images_per_s": 2.0,
             "ttft_p50_s": 0.1, "samples": [(0.1, 1.0, 100, 10)] * 4}  # fmt: skip
    # 0.2 s of host CPU in 2 s of wall time, 0.01 s a second of it spent idle: 0.18 s for the 4 requests.
    costed = bench_host_cost.with_host_cost(level, {"frontend": 0.15, "tritonserver": 0.05}, {"tritonserver": 0.01})
    assert (costed["host_cpu_ms_per_token"], costed["host_cpu_ms_per_request"]) == (5.0, 50.0)
    assert costed["host_cpu_net_ms_per_request"] == pytest.approx(45.0)
    data = {"settings": {"stream_interval": 8, "model": "m", "images": 1, "image_set": "small", "max_tokens": 10,
            "rounds": 1}, "conditions": {"before": {"time": "t", "platform": "p", "cpus": 2}},
            "systems": {"frontend": [costed], "vllm_serve": [costed]}}  # fmt: skip
    text = report.host_cost_markdown(data)
    assert "| (a) our frontend over Triton | 1 | 37.5 | 12.5 |" in text  # ms per request by process
    assert "(a) our frontend over Triton 10.0 (tritonserver 10.0)" in text  # idle ms a second
    assert "against (d)" not in text
    stub = {**costed, "host_cpu_s_by_role": {"vllm_model stub": 0.1, "frontend": 0.1}}
    floor = {
        **costed,
        "output_tokens_per_s": 25.0,
        "host_cpu_s": 0.08,
        "host_cpu_s_by_role": {"AsyncLLM process": 0.08},
    }
    text = report.host_cost_markdown({**data, "systems": {"frontend": [stub], "asyncllm": [floor]}})
    assert "concurrency 1: output tok/s 0.80x (target 0.95x); host CPU per request 2.50x" in text
    assert "the vLLM model's stub (the same engine client, handed our views) 1.25x" in text


def test_host_cost_runs_vllms_engine_client_alone_as_the_floor(tmp_path):
    """(d) in the host-cost benchmark: AsyncLLM in a process of its own behind a POST, its host CPU that process's
    and not the engine's, the level and its figures recorded like any system's."""
    data = bench_host_cost.main([
        *TINY, *outputs(tmp_path), "--systems", "asyncllm", "--max-tokens", "4", "--min-requests", "2",
        "--rounds", "1", "--warmup", "1", "--idle-s", "1",
    ])  # fmt: skip
    (level,) = data["systems"]["asyncllm"]
    assert level["requests"] == 2 and level["completion_tokens"] == [4] and level["prompt_tokens"][0] > 100
    used = {role for role, seconds in level["host_cpu_s_by_role"].items() if seconds}  # not the engine's
    assert used == {"AsyncLLM process"}, level["host_cpu_s_by_role"]
    assert level["host_cpu_s"] > 0 and level["host_cpu_ms_per_token"] > 0
    assert "| (d) AsyncLLM in-process | 1 |" in (tmp_path / "BENCHMARKS.md").read_text()


def test_soak_records_memory_outcomes_and_latency_of_a_running_stack(service, tmp_path):
    """A short soak on the session's stack: every role's memory sampled, good requests served, bad input
    refused with a 4xx, the report block and the plot written."""
    args = ["--device", "cpu", "--url", service.base_url, "--marker", service.marker, "--minutes", "0.25"]
    data = bench_soak.main([*args, "--clients", "2", "--sample-s", "2", "--max-tokens", "2", *outputs(tmp_path)])
    roles = set(data["samples"][0]["rss"])
    assert {"frontend", "tritonserver", "preprocess stub", "vllm_model stub", "engine"} <= roles, roles
    outcomes = {k: n for row in data["minutes"] for k, n in row["by_class"].items()}
    assert any(k.startswith(("chat 200", "stream 200", "document 200")) for k in outcomes), outcomes
    assert all(int(k.split()[1]) in (400, 422) for k in outcomes if k.startswith("bad")), outcomes
    assert data["verdict"]["good_5xx"] == 0
    assert (tmp_path / "results" / "soak-cpu.png").stat().st_size > 0
    assert "<!-- BEGIN soak-cpu -->" in (tmp_path / "BENCHMARKS.md").read_text()


def test_batch_benchmark_runs_dsocr_ocr_and_a_page_at_a_time_on_one_corpus(service, tmp_path):
    args = ["--device", "cpu", "--url", service.base_url, "--corpus", "2", "0", "--max-tokens", "2"]
    args += ["--resolution-mode", "tiny", "--passes", "1", *outputs(tmp_path)]
    data = bench_batch.main(args)
    assert data["settings"]["pages"] == 3
    runs = data["systems"]
    assert set(runs) == {"dsocr_ocr", "one_by_one"}
    assert all(run["pages"] == 3 and run["pages_per_s"] > 0 for run in runs.values())
    assert runs["dsocr_ocr"]["wall_s"] >= runs["dsocr_ocr"]["seconds"]  # the command's start on top of its run
    assert "<!-- BEGIN batch-cpu -->" in (tmp_path / "BENCHMARKS.md").read_text()
