"""`dsocr run-batch`'s file format: request lines checked as OpenAI's Batch API checks them, results shaped as
its output, and what a rerun keeps from an earlier output."""

from __future__ import annotations

import json

import pytest

from dsocr.batch.run_batch import InvalidLine, kept_results, parse_line, plan, result_line, succeeded


def line(**fields) -> str:
    entry = {"custom_id": "r1", "method": "POST", "url": "/v1/ocr", "body": {"model": None}} | fields
    return json.dumps({key: value for key, value in entry.items() if value is not ...})


def test_a_chat_and_an_ocr_line_parse():
    chat = parse_line(1, line(url="/v1/chat/completions", body={"messages": []}))
    ocr = parse_line(2, line(custom_id="r2"))
    assert (chat.custom_id, chat.url, chat.body, chat.line) == ("r1", "/v1/chat/completions", {"messages": []}, 1)
    assert (ocr.custom_id, ocr.url) == ("r2", "/v1/ocr")


@pytest.mark.parametrize(
    "text, code, custom_id",
    [
        ("{not json", "invalid_json", None),
        ("[1, 2]", "invalid_json", None),
        (line(custom_id=...), "missing_custom_id", None),
        (line(custom_id=""), "missing_custom_id", None),
        (line(method="GET"), "invalid_method", "r1"),
        (line(url="/v1/embeddings"), "invalid_url", "r1"),
        (line(body="text"), "invalid_body", "r1"),
        (line(body={"stream": True}), "unsupported_parameter", "r1"),
        (line(extra=1), "invalid_request", "r1"),
    ],
)
def test_a_malformed_line_is_an_error_result_naming_its_line(text, code, custom_id):
    with pytest.raises(InvalidLine) as raised:
        parse_line(7, text)
    result = raised.value.result()
    assert result["custom_id"] == custom_id and result["response"] is None
    assert result["error"]["code"] == code and result["error"]["message"].startswith("line 7: ")
    assert result["id"].startswith("batch_req_")


def test_the_plan_sends_each_custom_id_once_and_skips_those_done():
    lines = [line(custom_id="a"), "", line(custom_id="b"), line(custom_id="a"), "oops", line(custom_id="c")]
    work = plan(lines, done={"c"})
    assert [request.custom_id for request in work.requests] == ["a", "b"]
    assert [(invalid.line, invalid.code) for invalid in work.invalid] == [
        (4, "duplicate_custom_id"),
        (5, "invalid_json"),
    ]
    assert work.already_done == 1


def test_a_rerun_keeps_the_successes_and_drops_failures_and_a_cut_line(tmp_path):
    output = tmp_path / "results.jsonl"
    ok = result_line("a", response={"status_code": 200, "request_id": None, "body": {}})
    refused = result_line("b", response={"status_code": 400, "request_id": None, "body": {"error": {}}})
    lost = result_line("c", error={"code": "connection_error", "message": "no answer"})
    output.write_text("\n".join(json.dumps(r) for r in (ok, refused, lost)) + '\n{"id": "batch_req_1", "cus')
    lines, done = kept_results(output)
    assert done == {"a"} and [json.loads(text) for text in lines] == [ok]
    assert succeeded(ok) and not succeeded(refused) and not succeeded(lost)
    assert kept_results(tmp_path / "missing.jsonl") == ([], set())
