"""The documents a run covers: INPUT arguments -> documents, each with its name under OUT_DIR.

An INPUT is a document file, a folder (searched recursively for documents), a glob
(`scans/**/*.pdf`), a text file listing paths (`.txt`, `.lst`, `.list`; one a line, `#` comments),
or `-` for such a list on stdin. Inside a folder, a glob or a list, documents are known by their
suffix (`DOCUMENT_SUFFIXES`); a file named on the command line is a document whatever its name
(the server decides by its content).

Each document's outputs mirror its path relative to its input's root (the folder, the glob's
fixed prefix, the deepest folder holding every file of a list), so that `a/x.pdf` and `b/x.pdf`
do not collide. Names that still collide (two roots with the same file, `x.pdf` and `x.png`) each
get a short hash of their file's path.

`--shard I/N` keeps the documents whose name hashes to I modulo N: N workers given the same
inputs cover the corpus disjointly and completely, whatever order they list it in.
"""

from __future__ import annotations

import glob
import hashlib
import os
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from typing import TextIO

DOCUMENT_SUFFIXES = frozenset({".pdf", ".tif", ".tiff", ".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif"})
LIST_SUFFIXES = frozenset({".txt", ".lst", ".list"})
STDIN = "-"
_GLOB_CHARACTERS = frozenset("*?[")
_COLLISION_HASH_CHARS = 8


class InputError(ValueError):
    """An INPUT that names nothing: a missing path, a glob without a match, an empty list."""


@dataclass(frozen=True)
class InputDocument:
    path: Path  # where it is read from
    relative: PurePosixPath  # its path under its input's root, suffix included
    # What --shard hashes: the relative path as found, before any collision suffix (which hashes the
    # absolute path), so that workers that mount the corpus elsewhere still agree.
    key: str

    @property
    def name(self) -> PurePosixPath:
        """Its outputs' path under OUT_DIR, without a suffix (`a/x` -> a/x.md, a/x.json, a/x/)."""
        return self.relative.with_suffix("")


@dataclass(frozen=True)
class Shard:
    index: int
    count: int

    @classmethod
    def parse(cls, text: str) -> Shard:
        """ "I/N", 0 <= I < N."""
        index, slash, count = text.partition("/")
        try:
            shard = cls(int(index), int(count))
        except ValueError:
            shard = None
        if not slash or shard is None or not 0 <= shard.index < shard.count:
            raise ValueError(f"a shard is I/N with 0 <= I < N (e.g. 0/4), not {text!r}")
        return shard

    def holds(self, document: InputDocument) -> bool:
        return shard_of(document.key, self.count) == self.index


def shard_of(key: str, count: int) -> int:
    """A stable hash (not Python's salted hash()): every worker must compute the same."""
    digest = hashlib.sha256(key.encode()).digest()
    return int.from_bytes(digest[:8], "big") % count


def discover(inputs: Iterable[str], stdin: TextIO | None = None) -> list[InputDocument]:
    """Every document the inputs name, in the order given (sorted within a folder or glob), each once."""
    found: list[InputDocument] = []
    for spec in inputs:
        found += _expand(spec, stdin)
    return _unique_names(_first_of_each_file(found))


def select_shard(documents: list[InputDocument], shard: Shard | None) -> list[InputDocument]:
    return documents if shard is None else [document for document in documents if shard.holds(document)]


def _expand(spec: str, stdin: TextIO | None) -> list[InputDocument]:
    if spec == STDIN:
        if stdin is None:
            raise InputError("'-' reads paths from stdin, and there is none")
        return _listed(stdin.read().splitlines(), Path.cwd(), "stdin")
    path = Path(spec)
    if path.is_dir():
        return _in_folder(path, path)
    if path.is_file():
        if path.suffix.lower() in LIST_SUFFIXES:
            return _listed(path.read_text().splitlines(), path.parent, str(path))
        return [_document(path, PurePosixPath(path.name))]
    if _GLOB_CHARACTERS & set(spec):
        return _globbed(spec)
    raise InputError(f"{spec}: no such file or folder")


def _in_folder(folder: Path, root: Path) -> list[InputDocument]:
    files = sorted(path for path in folder.rglob("*") if path.is_file() and _is_document(path))
    return [_document(path, _relative(path, root)) for path in files]


def _globbed(pattern: str) -> list[InputDocument]:
    matches = sorted(Path(match) for match in glob.glob(pattern, recursive=True))
    files: list[Path] = []
    for match in matches:
        if match.is_dir():
            files += [document.path for document in _in_folder(match, match)]
        elif match.is_file() and _is_document(match):
            files.append(match)
    if not files:
        raise InputError(f"{pattern}: the pattern matches no document")
    root = _fixed_prefix(pattern)
    return [_document(path, _relative(path, root)) for path in files]


def _listed(lines: list[str], base: Path, origin: str) -> list[InputDocument]:
    """A list's entries: paths relative to `base`, files or folders; named from their common folder."""
    files: list[Path] = []
    for number, line in enumerate(lines, start=1):
        entry = line.strip()
        if not entry or entry.startswith("#"):
            continue
        path = Path(entry) if Path(entry).is_absolute() else base / entry
        if path.is_dir():
            files += [document.path for document in _in_folder(path, path)]
        elif path.is_file():
            files.append(path)
        else:
            raise InputError(f"{origin}, line {number}: {entry}: no such file or folder")
    if not files:
        raise InputError(f"{origin}: the list names no document")
    root = Path(os.path.commonpath([path.resolve().parent for path in files]))
    return [_document(path, _relative(path.resolve(), root)) for path in files]


def _document(path: Path, relative: PurePosixPath) -> InputDocument:
    return InputDocument(path, relative, relative.as_posix())


def _fixed_prefix(pattern: str) -> Path:
    """The folder a glob searches: its parts before the first one with a wildcard."""
    fixed: list[str] = []
    for part in Path(pattern).parts[:-1]:
        if _GLOB_CHARACTERS & set(part):
            break
        fixed.append(part)
    return Path(*fixed) if fixed else Path(".")


def _relative(path: Path, root: Path) -> PurePosixPath:
    try:
        return PurePosixPath(path.resolve().relative_to(root.resolve()).as_posix())
    except ValueError:  # a link out of the root
        return PurePosixPath(path.name)


def _is_document(path: Path) -> bool:
    return path.suffix.lower() in DOCUMENT_SUFFIXES and not path.name.startswith(".")


def _first_of_each_file(documents: list[InputDocument]) -> list[InputDocument]:
    """A file named twice (a folder and a glob over it) is one document, named as first found."""
    seen: set[Path] = set()
    unique = []
    for document in documents:
        resolved = document.path.resolve()
        if resolved not in seen:
            seen.add(resolved)
            unique.append(document)
    return unique


def _unique_names(documents: list[InputDocument]) -> list[InputDocument]:
    counts = Counter(document.name for document in documents)
    return [_disambiguated(document) if counts[document.name] > 1 else document for document in documents]


def _disambiguated(document: InputDocument) -> InputDocument:
    digest = hashlib.sha256(str(document.path.resolve()).encode()).hexdigest()[:_COLLISION_HASH_CHARS]
    relative = document.relative
    return replace(document, relative=relative.with_name(f"{relative.stem}-{digest}{relative.suffix}"))
