"""Measured results -> the figures in docs/BENCHMARKS.md and the plot.

Each benchmark saves what it measured as JSON (docs/benchmarks/<name>-<device>.json)
and then re-renders every generated block of the report from all the JSON
files present, plus the plot. The report's prose lives outside the blocks
(`<!-- BEGIN <name>-<device> -->` ... `<!-- END ... -->`); a block with no
results keeps what it says (for the GPU: not measured yet). Figures are
only ever what a run measured.
"""

from __future__ import annotations

import json
import os
import platform
import re
import time
from pathlib import Path
from typing import Any

from dsocr import paths

RESULTS_DIR = paths.REPO_ROOT / "docs" / "benchmarks"
REPORT = paths.REPO_ROOT / "docs" / "BENCHMARKS.md"
DEVICES = ("cpu", "gpu")

SYSTEMS = {
    "frontend": "(a) our frontend over Triton",
    "ensemble": "(b) Triton gRPC, the ensemble",
    "vllm_serve": "(c) vllm serve",
    "asyncllm": "(d) AsyncLLM in-process",
}
# The host-cost benchmark's other ways of running (c).
HOST_COST_SYSTEMS = {
    **SYSTEMS,
    "vllm_serve_matched": "(c) vllm serve, our stream interval",
    "vllm_serve_api2": "(c) vllm serve, 2 API servers",
}
TTFT_TARGET_S = 0.010
ASYNCLLM_TARGET = 0.9


# --- saving -------------------------------------------------------------------------


def machine_conditions() -> dict:
    """What else the machine was doing: the load average when a run starts and ends."""
    return {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "loadavg": list(os.getloadavg()),
        "time": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }


def save(name: str, device: str, data: dict, results_dir: Path = RESULTS_DIR) -> Path:
    results_dir.mkdir(parents=True, exist_ok=True)
    path = results_dir / f"{name}-{device}.json"
    path.write_text(json.dumps(data, indent=1) + "\n")
    return path


def load_all(results_dir: Path) -> dict[tuple[str, str], dict]:
    found = {}
    for name in RENDERERS:  # every benchmark's results, in the report's order
        for device in DEVICES:
            path = results_dir / f"{name}-{device}.json"
            if path.exists():
                found[(name, device)] = json.loads(path.read_text())
    return found


# --- markdown -----------------------------------------------------------------------


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f}" if seconds >= 0.1 else f"{seconds * 1000:.1f}"


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def conditions_line(data: dict) -> str:
    before, after = data["conditions"]["before"], data["conditions"].get("after", {})
    load = lambda c: "/".join(f"{x:.2f}" for x in c.get("loadavg", ()))  # noqa: E731
    return (
        f"Measured {before['time']} on {data.get('machine', before['platform'])}, {before['cpus']} CPUs; "
        f"load average (1/5/15 min) {load(before)} before, {load(after)} after."
    )


def level(data: dict, system: str, concurrency: int) -> dict | None:
    for entry in data["systems"].get(system, ()):
        if entry["concurrency"] == concurrency:
            return entry
    return None


METRICS = [
    ("images_per_s", "images/s", "{:.3f}"),
    ("output_tokens_per_s", "output tok/s", "{:.1f}"),
    ("ttft_p50_s", "TTFT p50 ms", None),
    ("ttft_p95_s", "TTFT p95 ms", None),
    ("e2e_p50_s", "e2e p50 ms", None),
    ("e2e_p95_s", "e2e p95 ms", None),
]


def fmt(metric: str, value: float) -> str:
    pattern = dict((m, f) for m, _, f in METRICS)[metric]
    return pattern.format(value) if pattern else ms(value)


def ratio(value: float, reference: dict | None, metric: str) -> str:
    if reference is None or not reference[metric]:
        return "–"
    return f"{value / reference[metric]:.2f}"


def compare_markdown(data: dict) -> str:
    s = data["settings"]
    parts = [
        conditions_line(data),
        f"Workload `{s.get('workload', 'short')}`. Model `{s['model']}`; {s['images']} {s['image_set']} images "
        f"({s['resolution_mode']} mode, max "
        f"{s['max_crops']} tiles), prompt `{s['instruction']}`, {s['max_tokens']} output tokens per request "
        f"(ignore_eos), greedy, DeepSeek's n-gram rule ({s['ngram_size']}/{s['window_size']}); "
        f"{s['warmup']} warm-up requests per system; requests per level: {s['requests']}"
        + (
            f", over {s['passes']} passes, each after the first in the reverse order of the one before"
            if s.get("passes", 1) > 1
            else ""
        )
        + ".",
        "Engine settings, the same for every system: `" + json.dumps(s["engine_args"]) + "`.",
        "Prompt tokens per request: "
        + ", ".join(
            f"{SYSTEMS[name]} {sorted({t for lv in levels for t in lv['prompt_tokens']})}"
            for name, levels in data["systems"].items()
        )
        + ".",
    ]
    rows, ratio_rows = [], []
    for name, levels in data["systems"].items():
        for lv in levels:
            c = lv["concurrency"]
            rows.append(
                [
                    SYSTEMS[name],
                    str(c),
                    *(fmt(m, lv[m]) for m, _, _ in METRICS),
                    "/".join(map(str, lv["completion_tokens"])),
                ]
            )
            refs = (level(data, "vllm_serve", c), level(data, "asyncllm", c))
            ratio_rows.append(
                [
                    SYSTEMS[name],
                    str(c),
                    *(f"{ratio(lv[m], refs[0], m)} / {ratio(lv[m], refs[1], m)}" for m, _, _ in METRICS),
                ]
            )
    parts.append(table(["system", "concurrency", *(label for _, label, _ in METRICS), "output tokens"], rows))
    parts.append(
        "Ratios to (c) `vllm serve` / to (d) AsyncLLM (throughput: higher is better; latency: lower is better):"
    )
    parts.append(table(["system", "concurrency", *(label for _, label, _ in METRICS)], ratio_rows))
    if data.get("breakdown"):
        parts.append(breakdown_markdown(data["breakdown"]))
    parts.append(targets_markdown(data))
    return "\n\n".join(parts)


def breakdown_markdown(b: dict) -> str:
    rows = [[stage, ms(seconds)] for stage, seconds in b["stages"].items()]
    return "\n\n".join(
        [
            f"Where the time of one request goes (mean of {b['requests']} sequential pairs of requests, (b) then (a), "
            f"of one image, "
            f"{b['image']}; Triton's statistics extension and vLLM's engine metrics on Triton's metrics port, "
            f"the frontend as (a) minus (b)):",
            table(["stage", "ms"], rows),
            f"Time to first token: (a) {ms(b['frontend_ttft_s'])} ms, (b) {ms(b['ensemble_ttft_s'])} ms, "
            f"vLLM engine {ms(b['engine_ttft_s'])} ms; end to end: (a) {ms(b['frontend_e2e_s'])} ms, "
            f"(b) {ms(b['ensemble_e2e_s'])} ms.",
        ]
    )


def targets(data: dict) -> list[tuple[str, bool | str, str]]:
    """(target, met, the figures behind it); met is "info" for a figure without a target."""
    found: list[tuple[str, bool | str, str]] = []
    ours = data["systems"].get("frontend", [])

    def versus(reference: str, factor: float, label: str) -> None:
        found_levels = [(lv, level(data, reference, lv["concurrency"])) for lv in ours]
        pairs = [(lv, ref) for lv, ref in found_levels if ref is not None]
        if not pairs:
            found.append((label, "info", "not measured"))
            return
        detail = ", ".join(
            f"c={lv['concurrency']}: {lv['images_per_s'] / ref['images_per_s']:.2f}x" for lv, ref in pairs
        )
        met = all(lv["images_per_s"] >= factor * ref["images_per_s"] for lv, ref in pairs)
        found.append((label, met, detail))

    spreads = [
        max(by_pass) / min(by_pass) - 1
        for levels in data["systems"].values()
        for lv in levels
        if len(by_pass := lv.get("images_per_s_by_pass", [])) > 1
    ]
    if spreads:
        found.append(
            (
                "run-to-run spread (for information)",
                "info",
                f"images/s of one system at one concurrency differed between passes by up to "
                f"{max(spreads):.0%} (median {sorted(spreads)[len(spreads) // 2]:.0%}): smaller differences "
                "between systems are not shown by this run",
            )
        )
    versus("vllm_serve", 1.0, "(a) throughput >= (c) vllm serve at every concurrency")
    versus("asyncllm", ASYNCLLM_TARGET, f"(a) throughput >= {ASYNCLLM_TARGET}x (d) AsyncLLM at every concurrency")
    b = data.get("breakdown")
    if b and "added_ttft" in b:
        added = b["added_ttft"]
        outside = added.get("outside_engine_p50_s", {})
        found.append(
            (
                "frontend + Triton added TTFT < 10 ms p50 relative to (b)",
                added["p50_s"] < TTFT_TARGET_S,
                f"(a) - (b) = {ms(added['p50_s'])} ms, quartiles {ms(added['p25_s'])} / {ms(added['p75_s'])} ms "
                f"(median over {added['pairs']} sequential pairs of tiny-mode, one-token requests, each net of "
                f"the engine's own TTFT; outside the engine: (a) {ms(outside.get('frontend', float('nan')))} ms, "
                f"(b) {ms(outside.get('ensemble', float('nan')))} ms p50)",
            )
        )
    for lv in ours:
        ref = level(data, "ensemble", lv["concurrency"])
        if ref:
            found.append(
                (
                    f"added TTFT p50 (a) - (b) at c={lv['concurrency']} (under load, for information)",
                    "info",
                    f"{ms(lv['ttft_p50_s'] - ref['ttft_p50_s'])} ms",
                )
            )
    return found


def targets_markdown(data: dict) -> str:
    word = {True: "**met**", False: "**missed**", "info": "–"}
    return "Targets on this run:\n\n" + table(
        ["target", "", "figures"], [[t, word[met], detail] for t, met, detail in targets(data)]
    )


def perf_analyzer_markdown(data: dict) -> str:
    s = data["settings"]
    rows = [
        [
            str(r["concurrency"]),
            f"{r['throughput']:.3f}",
            ms(r["p50_latency_s"]),
            ms(r["p95_latency_s"]),
            ms(r["avg_latency_s"]),
            ms(r.get("first_response_p50_s", float("nan"))),
        ]
        for r in data["levels"]
    ]
    return "\n\n".join(
        [
            conditions_line(data),
            f"`{' '.join(data['command'])}` (per concurrency, from `{s['input_data']}`: {s['images']} "
            f"{s['image_set']} images, {s['max_tokens']} tokens each, {s['resolution_mode']} mode).",
            table(
                [
                    "concurrency",
                    "infer/s",
                    "p50 latency ms",
                    "p95 latency ms",
                    "avg latency ms",
                    "first response p50 ms",
                ],
                rows,
            ),
            f"perf_analyzer's own summary at concurrency {data['levels'][-1]['concurrency']} (server side per "
            "composing model; the decoupled `vllm_model`'s compute is only its hand-over to the engine):",
            "```\n" + data["levels"][-1].get("summary", "") + "\n```",
        ]
    )


def preprocess_markdown(data: dict) -> str:
    s = data["settings"]
    base = data["levels"][0]["images_per_s"]
    rows = [
        [
            str(r["instances"]),
            str(r["concurrency"]),
            str(r["requests"]),
            f"{r['images_per_s']:.2f}",
            f"{r['images_per_s'] / base:.2f}x",
            ms(r["e2e_p50_s"]),
        ]
        for r in data["levels"]
    ]
    output_tokens = f", {s['max_tokens']} output tokens" if s.get("max_tokens") else ""
    return "\n\n".join(
        [
            conditions_line(data),
            f"Target: {s['target']}; {s['images']} {s['image_set']} images ({s['resolution_mode']} mode, "
            f"max {s['max_crops']} tiles){output_tokens}.",
            table(["preprocess instances", "concurrency", "requests", "images/s", "vs 1 instance", "e2e p50 ms"], rows),
        ]
    )


def batching_markdown(data: dict) -> str:
    s = data["settings"]
    rows = [
        [
            str(lv["requests"]),
            f"{lv['wall_s']:.2f}",
            f"{lv['vs_one']:.2f}x",
            f"{lv['requests']}x",
            "/".join(map(str, lv["completion_tokens"])),
        ]
        for lv in data["levels"]
    ]
    return "\n\n".join(
        [
            conditions_line(data),
            f"Model `{s['model']}`; one small image in {s['resolution_mode']} mode, {s['max_tokens']} output tokens "
            f"per request (ignore_eos, n-gram rule off), through the ensemble over gRPC; best of {s['repeat']} runs "
            "each.",
            table(["requests at once", "wall s", "vs one request", "if serialised", "output tokens"], rows),
        ]
    )


HOST_COST_COLUMNS = [
    "system",
    "concurrency",
    "output tok/s",
    "images/s",
    "tok/s vs (c)",
    "TTFT p50 ms",
    "host CPU ms/token",
    "host CPU ms/request",
    "host CPU vs (c)",
    "net of idle ms/request",
    "net vs (c)",
    "requests/s per host core",
]


def against_the_engine_client(runs: dict) -> list[str]:
    """(a) as a ratio of (d), vLLM's AsyncLLM alone, level by level: throughput, and host CPU per request of
    the whole stack and of the vLLM model's stub (where our stack runs that same client)."""
    floor = {lv["concurrency"]: lv for lv in runs.get("asyncllm", [])}
    pairs = [(lv, floor[lv["concurrency"]]) for lv in runs.get("frontend", []) if lv["concurrency"] in floor]
    if not pairs:
        return []

    def ratios(of, of_theirs=None) -> str:
        return " / ".join(f"{of(ours) / (of_theirs or of)(theirs):.2f}x" for ours, theirs in pairs)

    def per_request(level: dict, role: str | None = None) -> float:
        seconds = level["host_cpu_s"] if role is None else level["host_cpu_s_by_role"].get(role, 0.0)
        return seconds / level["requests"]

    concurrency = " / ".join(str(ours["concurrency"]) for ours, _ in pairs)
    return [
        f"(a) against (d), vLLM's AsyncLLM with nothing around it (it decodes the image and runs vLLM's "
        f"processor in its process, as `vllm serve`'s API server does), at concurrency {concurrency}: output "
        f"tok/s {ratios(lambda lv: lv['output_tokens_per_s'])} (target 0.95x); host CPU per request "
        f"{ratios(per_request)}, of which the vLLM model's stub (the same engine client, handed our views) "
        f"{ratios(lambda lv: per_request(lv, 'vllm_model stub'), per_request)}."
    ]


def host_cost_markdown(data: dict) -> str:
    s, runs = data["settings"], data["systems"]
    reference = runs.get("vllm_serve", [])
    rows = []
    for name, levels in runs.items():
        for lv in levels:
            ref = next((r for r in reference if r["concurrency"] == lv["concurrency"]), None)
            rows.append(
                [
                    HOST_COST_SYSTEMS[name],
                    str(lv["concurrency"]),
                    f"{lv['output_tokens_per_s']:.1f}",
                    f"{lv['images_per_s']:.3f}",
                    f"{lv['output_tokens_per_s'] / ref['output_tokens_per_s']:.2f}x" if ref else "–",
                    ms(lv["ttft_p50_s"]),
                    f"{lv['host_cpu_ms_per_token']:.3f}",
                    f"{lv['host_cpu_ms_per_request']:.0f}",
                    f"{lv['host_cpu_ms_per_token'] / ref['host_cpu_ms_per_token']:.2f}x" if ref else "–",
                    f"{lv['host_cpu_net_ms_per_request']:.0f}",
                    f"{lv['host_cpu_net_ms_per_request'] / ref['host_cpu_net_ms_per_request']:.2f}x" if ref else "–",
                    f"{1000 / lv['host_cpu_ms_per_request']:.1f}",
                ]
            )
    roles = sorted(
        {role for levels in runs.values() for lv in levels for role, s in lv["host_cpu_s_by_role"].items() if s}
    )
    by_role = [
        [HOST_COST_SYSTEMS[name], str(lv["concurrency"])]
        + [f"{1000 * lv['host_cpu_s_by_role'].get(role, 0.0) / lv['requests']:.1f}" for role in roles]
        for name, levels in runs.items()
        for lv in levels
    ]
    idle = "; ".join(
        f"{HOST_COST_SYSTEMS[name]} {sum(levels[0]['idle_cpu_ms_per_s'].values()):.1f} ("
        + ", ".join(f"{role} {rate:.1f}" for role, rate in sorted(levels[0]["idle_cpu_ms_per_s"].items()) if rate)
        + ")"
        for name, levels in runs.items()
        if levels
    )
    interval = s["stream_interval"]
    coalescing = (
        f"Our engine.json streams every {interval} tokens (the first and the last at once); (c) matched is "
        f"`vllm serve --stream-interval {interval}`."
        if interval > 1
        else "Both stream every token (vLLM's default stream interval, 1); ours coalesces only what piles up "
        "while a response is being sent."
    )
    return "\n\n".join(
        [
            conditions_line(data),
            f"Model `{s['model']}`; {s['images']} {s['image_set']} images, Gundam mode, {s['max_tokens']} output "
            f"token(s) per request (ignore_eos); every system loaded at once, each level run on one after the "
            f"other in {s['rounds']} rounds, the order reversed each round. Host CPU: the user + system time of "
            "the processes outside vLLM's engine (ours: frontend, tritonserver, stubs; `vllm serve`: its API "
            "server(s); (d): its one process). " + coalescing,
            table(HOST_COST_COLUMNS, rows),
            *against_the_engine_client(runs),
            f"Idle, every system loaded and no request in flight (ms of CPU a second, by process): {idle}. "
            "Net of idle: a level's host CPU less that rate over its wall time, per request.",
            "Host CPU ms per request, by process:",
            table(["system", "concurrency", *roles], by_role),
        ]
    )


def documents_markdown(data: dict) -> str:
    s, runs = data["settings"], data["systems"]
    names = {"document": "(a) the PDF in one /v1/ocr request", "one_by_one": "(b) one /v1/ocr request per page",
             "floor": "(f) offline floor: render all, one LLM.generate"}  # fmt: skip
    floor = runs.get("floor")
    rows = [
        [
            names[name],
            f"{run['pages_per_s']:.2f}",
            f"{run['pages_per_s'] / floor['pages_per_s']:.2f}x" if floor else "–",
            f"{run['seconds']:.1f}",
            " / ".join(f"{p['pages_per_s']:.2f}" for p in run["passes"]),
            str(run["completion_tokens"]),
        ]
        for name, run in runs.items()
    ]
    lines = [
        conditions_line(data),
        f"Model `{s['model']}`; a PDF of {s['pages']} text pages of {s['page_points'][0]:g} x {s['page_points'][1]:g} "
        f"pt ({s['document_bytes'] / 2**20:.1f} MiB), rendered at {s['dpi']} DPI, Gundam mode (at most "
        f"{s['max_crops']} tiles), DeepSeek's document prompt, {s['max_tokens']} output tokens a page at most; "
        f"best of {s['passes']} passes, the second in the reverse order. Rendering one page (PDFium, one worker): "
        f"{data['render_ms_per_page']:.0f} ms.",
        table(["", "pages/s", "vs floor", "s", "pages/s by pass", "output tokens"], rows),
    ]
    if "document" in runs and "one_by_one" in runs:
        lines.append(
            f"Pages at once against one at a time, the same pages and stack: "
            f"{runs['document']['pages_per_s'] / runs['one_by_one']['pages_per_s']:.2f}x."
        )
    return "\n\n".join(lines)


def batch_markdown(data: dict) -> str:
    s, runs = data["settings"], data["systems"]
    names = {"dsocr_ocr": "(a) `dsocr ocr` on the corpus", "one_by_one": "(b) one /v1/ocr request per page, in turn"}
    rows = [
        [
            names[name],
            f"{run['pages_per_s']:.2f}",
            f"{run['seconds']:.1f}",
            f"{run['wall_s']:.1f}" if "wall_s" in run else "–",
            " / ".join(f"{p['pages_per_s']:.2f}" for p in run["passes"]),
            str(run["completion_tokens"]),
        ]
        for name, run in runs.items()
    ]
    documents = ", ".join(f"a {pages}-page PDF" if pages else "an image" for pages in s["corpus"])
    concurrency = s.get("concurrency") or "its default"
    tiles = f" (at most {s['max_crops']} tiles)" if s["resolution_mode"] == "gundam" else ""
    lines = [
        conditions_line(data),
        f"Model `{s['model']}`; a corpus of {s['pages']} text pages of {s['page_points'][0]:g} x "
        f"{s['page_points'][1]:g} pt in {len(s['corpus'])} documents ({documents}), {s['resolution_mode']} "
        f"mode{tiles}, DeepSeek's document prompt, {s['max_tokens']} output tokens a page at most; "
        f"`dsocr ocr` at concurrency {concurrency}; best of {s['passes']} passes, the second in the reverse order. "
        "(a)'s seconds are the run's own (its summary.json), its wall time includes starting the command.",
        table(["", "pages/s", "s", "wall s", "pages/s by pass", "output tokens"], rows),
    ]
    if "dsocr_ocr" in runs and "one_by_one" in runs:
        lines.append(
            "`dsocr ocr` against the same pages one at a time: "
            f"{runs['dsocr_ocr']['pages_per_s'] / runs['one_by_one']['pages_per_s']:.2f}x."
        )
    return "\n\n".join(lines)


def preprocess_speed_markdown(data: dict) -> str:
    s, counts, seconds = data["settings"], data["counts"], data["seconds"]
    sides = list(seconds)
    ours = [side for side in sides if side != "vLLM"]

    def throughput(clock: str) -> str:
        rows = []
        for name, count in [*counts.items(), ("all", sum(counts.values()))]:
            taken = {
                side: sum(seconds[side][clock].values()) if name == "all" else seconds[side][clock][name]
                for side in sides
            }
            rows.append(
                [
                    name,
                    str(count),
                    *(f"{count / taken[side]:.2f}" for side in sides),
                    *(f"{taken['vLLM'] / taken[side]:.2f}x" for side in ours),
                ]
            )
        return table(
            ["image", "count", *(f"{side} img/s" for side in sides), *(f"{side} vs vLLM" for side in ours)], rows
        )

    shares = [
        [
            side,
            *(f"{b[kind] / b['all']:.0%}" for kind in data["shared_work"]),
            f"{1 - sum(b[kind] for kind in data['shared_work']) / b['all']:.0%}",
        ]
        for side, b in data["breakdowns"].items()
    ]
    views = [
        [label, f"{size / 2**20:.1f} MiB", f"{4 * size / 2**20:.1f} MiB"] for label, size in data["view_bytes"].items()
    ]
    return "\n\n".join(
        [
            conditions_line(data),
            f"{s['images']} images, Gundam ({s['family']}, max {s['max_crops']} tiles), encoded bytes to views, best "
            f"of {s['repeat']} passes per image, torch threads {s['threads']}, each side in its own process. Ours, "
            "normalised, equals vLLM's processor output on every image (pixels, spatial crop, token count): the run "
            "stops otherwise.",
            "Wall-clock per image (the latency of one request on an idle machine):",
            throughput("wall"),
            "Per CPU-second, all the side's threads (what bounds throughput once every core is busy):",
            throughput("cpu"),
            "Where the time goes (one profiled pass of the calling thread):",
            table(["side", *data["shared_work"], "the rest"], shares),
            "The views one request carries from `preprocess` to `vllm_model`: uint8 as sent, and what float32 "
            "would be:",
            table(["views", "uint8", "float32"], views),
        ]
    )


def soak_markdown(data: dict) -> str:
    s, v = data["settings"], data["verdict"]
    rows = [
        [str(r["minute"]), str(r["requests"]), ms(r["p50_s"]), ms(r["p95_s"]),
         ", ".join(f"{k}: {n}" for k, n in sorted(r["by_class"].items()))]
        for r in data["minutes"]
    ]  # fmt: skip
    first, last = data["samples"][0], data["samples"][-1]
    memory = [
        [name, f"{first['rss'].get(name, 0) / 2**20:.0f}", f"{last['rss'].get(name, 0) / 2**20:.0f}"]
        for name in sorted(set(first["rss"]) | set(last["rss"]))
    ] + [["/dev/shm (Triton, vLLM)", f"{first['shm_bytes'] / 2**20:.0f}", f"{last['shm_bytes'] / 2**20:.0f}"]]
    held = "held" if v["held"] else "**did not hold**"
    return "\n\n".join(
        [
            conditions_line(data),
            f"Model `{s['model']}`; {s['minutes']:g} minutes, {s['clients']} clients back to back, "
            f"{s['max_tokens']} output tokens per request; the mix (weights): "
            + ", ".join(f"{k} {w}" for k, w in s["mix"].items())
            + ". Classes are `action HTTP-status` (0: the connection failed).",
            f"Verdict: {held}. RSS growth after the warm-up minute {v['rss_growth_after_warmup']:+.1%} "
            f"(limit +5%); 5xx for good requests: {v['good_5xx']}; 5xx for bad input: {v['bad_input_5xx']}.",
            table(["process", "RSS first MiB", "RSS last MiB"], memory),
            table(["minute", "requests", "good p50", "good p95", "outcomes"], rows),
        ]
    )


RENDERERS = {
    "compare": compare_markdown,
    "compare_long": compare_markdown,
    "perf_analyzer": perf_analyzer_markdown,
    "preprocess_instances": preprocess_markdown,
    "batching": batching_markdown,
    "preprocess": preprocess_speed_markdown,
    "documents": documents_markdown,
    "batch": batch_markdown,
    "host_cost_long": host_cost_markdown,
    "host_cost_page": host_cost_markdown,
    "soak": soak_markdown,
}


def new_run(device: str, settings: dict) -> dict[str, Any]:
    """The record a run starts: the machine, its conditions before, what the run is asked to do."""
    from benchmarks.benchkit.systems import machine_description

    return {
        "machine": machine_description(device),
        "conditions": {"before": machine_conditions()},
        "settings": settings,
    }


def publish(name: str, data: dict, args) -> dict:
    """Close a run: the machine's conditions after it, its results saved, the report and plot rendered, its
    block printed."""
    data["conditions"]["after"] = machine_conditions()
    saved = save(name, args.device, data, args.results_dir)
    written = render(args.results_dir, args.report)
    print(f"[bench] results {saved}; rendered {', '.join(map(str, written))}", flush=True)
    print(RENDERERS[name](data))
    return data


def replace_block(text: str, key: str, body: str) -> str:
    begin, end = f"<!-- BEGIN {key} -->", f"<!-- END {key} -->"
    block = f"{begin}\n{body}\n{end}"
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)
    if pattern.search(text):
        return pattern.sub(lambda _: block, text)
    return text.rstrip("\n") + f"\n\n## {key}\n\n{block}\n"


def render(results_dir: Path = RESULTS_DIR, report: Path = REPORT, plot_dir: Path | None = None) -> list[Path]:
    """Rewrite every generated block of `report` and the plot of each device measured."""
    results = load_all(results_dir)
    text = report.read_text() if report.exists() else "# Benchmarks\n"
    for (name, device), data in results.items():
        text = replace_block(text, f"{name}-{device}", RENDERERS[name](data))
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text(text)
    written = [report]
    for device in DEVICES:
        if any(key[1] == device for key in results):
            from benchmarks.benchkit.plot import plot

            path = (plot_dir or report.parent) / f"benchmarks-{device}.png"
            plot({name: data for (name, d), data in results.items() if d == device}, device, path)
            written.append(path)
    return written
