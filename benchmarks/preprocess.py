"""Preprocessing throughput: dsocr.preprocessing against vLLM's DeepseekOCRProcessor.

Both sides take encoded bytes (decode included) and make Gundam-mode views:
ours as uint8 (`preprocess_image`), measured twice: as the server runs it
(each resize pass shared with a second thread) and with everything on one
thread; vLLM's as float32
(`DeepseekOCRProcessor.tokenize_with_images` after DeepSeek's loader: open,
EXIF transpose, convert to RGB). The images are document-sized and made in
memory: A4 pages at 150 and 200 DPI as JPEG and PNG with text-like content,
and ~12 Mpx phone photos of a page as JPEG.

Each side runs in its own process, with its own heap and caches: the ~40 MB
of float tensors vLLM's side allocates per image cannot slow or warm up ours,
or the reverse. The parent has them process one image at a time in turn,
alternating which goes first, so only one side runs at any moment and both
see the same machine conditions; each image counts with its best time over
the passes (the machine may be shared). Both sides run with the same malloc
settings (MALLOC_ENV) and the same number of torch threads (default 1:
Triton runs N single-core preprocess instances; ours does not use torch at
all). The parent then checks, untimed, that ours normalised equals vLLM's
output exactly on every image, and prints the table and where each side's
time goes.

Two clocks: wall-clock per image is the latency one request sees on an idle
machine (where ours may use a second core); CPU seconds per image (all the
side's threads) is what bounds throughput once every core is busy, as with N
Triton instances under load. A second thread cannot help the latter.

    python -m benchmarks.preprocess [--family ocr|ocr2] [--repeat 5] [--threads 1]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pickle
import pstats
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image, ImageOps

from benchmarks.benchkit import report, systems
from benchmarks.benchkit.images import A4_INCHES, Sample, encoded, phone_photo, text_page

PROMPT = "<image>\n<|grounding|>Convert the document to markdown."
STRATEGY = {"ocr": "v1", "ocr2": "v2"}


def make_samples() -> list[Sample]:
    samples = []
    for dpi in (150, 200):
        size = (round(A4_INCHES[0] * dpi), round(A4_INCHES[1] * dpi))
        for seed in range(2):
            page = text_page(*size, seed=dpi + seed)
            samples.append(Sample(f"A4 {dpi} DPI JPEG", encoded(page, "JPEG", quality=90), "JPEG"))
            samples.append(Sample(f"A4 {dpi} DPI PNG", encoded(page, "PNG"), "PNG"))
    for seed in range(2):
        photo = phone_photo(3000, 4000, seed=seed)
        samples.append(Sample("phone photo 3000x4000 JPEG", encoded(photo, "JPEG", quality=92), "JPEG"))
    return samples


# --- the two sides ------------------------------------------------------------------


def our_side(family: str, max_crops: int, tokenizer_dir: Path, parallel: bool = True):
    """Bytes in, uint8 views out (no tokenizer: the prompt is tokenised where the model runs)."""
    from dsocr.preprocessing import preprocess_image, resolution_mode

    mode = resolution_mode(family, "gundam", max_crops)
    return lambda data: preprocess_image(data, mode, parallel=parallel)


def our_single_thread_side(family: str, max_crops: int, tokenizer_dir: Path):
    """Ours with every step on the calling thread."""
    return our_side(family, max_crops, tokenizer_dir, parallel=False)


def reference_processor(family: str, max_crops: int, tokenizer_dir: Path):
    from vllm.transformers_utils.processors.deepseek_ocr import DeepseekOCRProcessor

    from dsocr.preprocessing import resolution_mode
    from dsocr.tiny_models import load_tokenizer

    mode = resolution_mode(family, "gundam", max_crops)
    return DeepseekOCRProcessor(
        load_tokenizer(tokenizer_dir),
        image_size=mode.tile_size,
        base_size=mode.base_size,
        strategy=STRATEGY[family],
        max_crops=max_crops,
    )


def reference_decode(data: bytes) -> Image.Image:
    """DeepSeek's image loader."""
    return ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB")


def vllm_side(family: str, max_crops: int, tokenizer_dir: Path):
    """Bytes in, DeepSeek's loader, then vLLM's processor: float views and prompt ids out."""
    processor = reference_processor(family, max_crops, tokenizer_dir)
    return lambda data: processor.tokenize_with_images(PROMPT, [reference_decode(data)], cropping=True)


# Ours twice: the default (resize passes shared with a second thread) and all on one thread.
SIDES = {"ours": our_side, "ours 1 thread": our_single_thread_side, "vLLM": vllm_side}


# The work both sides must do with the same result: the bicubic resizes (PIL's
# on vLLM's side; ours, equal to them bit for bit, in `resize_all`) and PIL's
# decoders.
SHARED_WORK = ("bicubic resizes", "PIL decode")


def time_breakdown(process, samples: list[Sample]) -> dict[str, float]:
    """Seconds spent in each kind of SHARED_WORK, and in all, over one profiled pass."""
    profiler = cProfile.Profile()
    profiler.enable()
    for sample in samples:
        process(sample.data)
    profiler.disable()
    # (file, line, name) -> (calls, calls, own seconds, cumulative seconds, {caller: (.., .., .., cumulative)})
    entries = pstats.Stats(profiler).stats  # type: ignore[attr-defined]  # the raw table pstats keeps, undeclared

    def keys(file: str, name: str) -> list:
        return [key for key in entries if key[0].endswith(file) and key[2] == name]

    ours, pil = keys("resample.py", "resize_all"), keys(f"PIL{os.sep}Image.py", "resize")
    pil_within_ours = sum(entries[key][4].get(caller, (0, 0, 0, 0))[3] for key in pil for caller in ours)
    return {
        "bicubic resizes": sum(entries[key][3] for key in ours + pil) - pil_within_ours,
        "PIL decode": sum(entry[2] for key, entry in entries.items() if "'decode' of 'ImagingDecoder'" in key[2]),
        "all": sum(entry[2] for entry in entries.values()),
    }


# Replies start with this, so that anything a library prints to stdout is skipped.
REPLY = "@@ "
# For both sides: glibc keeps freed memory for the next image (mmap only above
# 32 MiB, no trimming) instead of returning it and page-faulting it back in,
# some 20 ms per 12 Mpx photo. A preprocessing server wants the same.
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": str(32 << 20), "MALLOC_TRIM_THRESHOLD_": str(1 << 30)}


def serve_side(side: str, args: argparse.Namespace) -> None:
    """Child process: load the samples, warm up, then answer each line on stdin:
    a sample index -> seconds to process that sample; "breakdown" -> JSON."""
    import torch

    torch.set_num_threads(args.threads)
    samples: list[Sample] = pickle.loads(args.samples.read_bytes())
    process = SIDES[side](args.family, args.max_crops, args.tokenizer_dir)
    for sample in samples:  # imports, first allocations
        process(sample.data)
    print(REPLY + "ready", flush=True)
    for line in sys.stdin:
        if line.strip() == "breakdown":
            print(REPLY + json.dumps(time_breakdown(process, samples)), flush=True)
            continue
        data = samples[int(line)].data
        start, start_cpu = time.perf_counter(), time.process_time()
        process(data)
        print(f"{REPLY}{time.perf_counter() - start} {time.process_time() - start_cpu}", flush=True)


class SideProcess:
    """One side in its own process, processing one sample per request."""

    def __init__(self, side: str, args: argparse.Namespace, samples_file: Path, tokenizer_dir: Path) -> None:
        command = [
            sys.executable, "-m", __spec__.name, "--child", side, "--family", args.family,
            "--max-crops", str(args.max_crops), "--threads", str(args.threads),
            "--samples", str(samples_file), "--tokenizer-dir", str(tokenizer_dir),
        ]  # fmt: skip
        self.process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env={**os.environ, **MALLOC_ENV}
        )
        assert self.process.stdin is not None and self.process.stdout is not None  # both piped
        self._requests, self._replies = self.process.stdin, self.process.stdout
        self._reply()  # ready

    def _reply(self) -> str:
        for line in self._replies:
            if line.startswith(REPLY):
                return line[len(REPLY) :].strip()
        sys.exit(f"benchmark process exited with {self.process.wait()}")

    def _ask(self, request: str) -> str:
        self._requests.write(request + "\n")
        self._requests.flush()
        return self._reply()

    def seconds(self, index: int) -> tuple[float, float]:
        """(wall, CPU) seconds to process one sample; CPU counts all of the side's threads."""
        wall, cpu = self._ask(str(index)).split()
        return float(wall), float(cpu)

    def breakdown(self) -> dict[str, float]:
        return json.loads(self._ask("breakdown"))

    def close(self) -> None:
        self._requests.close()
        self.process.wait()


def best_seconds(sides: list[SideProcess], samples: list[Sample], repeat: int) -> list[dict[str, dict[str, float]]]:
    """Per side, per clock ("wall", "cpu"), seconds per sample name: the sum
    of each sample's best time.

    The sides take turns on every sample, the first of each turn alternating
    from pass to pass.
    """
    best = [[(float("inf"), float("inf"))] * len(samples) for _ in sides]
    for attempt in range(repeat):
        order = list(range(len(sides)))[:: 1 if attempt % 2 == 0 else -1]
        for index in range(len(samples)):
            for side in order:
                wall, cpu = sides[side].seconds(index)
                best[side][index] = (min(best[side][index][0], wall), min(best[side][index][1], cpu))
    per_side = []
    for side_best in best:
        seconds: dict[str, dict[str, float]] = {"wall": {}, "cpu": {}}
        for sample, (wall, cpu) in zip(samples, side_best, strict=True):
            seconds["wall"][sample.name] = seconds["wall"].get(sample.name, 0.0) + wall
            seconds["cpu"][sample.name] = seconds["cpu"].get(sample.name, 0.0) + cpu
        per_side.append(seconds)
    return per_side


# --- checking and reporting ---------------------------------------------------------


def check_identical(samples: list[Sample], family: str, max_crops: int, tokenizer_dir: Path) -> None:
    """Ours, normalised, equals vLLM's output on every sample, or exit non-zero."""
    import torch

    from dsocr.preprocessing.normalize import normalize

    processor = reference_processor(family, max_crops, tokenizer_dir)
    ours = [our_side(family, max_crops, tokenizer_dir, parallel) for parallel in (True, False)]
    for sample, our_process in ((sample, side) for sample in samples for side in ours):
        mine = our_process(sample.data)
        _, pixel_values, images_crop, _, spatial_crop, token_counts, _ = processor.tokenize_with_images(
            PROMPT, [reference_decode(sample.data)], cropping=True
        )
        same = (
            torch.equal(normalize(torch.from_numpy(mine.global_view))[None], pixel_values)
            and torch.equal(normalize(torch.from_numpy(mine.tiles)), images_crop)
            and spatial_crop.tolist() == [list(mine.spatial_crop)]
            and token_counts == [mine.num_image_tokens]
        )
        if not same:
            sys.exit(f"MISMATCH on {sample.name}")
    print(f"ours (both ways) identical to vLLM's on all {len(samples)} images "
          "(pixels after normalisation, spatial crop, token count)")  # fmt: skip


def transfer_sizes() -> dict[str, int]:
    """Bytes of the views one request carries from preprocess to vllm_model, as uint8."""
    from dsocr.preprocessing import resolution_mode

    sizes = {}
    for family, tiles in (("ocr", 6), ("ocr", 9), ("ocr2", 6)):
        mode = resolution_mode(family, "gundam", tiles)
        sizes[f"{family}: global {mode.base_size}^2 + {tiles} x {mode.tile_size}^2"] = (
            3 * mode.base_size**2 + tiles * 3 * mode.tile_size**2
        )
    return sizes


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--family", choices=STRATEGY, default="ocr")
    parser.add_argument("--max-crops", type=int, default=6)
    parser.add_argument("--repeat", type=int, default=5, help="timed passes over the image set (best one counts)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads, both sides")
    parser.add_argument("--child", choices=SIDES, help=argparse.SUPPRESS)
    parser.add_argument("--samples", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--tokenizer-dir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--only", type=int, help="the first N images only (a quick check)")
    parser.add_argument("--results-dir", type=Path, default=report.RESULTS_DIR)
    parser.add_argument("--report", type=Path, default=report.REPORT)
    args = parser.parse_args(argv)
    if args.child:
        serve_side(args.child, args)
        return {}

    from dsocr.tiny_models import build_tokenizer

    samples = make_samples()[: args.only]
    args.device = systems.detect_device()
    data = report.new_run(
        args.device,
        {
            "family": args.family,
            "max_crops": args.max_crops,
            "repeat": args.repeat,
            "threads": args.threads,
            "images": len(samples),
        },
    )
    with tempfile.TemporaryDirectory() as scratch:
        tokenizer_dir = build_tokenizer(Path(scratch))
        samples_file = Path(scratch) / "samples.pickle"
        samples_file.write_bytes(pickle.dumps(samples))
        print(f"{len(samples)} images, Gundam ({args.family}, max {args.max_crops} tiles), best of {args.repeat} "
              f"passes per image, torch threads {args.threads}, each side in its own process")  # fmt: skip
        sides = [SideProcess(side, args, samples_file, tokenizer_dir) for side in SIDES]
        seconds = dict(zip(SIDES, best_seconds(sides, samples, args.repeat), strict=True))
        breakdowns = {name: side.breakdown() for name, side in zip(SIDES, sides, strict=True) if name != "ours"}
        for side in sides:
            side.close()
        check_identical(samples, args.family, args.max_crops, tokenizer_dir)
    counts: dict[str, int] = {}
    for sample in samples:
        counts[sample.name] = counts.get(sample.name, 0) + 1
    data.update(
        counts=counts,
        seconds=seconds,
        breakdowns=breakdowns,
        view_bytes=transfer_sizes(),
        shared_work=list(SHARED_WORK),
    )
    return report.publish("preprocess", data, args)


if __name__ == "__main__":
    main()
