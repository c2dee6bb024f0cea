"""The `dsocr` command: serve the model, or OCR a corpus through a running service.

    dsocr serve [flags]                      Triton + the OpenAI frontend (python -m dsocr.serve)
    dsocr ocr INPUT... -o OUT_DIR [flags]    documents through /v1/ocr: markdown, JSON, figures, layouts
    dsocr run-batch -i IN.jsonl -o OUT.jsonl a batch file of /v1/chat/completions and /v1/ocr requests

`ocr` and `run-batch` are clients of the service (`--url`, the API key from DSOCR_API_KEY), or
start the local stack for the run (`--serve`). Exit status: 0 when everything succeeded, 1 when
any document or request failed (listed in the outputs), 2 for a usage error, 130 (143) when
stopped by Ctrl-C (SIGTERM).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

from dsocr import envs
from dsocr.batch.client import ApiClient, RetryPolicy
from dsocr.batch.documents import RequestOptions
from dsocr.batch.inputs import InputError, Shard, discover, select_shard
from dsocr.batch.ocr_run import LAYOUTS, OcrRun, OcrSettings
from dsocr.batch.outputs import ERRORS_FILE, write_summary
from dsocr.batch.progress import MODES, Progress, Tally, summary_table
from dsocr.batch.run_batch import BatchRun
from dsocr.families import MODES as RESOLUTION_MODES

DEFAULT_URL = f"http://127.0.0.1:{envs.DECLARED['DSOCR_PORT'].default}"
# Pages in flight for `ocr`: the frontend's DSOCR_MAX_PAGES_IN_FLIGHT default, what keeps its engine
# slots full; requests in flight for `run-batch`, each of which may be a document of many pages.
OCR_CONCURRENCY = int(envs.DECLARED["DSOCR_MAX_PAGES_IN_FLIGHT"].default or 64)
BATCH_CONCURRENCY = 16
EXIT_FAILED, EXIT_USAGE = 1, 2


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["serve"]:
        from dsocr import serve  # its own flags and --help

        return serve.main(argv[1:])
    args = parser().parse_args(argv)
    try:
        return int(args.command(args))
    except InputError as exc:
        print(f"dsocr {args.name}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:  # before the run could handle it (--serve starting the stack): nothing was sent
        print(f"\ndsocr {args.name}: stopped", file=sys.stderr)
        return 128 + signal.SIGINT


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="dsocr", description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = top.add_subparsers(title="commands", metavar="COMMAND", required=True)
    commands.add_parser(
        "serve",
        add_help=False,
        help="serve the model: tritonserver + the OpenAI-compatible frontend (dsocr serve --help for its flags)",
    )
    _ocr_parser(commands)
    _run_batch_parser(commands)
    return top


def _client_flags(concurrency: int, concurrency_help: str) -> argparse.ArgumentParser:
    flags = argparse.ArgumentParser(add_help=False)
    service = flags.add_argument_group("the service")
    where = service.add_mutually_exclusive_group()
    where.add_argument("--url", default=DEFAULT_URL, help="a running service's frontend (default: %(default)s)")
    where.add_argument(
        "--serve", action="store_true", help="start the local stack (dsocr serve) for this run and stop it after"
    )
    service.add_argument(
        "--api-key", default=envs.get("DSOCR_API_KEY"), help="Bearer key (default: $DSOCR_API_KEY; a flag shows in ps)"
    )
    service.add_argument("--concurrency", type=_positive, default=concurrency, help=concurrency_help)
    service.add_argument(
        "--retries", type=_non_negative, default=RetryPolicy.attempts - 1, help="retries of a request refused "
        "with 429/502/503/504 (after Retry-After) or whose connection failed (default: %(default)s)",
    )  # fmt: skip
    service.add_argument("--timeout", type=float, default=1800.0, help="seconds one request may take")
    shown = flags.add_argument_group("progress")
    shown.add_argument(
        "--progress", choices=MODES, default="auto", help="a bar on a terminal, else a line every interval (auto)"
    )
    shown.add_argument("--progress-interval", type=float, default=10.0, help="seconds between lines (default: 10)")
    return flags


def _ocr_parser(commands: Any) -> None:
    flags = _client_flags(OCR_CONCURRENCY, "pages in flight, over all documents (default: %(default)s)")
    ocr = commands.add_parser(
        "ocr",
        parents=[flags],
        help="OCR documents (PDFs, TIFFs, images) into OUT_DIR: markdown, JSON, figures, layout pictures",
        description=(
            "OCR documents through /v1/ocr. INPUT: a file, a folder (recursive), a glob, a text file listing paths "
            "(.txt, .lst, .list), or - for paths on stdin. Writes OUT_DIR/NAME.md, NAME.json, NAME/img-N.jpeg "
            "(and layouts), errors.jsonl and summary.json; a rerun skips what is done (by content hash) and retries "
            "what failed."
        ),
    )
    ocr.set_defaults(command=run_ocr, name="ocr")
    ocr.add_argument("inputs", nargs="+", metavar="INPUT")
    ocr.add_argument("-o", "--output-dir", type=Path, required=True, metavar="OUT_DIR")
    request = ocr.add_argument_group("the /v1/ocr request (default: the service's)")
    request.add_argument("--model", help="a model name the service answers to (default: the one it serves)")
    request.add_argument("--prompt", help="the instruction after each page (default: DeepSeek's document prompt)")
    request.add_argument("--resolution-mode", choices=RESOLUTION_MODES)
    request.add_argument("--max-crops", type=_positive, help="Gundam's tile limit")
    request.add_argument("--dpi", type=_positive, help="PDF pages' resolution (the service's default: 144)")
    request.add_argument("--pages", help="pages of every document, 0-based: '0-7', '0,2-4'")
    request.add_argument("--max-tokens", type=_positive, help="output tokens per page")
    run = ocr.add_argument_group("the run")
    run.add_argument(
        "--layout",
        nargs="?",
        const="pdf",
        choices=LAYOUTS,
        help="draw the blocks on each page: NAME_layouts.pdf (pdf, the default) or NAME/page-N.png (png)",
    )
    run.add_argument("--pages-per-request", type=_positive, default=4, help="pages in one request (default: 4)")
    run.add_argument("--documents-in-flight", type=_positive, help="documents sending at once (default: concurrency)")
    run.add_argument(
        "--shard", type=_shard, metavar="I/N", help="only the documents of shard I of N (a hash of the name)"
    )


def _run_batch_parser(commands: Any) -> None:
    flags = _client_flags(BATCH_CONCURRENCY, "requests in flight (default: %(default)s)")
    batch = commands.add_parser(
        "run-batch",
        parents=[flags],
        help="run a batch file (OpenAI / vLLM / Mistral format) of /v1/chat/completions and /v1/ocr requests",
        description=(
            "Run a batch file: one request a line ({custom_id, method, url, body}), one result a line "
            "({id, custom_id, response {status_code, request_id, body}, error}). A rerun keeps the results that "
            "succeeded and sends the rest again."
        ),
    )
    batch.set_defaults(command=run_batch, name="run-batch")
    batch.add_argument("-i", "--input", type=Path, required=True, help="requests, JSON lines")
    batch.add_argument("-o", "--output", type=Path, required=True, help="results, JSON lines")


# --- the commands --------------------------------------------------------------------


def run_ocr(args: argparse.Namespace) -> int:
    documents = select_shard(discover(args.inputs, sys.stdin), args.shard)
    options = RequestOptions(
        model=args.model,
        prompt=args.prompt,
        resolution_mode=args.resolution_mode,
        max_crops=args.max_crops,
        dpi=args.dpi,
        max_tokens=args.max_tokens,
        pages=args.pages,
    )
    settings = OcrSettings(
        out_dir=args.output_dir,
        options=options,
        concurrency=args.concurrency,
        pages_per_request=args.pages_per_request,
        documents_in_flight=args.documents_in_flight,
        layout=args.layout,
    )
    tally = Tally("documents", "pages")
    progress = Progress(tally, args.progress, interval_s=args.progress_interval, prefix="dsocr ocr")

    async def work(client: ApiClient) -> None:
        await OcrRun(documents, client, settings, progress).run()

    with _service(args, args.output_dir / "serve.log") as url:
        stopped_by = _run_client(args, url, progress, work)
    write_summary(args.output_dir, tally.summary())
    print(summary_table(tally, str(args.output_dir / ERRORS_FILE)))
    return _exit_status(tally, stopped_by)


def run_batch(args: argparse.Namespace) -> int:
    if not args.input.is_file():
        raise InputError(f"{args.input}: no such file")
    tally = Tally("requests", "requests")
    progress = Progress(tally, args.progress, interval_s=args.progress_interval, prefix="dsocr run-batch")

    async def work(client: ApiClient) -> None:
        await BatchRun(args.input, args.output, client, progress, args.concurrency).run()

    with _service(args, args.output.with_name(args.output.name + ".serve.log")) as url:
        stopped_by = _run_client(args, url, progress, work)
    print(summary_table(tally))
    return _exit_status(tally, stopped_by)


@contextlib.contextmanager
def _service(args: argparse.Namespace, log_path: Path) -> Iterator[str]:
    if not args.serve:
        yield args.url
        return
    from dsocr.batch.local_stack import local_stack

    print(f"[dsocr] starting the local stack (log: {log_path})", file=sys.stderr, flush=True)
    with local_stack(log_path) as url:
        yield url


def _run_client(
    args: argparse.Namespace, url: str, progress: Progress, work: Callable[[ApiClient], Awaitable[None]]
) -> int | None:
    """Run `work` with a client of `url`, showing progress; the signal that stopped it, if one did."""

    async def session() -> None:
        progress.tally.started = time.monotonic()  # the run's clock starts with the service there (--serve)
        retry = RetryPolicy(attempts=args.retries + 1)
        client = ApiClient(url, api_key=args.api_key, timeout_s=args.timeout, connections=args.concurrency, retry=retry)
        async with client, progress:
            await work(client)

    return run_until_stopped(session)


def run_until_stopped(session: Callable[[], Awaitable[None]]) -> int | None:
    """Run `session`; the first SIGINT or SIGTERM cancels it (it cleans up and returns), a second one
    kills as the default handlers do. Returns the signal that stopped it, or None."""
    stopped_by: list[int] = []

    async def guarded() -> None:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None

        def stop(signum: int) -> None:
            print(f"\n[dsocr] {signal.Signals(signum).name}: stopping", file=sys.stderr, flush=True)
            stopped_by.append(signum)
            for handled in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(handled)
            task.cancel()

        for handled in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(handled, stop, handled)
        with contextlib.suppress(asyncio.CancelledError):  # a stop before the run could handle it
            await session()

    asyncio.run(guarded())
    return stopped_by[0] if stopped_by else None


def _exit_status(tally: Tally, stopped_by: int | None) -> int:
    if stopped_by is not None:
        return 128 + stopped_by
    return EXIT_FAILED if tally.failed else 0


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {value}")
    return value


def _shard(text: str) -> Shard:
    try:
        return Shard.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


if __name__ == "__main__":
    sys.exit(main())
