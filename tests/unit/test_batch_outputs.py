"""What `dsocr ocr` writes, and what a rerun decides from it: atomic writes, the record written last, the
done test by content hash; the responses to parts of a document merged into one, figures numbered across
it."""

from __future__ import annotations

import json
import os
from pathlib import Path, PurePosixPath

import pytest

from dsocr.batch.documents import merge_answers
from dsocr.batch.ocr_run import is_ocr_response
from dsocr.batch.outputs import PARTIAL_SUFFIX, DocumentOutputs, ErrorLog, atomic_write, remove_partials
from dsocr.documents.layout import PAGE_SPLIT


def page(index: int, markdown: str = "", figures: int = 0) -> dict:
    images = [
        {"id": f"img-{n}.jpeg", "top_left_x": 0, "top_left_y": 0, "bottom_right_x": 5, "bottom_right_y": 5}
        for n in range(figures)
    ]
    blocks = [
        {"type": "image", "content": f"![{image['id']}]({image['id']})", "image_id": image["id"]} for image in images
    ]
    links = "\n".join(f"![{image['id']}]({image['id']})" for image in images)
    return {"index": index, "markdown": markdown + links, "images": images, "blocks": blocks}


def answer(*pages: dict, prompt: int = 10, completion: int = 2) -> dict:
    return {
        "pages": list(pages),
        "model": "deepseek-ocr",
        "usage": {"prompt_tokens": prompt, "completion_tokens": completion},
    }


# --- atomic writes ----------------------------------------------------------------------


def test_an_atomic_write_leaves_the_old_file_or_the_new_one_never_a_mix(tmp_path, monkeypatch):
    target = tmp_path / "out" / "x.json"
    atomic_write(target, b"old")

    def broken_replace(source, destination):
        raise OSError("disk gone")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError):
        atomic_write(target, b"new")
    monkeypatch.undo()
    assert target.read_bytes() == b"old"
    assert list(target.parent.iterdir()) == [target]  # its temporary file removed
    atomic_write(target, b"new")
    assert target.read_bytes() == b"new"


def test_a_killed_runs_temporaries_are_hidden_and_removed_by_the_next_run(tmp_path):
    leftover = tmp_path / "a" / f".x.json.1234{PARTIAL_SUFFIX}"
    leftover.parent.mkdir()
    leftover.write_bytes(b'{"half')
    kept = tmp_path / "a" / "y.json"
    kept.write_text("{}")
    assert remove_partials(tmp_path) == 1
    assert not leftover.exists() and kept.exists()


# --- done, by content hash ------------------------------------------------------------------


@pytest.fixture
def outputs(tmp_path) -> DocumentOutputs:
    return DocumentOutputs(tmp_path, PurePosixPath("a/report"))


def record(sha256: str, *pages: dict) -> dict:
    return {"pages": list(pages), "source": {"path": "x", "sha256": sha256, "bytes": 3}}


def test_a_document_is_done_when_its_record_names_the_same_hash(outputs):
    assert not outputs.is_done("aaa")
    outputs.finish(record("aaa", page(0, "one")), {}, set())
    assert outputs.is_done("aaa")
    assert not outputs.is_done("bbb")  # the file changed: redo it


def test_a_record_cut_short_is_not_done(outputs):
    outputs.record.parent.mkdir(parents=True)
    outputs.record.write_text('{"pages": [], "source": {"sha256": "aaa"')
    assert not outputs.is_done("aaa")


def test_the_markdown_joins_pages_with_deepseeks_marker_and_links_figures_into_the_folder(outputs):
    merged = merge_answers([answer(page(0, "First\n"), page(1, "Second\n", figures=1))], 100)
    outputs.finish({**merged, "source": {"sha256": "aaa"}}, {"img-0.jpeg": b"jpeg"}, set())
    assert outputs.markdown.read_text() == "First\n" + PAGE_SPLIT + "Second\n![img-0.jpeg](report/img-0.jpeg)"
    assert (outputs.folder / "img-0.jpeg").read_bytes() == b"jpeg"
    assert json.loads(outputs.record.read_text())["pages"][1]["markdown"] == "Second\n![img-0.jpeg](img-0.jpeg)"


def test_the_record_comes_last_and_a_redone_document_loses_its_stale_outputs(outputs, monkeypatch):
    outputs.finish(record("old", page(0)), {"img-0.jpeg": b"a", "img-1.jpeg": b"b"}, set())
    written: list[str] = []
    real = atomic_write

    def tracking(path: Path, data: bytes) -> None:
        written.append(path.name)
        real(path, data)

    monkeypatch.setattr("dsocr.batch.outputs.atomic_write", tracking)
    outputs.begin()
    assert not outputs.record.exists()  # from here on, the document is not done
    outputs.finish(record("new", page(0)), {"img-0.jpeg": b"c"}, set())
    assert written == ["img-0.jpeg", "report.md", "report.json"]
    assert sorted(path.name for path in outputs.folder.iterdir()) == ["img-0.jpeg"]


def test_the_error_log_holds_this_runs_failures_only(tmp_path):
    ErrorLog(tmp_path).append({"path": "old.pdf"})
    log = ErrorLog(tmp_path)
    log.append({"path": "new.pdf", "code": "encrypted_document"})
    lines = [json.loads(line) for line in (tmp_path / "errors.jsonl").read_text().splitlines()]
    assert lines == [{"path": "new.pdf", "code": "encrypted_document"}]


# --- merging the answers to parts of a document ------------------------------------------------


def test_answers_in_any_order_merge_into_pages_in_order_with_usage_summed():
    merged = merge_answers([answer(page(4), page(5)), answer(page(0), page(1), page(2), page(3))], 1234)
    assert [p["index"] for p in merged["pages"]] == [0, 1, 2, 3, 4, 5]
    assert merged["usage"] == {"prompt_tokens": 20, "completion_tokens": 4, "total_tokens": 24}
    assert merged["usage_info"] == {"pages_processed": 6, "doc_size_bytes": 1234}
    assert merged["model"] == "deepseek-ocr"


def test_figures_are_numbered_across_the_document_as_one_request_would():
    # Each request numbers its figures from img-0.
    later, first = answer(page(2, "c", figures=2)), answer(page(0, "a", figures=1), page(1, "b", figures=1))
    merged = merge_answers([later, first], 10)
    ids = [[image["id"] for image in p["images"]] for p in merged["pages"]]
    assert ids == [["img-0.jpeg"], ["img-1.jpeg"], ["img-2.jpeg", "img-3.jpeg"]]
    last = merged["pages"][2]
    assert last["markdown"] == "c![img-2.jpeg](img-2.jpeg)\n![img-3.jpeg](img-3.jpeg)"
    assert [block["image_id"] for block in last["blocks"]] == ["img-2.jpeg", "img-3.jpeg"]
    assert last["blocks"][1]["content"] == "![img-3.jpeg](img-3.jpeg)"


def test_only_an_ocr_response_with_the_pages_asked_for_is_merged():
    good = {"pages": [{"index": 2, "markdown": "", "dimensions": {}}], "usage": {}}
    assert is_ocr_response(good, [2]) and is_ocr_response(good, None)
    assert not is_ocr_response(good, [1])  # not the page asked for
    assert not is_ocr_response("<html>502 Bad Gateway</html>", [2])
    assert not is_ocr_response({"pages": [{"index": 2}], "usage": {}}, [2])
    assert not is_ocr_response({"pages": [], "usage": {}}, [2])
