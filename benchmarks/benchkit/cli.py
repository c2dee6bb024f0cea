"""The command line every benchmark shares: the machine, the model, where results go."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.benchkit import report, systems


def parser(doc: str | None) -> argparse.ArgumentParser:
    """A benchmark's parser with the shared flags: --device, --model, --results-dir, --report, --ready-timeout-s."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", choices=["cpu", "gpu"], help="default: auto-detect")
    p.add_argument("--model", help="default: what dsocr.serve serves (CPU: the tiny model)")
    p.add_argument("--results-dir", type=Path, default=report.RESULTS_DIR)
    p.add_argument("--report", type=Path, default=report.REPORT)
    p.add_argument("--ready-timeout-s", type=float, default=900, help="how long a server may take to load")
    return p


Defaults = Callable[[argparse.Namespace], dict[str, Any]]


def parse(p: argparse.ArgumentParser, argv: list[str] | None, defaults: Defaults | None = None) -> argparse.Namespace:
    """The arguments, the device detected when not given, and `defaults(args)` (by device, say) for what was
    not given."""
    args = p.parse_args(argv)
    args.device = args.device or systems.detect_device()
    for key, value in (defaults(args) if defaults else {}).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args
