"""Where the project's files are, for a checkout (editable install) or an image."""

from __future__ import annotations

import os
from pathlib import Path

from dsocr import envs, families

# src/dsocr/paths.py -> the repository root
REPO_ROOT = Path(__file__).resolve().parents[2]
MODEL_REPOSITORY = REPO_ROOT / "model_repository"


def cache_dir() -> Path:
    """Outside the checkout, so that fresh clones share what was built."""
    default = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "dsocr"
    return Path(envs.get("DSOCR_CACHE_DIR") or default)


def tiny_model_dir(family: str = "ocr") -> Path:
    return cache_dir() / "models" / families.family(family).tiny_model
