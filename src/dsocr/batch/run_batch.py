"""`dsocr run-batch`: the batch-file format of OpenAI's Batch API, `vllm run-batch` and Mistral's batch OCR.

Input, one request a line:

    {"custom_id": "a-1", "method": "POST", "url": "/v1/chat/completions", "body": {...}}
    {"custom_id": "a-2", "method": "POST", "url": "/v1/ocr", "body": {...}}

Output, one result a line, in the order they finish:

    {"id": "batch_req_...", "custom_id": "a-1", "response": {"status_code": 200, "request_id": "...",
     "body": {...}}, "error": null}

An answer of the service, success or error, is a `response` with its status and body (as OpenAI
writes a 400); a line that cannot be sent (not JSON, a missing or repeated custom_id, a method or
URL other than the two, a streamed request) or a request that got no answer after every retry is
an `error` {"code", "message"} with no response. Requests are retried as every batch request is
(client.py), and run `concurrency` at a time.

Resume: a rerun with the same output keeps the lines of requests that succeeded (2xx) and sends
every other request again; the output is first rewritten atomically with only the kept lines, so
an output cut by a kill (a last partial line) or holding failures is made clean before lines are
added.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from dsocr.batch.client import ApiClient, ApiError
from dsocr.batch.outputs import atomic_write
from dsocr.batch.progress import Progress

ENDPOINTS = ("/v1/chat/completions", "/v1/ocr")


@dataclass(frozen=True)
class BatchRequest:
    line: int  # 1-based, in the input file
    custom_id: str
    url: str
    body: dict[str, Any]


class InvalidLine(ValueError):
    def __init__(self, line: int, code: str, message: str, custom_id: str | None = None) -> None:
        super().__init__(f"line {line}: {message}")
        self.line, self.code, self.custom_id = line, code, custom_id

    def result(self) -> dict[str, Any]:
        return result_line(self.custom_id, error={"code": self.code, "message": str(self)})


def parse_line(number: int, text: str) -> BatchRequest:
    """One input line, checked as OpenAI's Batch API checks it; raises InvalidLine."""
    try:
        entry = json.loads(text)
    except ValueError as exc:
        raise InvalidLine(number, "invalid_json", f"not JSON: {exc}") from None
    if not isinstance(entry, dict):
        raise InvalidLine(number, "invalid_json", "a request line is a JSON object")
    custom_id = entry.get("custom_id")
    if not isinstance(custom_id, str) or not custom_id:
        raise InvalidLine(number, "missing_custom_id", "custom_id must be a non-empty string")
    unknown = set(entry) - {"custom_id", "method", "url", "body"}
    if unknown:
        raise InvalidLine(number, "invalid_request", f"unknown fields {sorted(unknown)}", custom_id)
    if entry.get("method") != "POST":
        raise InvalidLine(number, "invalid_method", f"method must be POST, not {entry.get('method')!r}", custom_id)
    url = entry.get("url")
    if url not in ENDPOINTS:
        raise InvalidLine(number, "invalid_url", f"url must be one of {list(ENDPOINTS)}, not {url!r}", custom_id)
    body = entry.get("body")
    if not isinstance(body, dict):
        raise InvalidLine(number, "invalid_body", "body must be a JSON object", custom_id)
    if body.get("stream"):
        raise InvalidLine(number, "unsupported_parameter", "stream is not supported in a batch", custom_id)
    return BatchRequest(number, custom_id, url, body)


def result_line(
    custom_id: str | None, response: dict[str, Any] | None = None, error: dict[str, Any] | None = None
) -> dict[str, Any]:
    return {"id": f"batch_req_{uuid.uuid4().hex}", "custom_id": custom_id, "response": response, "error": error}


def succeeded(result: dict[str, Any]) -> bool:
    response = result.get("response")
    return isinstance(response, dict) and 200 <= int(response.get("status_code") or 0) < 300


def kept_results(output: Path) -> tuple[list[str], set[str]]:
    """The lines of an earlier run's output worth keeping (succeeded), and their custom_ids."""
    if not output.exists():
        return [], set()
    lines, done = [], set()
    for text in output.read_text(encoding="utf-8").splitlines():
        try:
            result = json.loads(text)
        except ValueError:
            continue  # a line cut by a kill
        if isinstance(result, dict) and succeeded(result) and isinstance(result.get("custom_id"), str):
            lines.append(text)
            done.add(result["custom_id"])
    return lines, done


@dataclass
class Plan:
    requests: list[BatchRequest]
    invalid: list[InvalidLine]
    already_done: int


def plan(lines: list[str], done: set[str]) -> Plan:
    """What to send: the valid lines not done yet, each custom_id once; the rest are results already."""
    requests: list[BatchRequest] = []
    invalid: list[InvalidLine] = []
    seen: set[str] = set()
    already_done = 0
    for number, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        try:
            request = parse_line(number, text)
        except InvalidLine as exc:
            invalid.append(exc)
            continue
        if request.custom_id in seen:
            invalid.append(
                InvalidLine(number, "duplicate_custom_id", "custom_id repeats an earlier line's", request.custom_id)
            )
            continue
        seen.add(request.custom_id)
        if request.custom_id in done:
            already_done += 1
        else:
            requests.append(request)
    return Plan(requests, invalid, already_done)


class BatchRun:
    def __init__(self, input_path: Path, output: Path, client: ApiClient, progress: Progress, concurrency: int) -> None:
        self.input_path, self.output = input_path, output
        self.client, self.progress, self.tally = client, progress, progress.tally
        self.concurrency = concurrency

    async def run(self) -> None:
        kept, done = kept_results(self.output)
        atomic_write(self.output, "".join(f"{line}\n" for line in kept).encode())
        work = plan(self.input_path.read_text(encoding="utf-8").splitlines(), done)
        self.tally.items = len(work.requests) + len(work.invalid) + work.already_done
        self.tally.units = self.tally.items - work.already_done
        self.tally.skipped = work.already_done
        with open(self.output, "a", encoding="utf-8") as out:
            for invalid in work.invalid:
                self._write(out, invalid.result(), ok=False)
            await self._send_all(work.requests, out)

    async def _send_all(self, requests: list[BatchRequest], out: TextIO) -> None:
        queue: asyncio.Queue[BatchRequest] = asyncio.Queue()
        for request in requests:
            queue.put_nowait(request)
        workers = [asyncio.create_task(self._worker(queue, out)) for _ in range(min(self.concurrency, len(requests)))]
        try:
            await asyncio.gather(*workers)
        except asyncio.CancelledError:
            # Cancelled requests close their connections: the service stops their generations.
            self.tally.interrupted = True
            for worker in workers:
                worker.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()

    async def _worker(self, queue: asyncio.Queue[BatchRequest], out: TextIO) -> None:
        while not queue.empty():
            request = queue.get_nowait()
            result = await self._send(request)
            self._write(out, result, ok=succeeded(result))

    async def _send(self, request: BatchRequest) -> dict[str, Any]:
        try:
            answer = await self.client.post(request.url, request.body)
        except ApiError as error:
            return result_line(request.custom_id, error={"code": error.code, "message": error.message})
        body = answer.body if isinstance(answer.body, dict) else {"text": answer.body}
        self.tally.add_usage(body.get("usage") if answer.status_code == 200 else None)
        response = {"status_code": answer.status_code, "request_id": answer.request_id, "body": body}
        return result_line(request.custom_id, response=response)

    def _write(self, out: TextIO, result: dict[str, Any], *, ok: bool) -> None:
        # A line at a time, flushed: what a kill leaves is whole lines and at most one cut one.
        out.write(json.dumps(result, ensure_ascii=False) + "\n")
        out.flush()
        self.tally.units_done += 1
        if ok:
            self.tally.items_done += 1
        else:
            self.tally.failed += 1
        self.progress.changed()
