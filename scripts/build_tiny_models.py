"""Build the tiny DeepSeek-OCR and DeepSeek-OCR-2 test models (random weights, real files).

    python scripts/build_tiny_models.py [--out DIR]

DIR defaults to `$DSOCR_CACHE_DIR/models` (see dsocr.paths for the default
cache). Each family goes into its own subdirectory (`tiny-deepseek-ocr`,
`tiny-deepseek-ocr2`). Models already built by this builder version are left
as they are, so running it again costs nothing.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from dsocr import paths
from dsocr.tiny_models import FAMILIES, build_tiny_model, is_built


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=paths.cache_dir() / "models", help="parent directory of the models")
    return parser.parse_args()


def directory_size(directory: Path) -> int:
    return sum(f.stat().st_size for f in directory.iterdir() if f.is_file())


def main() -> None:
    out = parse_args().out
    for family in FAMILIES:
        model_dir = out / paths.tiny_model_dir(family).name
        outcome = "already built" if is_built(model_dir, family) else "built"
        started = time.monotonic()
        build_tiny_model(model_dir, family)
        elapsed = time.monotonic() - started
        size_mib = directory_size(model_dir) / 2**20
        print(f"{family}: {model_dir} ({size_mib:.0f} MiB), {outcome} in {elapsed:.1f} s", flush=True)


if __name__ == "__main__":
    main()
