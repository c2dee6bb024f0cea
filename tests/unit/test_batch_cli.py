"""The `dsocr` command without a server: its subcommands and help, usage errors, how a signal stops a run,
its renderer's workers dying with it, the progress it prints without a terminal, the layout pictures it draws."""

from __future__ import annotations

import asyncio
import importlib.metadata
import io
import os
import signal
import subprocess
import sys
from pathlib import Path

import pypdfium2 as pdfium
import pytest
from PIL import Image

from dsocr import cli
from dsocr.batch import layout
from dsocr.batch.progress import Progress, Tally, summary_table
from tests.helpers import wait_until


def dsocr(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "dsocr.cli", *args], capture_output=True, text=True, timeout=60)


def test_the_console_script_is_declared():
    (script,) = importlib.metadata.entry_points(group="console_scripts", name="dsocr")
    assert script.value == "dsocr.cli:main"


def test_help_names_each_command_and_what_it_does():
    top = dsocr("--help")
    assert top.returncode == 0
    for command in ("serve", "ocr", "run-batch"):
        assert command in top.stdout
    assert "INPUT" in dsocr("ocr", "--help").stdout and "--shard I/N" in dsocr("ocr", "--help").stdout
    assert "custom_id" in dsocr("run-batch", "--help").stdout
    serve = dsocr("serve", "--help")  # the serve command's own flags
    assert serve.returncode == 0 and "--no-frontend" in serve.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["ocr", "nowhere/missing.pdf", "-o", "out"], "nowhere/missing.pdf: no such file"),
        (["ocr", "x.pdf", "-o", "out", "--shard", "4/4"], "a shard is I/N"),
        (["ocr", "x.pdf", "-o", "out", "--url", "http://a", "--serve"], "not allowed with argument"),
        (["run-batch", "-i", "missing.jsonl", "-o", "out.jsonl"], "missing.jsonl: no such file"),
    ],
)
def test_usage_errors_exit_2_naming_the_problem(tmp_path, args, message):
    run = subprocess.run(
        [sys.executable, "-m", "dsocr.cli", *args], capture_output=True, text=True, cwd=tmp_path, timeout=60
    )
    assert run.returncode == 2 and message in run.stderr, run.stderr


def test_a_signal_cancels_the_session_which_cleans_up_and_the_status_says_which():
    cleaned = []

    async def session():
        try:
            os.kill(os.getpid(), signal.SIGINT)
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cleaned.append(True)
            raise

    assert cli.run_until_stopped(session) == signal.SIGINT
    assert cleaned == [True]
    assert cli._exit_status(Tally(failed=1), signal.SIGINT) == 130
    assert cli._exit_status(Tally(failed=1), None) == 1
    assert cli._exit_status(Tally(), None) == 0


# A client whose renderer's worker is up (it opened a PDF): it prints the worker's pid, then waits to be killed.
CLIENT = """
import asyncio, io, multiprocessing
from PIL import Image
from dsocr.batch.renderer import client_renderer
from dsocr.documents.limits import DocumentLimits

async def main():
    pdf = io.BytesIO()
    Image.new("RGB", (20, 20)).save(pdf, "PDF")
    async with client_renderer(1, DocumentLimits()) as renderer, await renderer.open(pdf.getvalue()):
        print(*(child.pid for child in multiprocessing.active_children()), flush=True)
        await asyncio.sleep(60)

asyncio.run(main())
"""


def running(pid: int) -> bool:
    """Neither gone nor a zombie (one nobody reaps, in a container whose first process does not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_a_killed_clients_renderer_workers_die_with_it():
    with subprocess.Popen([sys.executable, "-c", CLIENT], stdout=subprocess.PIPE, text=True) as client:
        try:
            workers = [int(pid) for pid in client.stdout.readline().split()]
        finally:
            client.kill()
            client.wait(timeout=60)  # not for its stdout's end: a surviving worker would hold it open
    assert workers and client.returncode == -signal.SIGKILL
    assert wait_until(lambda: not any(map(running, workers)), 30), "a worker outlived the killed client"


# --- progress and summary ------------------------------------------------------------------


def test_without_a_terminal_progress_is_a_plain_line_per_interval():
    stream = io.StringIO()  # not a TTY
    tally = Tally(items=4, units=10)

    async def run():
        async with Progress(tally, interval_s=0.05, stream=stream, prefix="dsocr ocr") as progress:
            for _ in range(5):
                tally.units_done += 2
                progress.changed()  # events draw nothing: lines come with the interval
            await asyncio.sleep(0.18)
            tally.items_done, tally.failed = 3, 1

    asyncio.run(run())
    lines = stream.getvalue().splitlines()
    assert 3 <= len(lines) <= 6, lines
    assert all(line.startswith("[dsocr ocr] 10/10 pages, ") for line in lines)
    assert lines[-1].startswith("[dsocr ocr] 10/10 pages, 4/4 documents, 1 failed, ")
    assert "\r" not in stream.getvalue()


def test_the_summary_table_has_documents_pages_failures_rate_and_tokens():
    tally = Tally(items=5, items_done=2, skipped=2, failed=1, units=7, units_done=7, prompt_tokens=90)
    table = summary_table(tally, "out/errors.jsonl")
    assert "documents  5: 2 done, 2 already done, 1 failed (see out/errors.jsonl)" in table
    for row in ("pages ", "pages/s ", "tokens ", "time "):
        assert row in table
    assert "90 prompt + 0 completion" in table


# --- layout pictures ------------------------------------------------------------------------


BLOCKS = [
    {"type": "title", "top_left_x": 10, "top_left_y": 30, "bottom_right_x": 190, "bottom_right_y": 60},
    {"type": "table", "top_left_x": 20, "top_left_y": 80, "bottom_right_x": 180, "bottom_right_y": 140},
]


def test_blocks_are_drawn_on_a_copy_of_the_page_the_same_size():
    page = Image.new("RGB", (200, 150), "white")
    drawn = layout.draw_blocks(page, BLOCKS)
    assert drawn.size == page.size and drawn.mode == "RGB"
    assert page.getpixel((10, 45)) == (255, 255, 255)  # the original untouched
    assert drawn.getpixel((10, 45)) == layout.TYPE_COLOURS["title"]  # the title's left edge
    assert drawn.getpixel((100, 110)) != (255, 255, 255)  # the table lightly filled
    assert drawn.getpixel((195, 5)) == (255, 255, 255)  # outside every block


def test_a_layouts_pdf_has_a_page_per_picture_at_the_pages_size_in_points(tmp_path):
    path = tmp_path / "x_layouts.pdf"
    for size in [(288, 144), (144, 432)]:
        layout.append_pdf_page(path, layout.draw_blocks(Image.new("RGB", size, "white"), BLOCKS), dpi=144)
    pdf = pdfium.PdfDocument(path)
    try:
        assert [tuple(round(side) for side in pdf[index].get_size()) for index in range(len(pdf))] == [
            (144, 72),
            (72, 216),
        ]
    finally:
        pdf.close()
