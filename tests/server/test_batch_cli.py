"""`dsocr ocr` and `dsocr run-batch` against the real stack: the command as a user runs it (a subprocess,
stdout and stderr piped: no TTY), the session's service behind `--url`.

Every page is a real page through the tiny model, so the corpora are a handful of small pages in the tiny
resolution mode with two output tokens each; refused documents (corrupt, encrypted) cost no engine time.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pypdfium2 as pdfium
import pytest
from PIL import Image
from pypdf import PdfReader, PdfWriter

from dsocr.batch.inputs import shard_of
from dsocr.batch.outputs import PARTIAL_SUFFIX
from dsocr.documents.layout import PAGE_SPLIT
from tests.helpers import metric_when_still, page_png, wait_until
from tests.sample_documents import encrypted_pdf, noise_pdf, raster_pdf, tiff, written

# Points at 72 DPI: at the service's 144 DPI each page is twice as many pixels a side.
PDF_PAGES = [((200, 200, 200), (180, 120)), ((210, 210, 210), (120, 180)), ((220, 220, 220), (150, 150))]
CHEAP = ["--resolution-mode", "tiny", "--max-tokens", "2"]


def dsocr(service, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dsocr.cli", *args, "--url", service.base_url],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def start_dsocr(service, *args: str) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "dsocr.cli", *args, "--url", service.base_url]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def records(out: Path) -> dict[str, dict]:
    return {str(path.relative_to(out).with_suffix("")): json.loads(path.read_text()) for path in out.rglob("*.json")
            if path.name != "summary.json"}  # fmt: skip


def partials(out: Path) -> list[Path]:
    return list(out.rglob(f"*{PARTIAL_SUFFIX}"))


def engine_idle(service) -> bool:
    return service.metric("vllm:num_requests_running") == 0 and service.metric("vllm:num_requests_waiting") == 0


def joined_pdf(*documents: bytes) -> bytes:
    writer = PdfWriter()
    for document in documents:
        for page in PdfReader(io.BytesIO(document)).pages:
            writer.add_page(page)
    return written(writer)


# --- a folder of mixed inputs ---------------------------------------------------------------


@pytest.fixture(scope="module")
def mixed(service, tmp_path_factory):
    """PDFs of several pages, a multi-page TIFF, an image, a corrupt PDF, an encrypted one and one with a page the
    service refuses; OCR'd with --layout png."""
    corpus = tmp_path_factory.mktemp("mixed")
    write(corpus / "reports" / "three.pdf", raster_pdf(PDF_PAGES))
    write(corpus / "scans" / "two.tiff", tiff([Image.new("RGB", (160, 120), "white"), Image.new("RGB", (120, 160))]))
    write(corpus / "page.png", page_png(size=(200, 150)))
    write(corpus / "broken.pdf", raster_pdf(PDF_PAGES)[:300])
    write(corpus / "locked.pdf", encrypted_pdf("secret"))
    # Two good pages and a third the service refuses (its lossless render is over the test service's image
    # limit): sent as two requests, the refusal fails the document and cancels the other request.
    write(corpus / "reports" / "half-bad.pdf", joined_pdf(raster_pdf(PDF_PAGES[:2]), noise_pdf(700)))
    out = tmp_path_factory.mktemp("mixed-out")
    args = ["ocr", str(corpus), "-o", str(out), *CHEAP, "--pages-per-request", "2", "--layout", "png"]
    run = dsocr(service, *args, "--progress-interval", "0.5")
    return corpus, out, args, run


def test_a_mixed_folder_gives_markdown_and_json_per_document_and_fails_the_run(mixed):
    corpus, out, _, run = mixed
    assert run.returncode == 1, run.stderr  # three documents failed
    found = records(out)
    assert sorted(found) == ["page", "reports/three", "scans/two"]
    three = found["reports/three"]
    assert [page["index"] for page in three["pages"]] == [0, 1, 2]
    # Sent as two requests (--pages-per-request 2), merged as one response would be.
    assert [(p["dimensions"]["width"], p["dimensions"]["height"]) for p in three["pages"]] == [
        (360, 240),
        (240, 360),
        (300, 300),
    ]
    assert three["usage_info"]["pages_processed"] == 3
    assert three["usage"]["completion_tokens"] == sum(p["usage"]["completion_tokens"] for p in three["pages"]) <= 6
    assert all(page["finish_reason"] in ("length", "stop") and page["blocks"] is not None for page in three["pages"])
    source = corpus / "reports" / "three.pdf"
    assert three["source"]["bytes"] == source.stat().st_size and len(three["source"]["sha256"]) == 64
    assert (out / "reports" / "three.md").read_text().count(PAGE_SPLIT) == 2
    assert (out / "scans" / "two.md").read_text().count(PAGE_SPLIT) == 1
    assert len(found["page"]["pages"]) == 1
    assert not partials(out)


def test_failed_documents_are_listed_in_errors_jsonl_with_their_reason(mixed):
    _, out, _, run = mixed
    errors = {
        Path(entry["path"]).name: entry for entry in map(json.loads, (out / "errors.jsonl").read_text().splitlines())
    }
    assert sorted(errors) == ["broken.pdf", "half-bad.pdf", "locked.pdf"]
    assert (errors["broken.pdf"]["status_code"], errors["broken.pdf"]["code"]) == (400, "invalid_document")
    assert (errors["locked.pdf"]["status_code"], errors["locked.pdf"]["code"]) == (400, "encrypted_document")
    assert "encrypted" in errors["locked.pdf"]["message"]
    assert errors["half-bad.pdf"]["status_code"] == 400 and errors["half-bad.pdf"]["message"].startswith("page 2: ")
    assert not (out / "reports" / "half-bad.md").exists()  # none of its pages written
    summary = json.loads((out / "summary.json").read_text())
    counts = (summary["documents"], summary["documents_done"], summary["documents_failed"], summary["pages"])
    assert counts == (6, 3, 3, 6)
    assert summary["completion_tokens"] > 0 and summary["pages_per_s"] > 0
    # The summary table, for a person.
    assert re.search(r"^documents\s+6: 3 done, 0 already done, 3 failed", run.stdout, re.M), run.stdout
    assert re.search(r"^pages/s\s+\d", run.stdout, re.M)


def test_without_a_tty_progress_is_plain_periodic_lines(mixed):
    _, _, _, run = mixed
    lines = [line for line in run.stderr.splitlines() if line.startswith("[dsocr ocr]")]
    assert len(lines) >= 2, run.stderr
    assert "\r" not in run.stderr and "\x1b[" not in run.stderr  # no redrawn bar, no cursor codes
    assert re.fullmatch(
        r"\[dsocr ocr\] 6/6 pages, 6/6 documents, 3 failed, [0-9.]+ pages/s, ETA \S+, elapsed \S+", lines[-1]
    ), lines[-1]


def test_layout_pictures_have_the_size_of_their_pages(mixed):
    _, out, _, _ = mixed
    for name, record in records(out).items():
        for page in record["pages"]:
            picture = out / name / f"page-{page['index']}.png"
            with Image.open(picture) as image:
                assert image.size == (page["dimensions"]["width"], page["dimensions"]["height"]), picture


def test_a_rerun_skips_what_is_done_redoes_a_changed_file_and_retries_failures(service, mixed):
    corpus, out, args, _ = mixed
    before = {name: (out / f"{name}.json").stat().st_mtime_ns for name in ("reports/three", "scans/two")}
    write(corpus / "page.png", page_png("Changed", size=(180, 140)))
    args = [arg if arg != "png" else "pdf" for arg in args]  # and this time one layout PDF per document
    rerun = dsocr(service, *args, "--progress", "none")
    assert rerun.returncode == 1, rerun.stderr  # the failures again
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["documents_done"], summary["documents_already_done"], summary["documents_failed"]) == (1, 2, 3)
    assert summary["pages"] == 1
    assert {name: (out / f"{name}.json").stat().st_mtime_ns for name in before} == before
    page = records(out)["page"]
    assert page["pages"][0]["dimensions"]["width"] == 180
    assert page["source"]["sha256"] == hashlib.sha256((corpus / "page.png").read_bytes()).hexdigest()
    assert len((out / "errors.jsonl").read_text().splitlines()) == 3  # this run's failures, once each
    # The layout PDF replaced the PNG of the page's earlier version; its page is the page's size in points.
    assert not (out / "page" / "page-0.png").exists()
    pdf = pdfium.PdfDocument(out / "page_layouts.pdf")
    try:
        assert len(pdf) == 1
        width, height = pdf[0].get_size()
        assert (round(width), round(height)) == (180 * 72 // 144, 140 * 72 // 144)
    finally:
        pdf.close()


def heavy_pdf(pages: int) -> bytes:
    """Pages of 100x100 points, each a 1000x1000 noise JPEG of about 0.76 MB: heavy to send, light to render
    (200x200 pixels at the service's 144 DPI)."""
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 256, (1000, 1000, 3), dtype=np.uint8)) for _ in range(pages)]
    buffer = io.BytesIO()
    images[0].save(buffer, "PDF", save_all=True, append_images=images[1:], resolution=720, quality=85)
    return buffer.getvalue()


def test_a_pdf_sent_a_page_a_request_gives_what_one_request_gives_each_request_carrying_only_its_page(
    service, mixed, tmp_path
):
    corpus, mixed_out, _, _ = mixed  # reports/three.pdf went as two requests there (--pages-per-request 2)
    pdfs = tmp_path / "pdfs"
    write(pdfs / "three.pdf", (corpus / "reports" / "three.pdf").read_bytes())
    # Over the test service's DSOCR_MAX_DOCUMENT_BYTES (2 MB); each of its pages far under it.
    heavy = write(pdfs / "heavy.pdf", heavy_pdf(3))
    assert heavy.stat().st_size > 2_000_000
    outs = {per_request: tmp_path / f"out-{per_request}" for per_request in (1, 8)}
    runs = {
        per_request: dsocr(service, "ocr", str(pdfs), "-o", str(out), *CHEAP, "--pages-per-request", str(per_request),
                           "--progress", "none")
        for per_request, out in outs.items()
    }  # fmt: skip

    # A page a request, and the three pages in one request (the whole file), and in two: the same document.
    assert runs[1].returncode == 0, runs[1].stderr
    markdown = {(out / "three.md").read_text() for out in (*outs.values(), mixed_out / "reports")}
    assert len(markdown) == 1 and markdown.pop().count(PAGE_SPLIT) == 2
    pages = [[(page["index"], page["dimensions"], page["markdown"]) for page in records(out)["three"]["pages"]]
             for out in outs.values()]  # fmt: skip
    assert pages[0] == pages[1] and [index for index, _, _ in pages[0]] == [0, 1, 2]

    # Each request carried a one-page PDF, under the byte limit the whole file is over.
    assert [page["index"] for page in records(outs[1])["heavy"]["pages"]] == [0, 1, 2]
    assert runs[8].returncode == 1
    [refused] = [json.loads(line) for line in (outs[8] / "errors.jsonl").read_text().splitlines()]
    assert (Path(refused["path"]).name, refused["code"]) == ("heavy.pdf", "document_too_large"), refused


# --- killed part way, then run again -------------------------------------------------------------


def test_a_run_stopped_by_sigint_then_killed_then_rerun_does_each_document_once(service, tmp_path):
    corpus = tmp_path / "corpus"
    for n in range(4):
        write(corpus / f"page-{n}.png", page_png(f"Page {n}", size=(160 + 8 * n, 120)))
    out = tmp_path / "out"
    args = ["ocr", str(corpus), "-o", str(out), "--resolution-mode", "tiny", "--max-tokens", "24"]
    args += ["--concurrency", "1", "--progress", "none"]

    # SIGINT once the first document is written: the page in flight is cancelled in the engine.
    run = start_dsocr(service, *args)
    assert wait_until(lambda: len(records(out)) >= 1, 300), run.communicate(timeout=60)
    run.send_signal(signal.SIGINT)
    stdout, stderr = run.communicate(timeout=120)
    assert run.returncode == 130, stderr
    assert "(interrupted)" in stdout
    assert not partials(out)  # nothing half-written, not even hidden
    assert json.loads((out / "summary.json").read_text())["interrupted"]
    assert wait_until(lambda: engine_idle(service), 120), "pages kept running after the run stopped"
    after_sigint = records(out)

    # SIGKILL: no handler runs; whatever is on disk under a real name is whole.
    run = start_dsocr(service, *args)
    assert wait_until(lambda: len(records(out)) > len(after_sigint), 300), run.communicate(timeout=60)
    run.kill()
    run.communicate(timeout=60)
    assert run.returncode == -signal.SIGKILL
    after_kill = records(out)  # every record parses
    assert all(len(record["pages"]) == 1 for record in after_kill.values())
    assert wait_until(lambda: engine_idle(service), 120), "pages kept running after the run was killed"
    written = {name: os.stat(out / f"{name}.json").st_mtime_ns for name in after_kill}

    final = dsocr(service, *args)
    assert final.returncode == 0, final.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["documents_already_done"] == len(after_kill) < 4
    assert summary["documents_done"] == 4 - len(after_kill)
    assert sorted(records(out)) == [f"page-{n}" for n in range(4)]
    assert {name: os.stat(out / f"{name}.json").st_mtime_ns for name in written} == written  # not redone
    assert not partials(out)


# --- shards --------------------------------------------------------------------------------------


def test_two_shards_over_one_folder_are_disjoint_and_together_complete(service, tmp_path):
    corpus = tmp_path / "corpus"
    # Two real pages, one in each shard, and refused documents (no engine time) to spread over both.
    images = [name for name in (f"scan-{n}.png" for n in range(20)) if shard_of(name, 2) == 0][:1]
    images += [name for name in (f"scan-{n}.png" for n in range(20)) if shard_of(name, 2) == 1][:1]
    for name in images:
        write(corpus / name, page_png(size=(160, 120)))
    for n in range(6):
        write(corpus / "junk" / f"broken-{n}.pdf", b"%PDF-1.7 cut short")
    outs = [tmp_path / f"shard-{index}" for index in range(2)]
    runs = [
        start_dsocr(service, "ocr", str(corpus), "-o", str(out), *CHEAP, "--shard", f"{index}/2", "--progress", "none")
        for index, out in enumerate(outs)
    ]
    for run in runs:
        run.communicate(timeout=600)
    handled = []
    for out in outs:
        done = list(records(out))
        failed = [Path(json.loads(line)["path"]).relative_to(corpus).with_suffix("").as_posix()
                  for line in (out / "errors.jsonl").read_text().splitlines()]  # fmt: skip
        assert done, f"{out.name} did no real page"
        handled.append(set(done) | set(failed))
    assert not handled[0] & handled[1]
    everything = {path.relative_to(corpus).with_suffix("").as_posix() for path in corpus.rglob("*.*")}
    assert handled[0] | handled[1] == everything


# --- run-batch ------------------------------------------------------------------------------------


def data_url(data: bytes, media_type: str) -> str:
    return f"data:{media_type};base64,{base64.b64encode(data).decode()}"


def test_run_batch_answers_chat_and_ocr_lines_reports_bad_ones_and_resumes(service, tmp_path):
    image = {"type": "image_url", "image_url": {"url": data_url(page_png(size=(160, 120)), "image/png")}}
    chat = {"model": "deepseek-ocr", "max_tokens": 2, "resolution_mode": "tiny",
            "messages": [{"role": "user", "content": [image, {"type": "text", "text": "Free OCR."}]}]}  # fmt: skip
    pdf = {"type": "document_url", "document_url": data_url(raster_pdf(PDF_PAGES[:1]), "application/pdf")}
    locked = {"type": "document_url", "document_url": data_url(encrypted_pdf("secret"), "application/pdf")}
    lines = [
        {"custom_id": "chat-1", "method": "POST", "url": "/v1/chat/completions", "body": chat},
        {"custom_id": "ocr-1", "method": "POST", "url": "/v1/ocr",
         "body": {"model": None, "document": pdf, "max_tokens": 2, "resolution_mode": "tiny"}},
        {"custom_id": "ocr-locked", "method": "POST", "url": "/v1/ocr", "body": {"model": None, "document": locked}},
    ]  # fmt: skip
    requests = tmp_path / "requests.jsonl"
    requests.write_text("\n".join([*map(json.dumps, lines), '{"custom_id": "cut', json.dumps(lines[0])]) + "\n")
    results = tmp_path / "results.jsonl"

    run = dsocr(service, "run-batch", "-i", str(requests), "-o", str(results), "--progress-interval", "0.5")
    assert run.returncode == 1, run.stderr  # a request refused, two lines malformed
    found = [json.loads(line) for line in results.read_text().splitlines()]
    assert len(found) == 5 and all(result["id"].startswith("batch_req_") for result in found)
    by_id = {result["custom_id"]: result for result in found if result["response"]}
    assert by_id["chat-1"]["response"]["status_code"] == 200 and by_id["chat-1"]["error"] is None
    assert by_id["chat-1"]["response"]["body"]["object"] == "chat.completion"
    ocr = by_id["ocr-1"]["response"]
    assert (ocr["status_code"], [page["index"] for page in ocr["body"]["pages"]]) == (200, [0])
    assert by_id["ocr-locked"]["response"]["status_code"] == 400
    assert by_id["ocr-locked"]["response"]["body"]["error"]["code"] == "encrypted_document"
    errors = sorted(((result["custom_id"], result["error"]["code"]) for result in found if result["error"]), key=str)
    assert errors == [("chat-1", "duplicate_custom_id"), (None, "invalid_json")]
    assert any(line.startswith("[dsocr run-batch]") for line in run.stderr.splitlines())

    # A rerun keeps the two answers, and sends again only what failed: no new engine work.
    generated = metric_when_still(service, "vllm:generation_tokens_total")
    rerun = dsocr(service, "run-batch", "-i", str(requests), "-o", str(results), "--progress", "none")
    assert rerun.returncode == 1
    again = [json.loads(line) for line in results.read_text().splitlines()]
    assert len(again) == 5
    kept = {r["custom_id"]: r for r in again if r["custom_id"] in ("chat-1", "ocr-1") and r["response"]}
    assert kept == {"chat-1": by_id["chat-1"], "ocr-1": by_id["ocr-1"]}  # the very lines, ids included
    assert re.search(r"^requests\s+5: 0 done, 2 already done, 3 failed", rerun.stdout, re.M), rerun.stdout
    time.sleep(2)  # longer than the engine metrics lag (dsocr.triton.metrics)
    assert service.metric("vllm:generation_tokens_total") == generated
