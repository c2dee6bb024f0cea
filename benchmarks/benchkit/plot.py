"""The plot: throughput vs concurrency for (a)-(d), one request's stages, preprocess scaling, batching."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display on a server
import matplotlib.pyplot as plt

from benchmarks.benchkit.report import SYSTEMS

MARKERS = {"frontend": "o", "ensemble": "s", "vllm_serve": "^", "asyncllm": "D"}


def _throughput(ax, compare: dict) -> None:
    for name, levels in compare["systems"].items():
        ax.plot(
            [lv["concurrency"] for lv in levels],
            [lv["images_per_s"] for lv in levels],
            marker=MARKERS.get(name, "o"),
            label=SYSTEMS[name],
        )
    tokens = compare["settings"]["max_tokens"]
    ax.set(title=f"Throughput vs concurrency ({tokens} output tokens)", xlabel="concurrent requests", ylabel="images/s")
    ax.set_xscale("log", base=2)
    concurrency = sorted({lv["concurrency"] for levels in compare["systems"].values() for lv in levels})
    ax.set_xticks(concurrency, [str(c) for c in concurrency])
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)


def _breakdown(ax, breakdown: dict) -> None:
    left = 0.0
    for stage, seconds in breakdown["stages"].items():
        ax.barh([0], [seconds * 1000], left=left, label=stage)
        left += seconds * 1000
    ax.set(title="One request, end to end (a)", xlabel="ms", yticks=[])
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.25), ncol=2)


def _preprocess(ax, data: dict) -> None:
    levels = data["levels"]
    ax.plot([r["instances"] for r in levels], [r["images_per_s"] for r in levels], marker="o")
    ax.set(
        title=f"Preprocess instances ({data['settings']['image_set']} images)", xlabel="instances", ylabel="images/s"
    )
    ax.set_xticks([r["instances"] for r in levels])
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)


def _batching(ax, data: dict) -> None:
    levels = data["levels"]
    n = [lv["requests"] for lv in levels]
    ax.plot(n, [lv["vs_one"] for lv in levels], marker="o", label="measured")
    ax.plot(n, n, linestyle="--", color="grey", label="serialised")
    ax.set(
        title=f"N requests at once ({data['settings']['max_tokens']} tokens each)",
        xlabel="requests at once",
        ylabel="wall time / one request",
    )
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)


def _batch(ax, data: dict) -> None:
    labels = {"dsocr_ocr": "dsocr ocr", "one_by_one": "a page at a time"}
    runs = data["systems"]
    ax.bar([labels[name] for name in runs], [run["pages_per_s"] for run in runs.values()], color=["C0", "C7"])
    ax.set(title=f"A {data['settings']['pages']}-page corpus ({data['settings']['max_tokens']} tokens a page)",
           ylabel="pages/s")  # fmt: skip
    ax.grid(alpha=0.3, axis="y")


def plot(results: dict[str, dict], device: str, path: Path) -> None:
    panels = []
    if "compare" in results:
        panels.append(lambda ax: _throughput(ax, results["compare"]))
        if results["compare"].get("breakdown"):
            panels.append(lambda ax: _breakdown(ax, results["compare"]["breakdown"]))
    if "compare_long" in results:
        panels.append(lambda ax: _throughput(ax, results["compare_long"]))
    if "preprocess_instances" in results:
        panels.append(lambda ax: _preprocess(ax, results["preprocess_instances"]))
    if "batching" in results:
        panels.append(lambda ax: _batching(ax, results["batching"]))
    if "batch" in results:
        panels.append(lambda ax: _batch(ax, results["batch"]))
    if not panels:
        return
    columns = min(3, len(panels))
    rows = -(-len(panels) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(5.5 * columns, 4.6 * rows), squeeze=False)
    for ax in axes.flat[len(panels) :]:
        ax.axis("off")
    for draw, ax in zip(panels, axes.flat, strict=False):
        draw(ax)
    fig.suptitle(f"DeepSeek-OCR serving benchmarks ({device.upper()})")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
