"""What a run leaves in OUT_DIR, and how a rerun knows what is done.

Per document (its name `a/x` from inputs.py):

    a/x.md             the pages' markdown in order, joined by DeepSeek's page split marker;
                       figure links point into a/x/
    a/x.json           the `/v1/ocr` response for the document (figures' base64 left out: they are
                       files), plus "source": {"path", "sha256", "bytes"}
    a/x/img-N.jpeg     the figures, named by their ids in the response
    a/x/page-N.png     with --layout png: page N (0-based, as `index`) with its blocks drawn
    a/x_layouts.pdf    with --layout pdf: every page so drawn, one PDF (DeepSeek's script's name)

and for the run: errors.jsonl (a line per document that failed: its path, hash and reason) and
summary.json (what the final table says).

Every file is written to a hidden temporary name in its folder, then renamed over its name: a
reader, or a killed run, never sees half a file under a real name. The `.json` is written last
and records the source's hash: a document is done when its `.json` exists and names the same
sha256, so a rerun skips it, and redoes it if the file changed. A rename does not survive a power
cut without an fsync; a killed process it survives, and that is what a batch run meets.
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import quote

from dsocr.documents.layout import PAGE_SPLIT

from .documents import link_into

PARTIAL_SUFFIX = ".dsocr-partial"
ERRORS_FILE = "errors.jsonl"
SUMMARY_FILE = "summary.json"


def partial_path(path: Path) -> Path:
    """A hidden temporary name next to `path` (the same file system, so the rename is atomic)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}{PARTIAL_SUFFIX}")


def atomic_write(path: Path, data: bytes) -> None:
    temporary = partial_path(path)
    try:
        temporary.write_bytes(data)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def remove_partials(out_dir: Path) -> int:
    """Temporary files a killed run left behind; the run that owns OUT_DIR removes them as it starts."""
    removed = 0
    for path in out_dir.rglob(f".*{PARTIAL_SUFFIX}"):
        path.unlink(missing_ok=True)
        removed += 1
    return removed


@dataclass(frozen=True)
class DocumentOutputs:
    out_dir: Path
    name: PurePosixPath  # a/x

    @property
    def markdown(self) -> Path:
        return self.out_dir / f"{self.name}.md"

    @property
    def record(self) -> Path:
        return self.out_dir / f"{self.name}.json"

    @property
    def folder(self) -> Path:
        """Figures and page pictures."""
        return self.out_dir / self.name

    @property
    def layouts_pdf(self) -> Path:
        return self.out_dir / f"{self.name}_layouts.pdf"

    def figure(self, figure_id: str) -> Path:
        return self.folder / figure_id

    def page_picture(self, index: int) -> Path:
        return self.folder / f"page-{index}.png"

    def is_done(self, sha256: str) -> bool:
        try:
            record = json.loads(self.record.read_text())
        except (OSError, ValueError):
            return False
        return isinstance(record, dict) and record.get("source", {}).get("sha256") == sha256

    def begin(self) -> None:
        """Before a document's new outputs: a stale record (the file changed) must not outlive what it describes."""
        self.record.unlink(missing_ok=True)

    def finish(self, record: dict[str, Any], figures: dict[str, bytes], pictures: set[Path]) -> None:
        """The figures, the markdown, then the record: until the record is there the document is not done.
        `pictures`: the layout pictures already written, kept."""
        written = {self.figure(figure_id) for figure_id in figures} | pictures
        for figure_id, data in figures.items():
            atomic_write(self.figure(figure_id), data)
        self._remove_stale(written)
        atomic_write(self.markdown, markdown_text(record, quote(self.name.name)).encode())
        atomic_write(self.record, (json.dumps(record, ensure_ascii=False, indent=1) + "\n").encode())

    def _remove_stale(self, kept: set[Path]) -> None:
        """Figures and pictures of an earlier version of the document, or of an earlier --layout."""
        if self.folder.is_dir():
            for path in self.folder.iterdir():
                if path.is_file() and path not in kept and path.name.startswith(("img-", "page-")):
                    path.unlink()
        if self.layouts_pdf.exists() and self.layouts_pdf not in kept:
            self.layouts_pdf.unlink()


def markdown_text(record: dict[str, Any], figures_folder: str) -> str:
    return PAGE_SPLIT.join(link_into(page["markdown"], figures_folder) for page in record["pages"])


class ErrorLog:
    """errors.jsonl: the documents that failed in this run, a line each, written as they fail."""

    def __init__(self, out_dir: Path) -> None:
        self.path = out_dir / ERRORS_FILE
        # This run's failures only: a document that failed before is tried again, and listed again if it
        # fails again.
        atomic_write(self.path, b"")

    def append(self, entry: dict[str, Any]) -> None:
        # One write of one line: a kill leaves whole lines.
        with open(self.path, "a", encoding="utf-8") as log:
            log.write(json.dumps(entry, ensure_ascii=False) + "\n")


def write_summary(out_dir: Path, summary: dict[str, Any]) -> None:
    atomic_write(out_dir / SUMMARY_FILE, (json.dumps(summary, indent=1) + "\n").encode())
