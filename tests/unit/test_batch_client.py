"""The batch commands' HTTP client: what it retries and how long it waits (httpx's MockTransport stands in for
the transport: refusals, lost connections and Retry-After dates on demand)."""

from __future__ import annotations

import asyncio
import email.utils

import httpx
import pytest

from dsocr.batch.client import ApiClient, ApiError, RetryPolicy, retry_after_s


class Script:
    """Answers in order, recording each request; an exception is raised as the transport's."""

    def __init__(self, *answers: httpx.Response | Exception) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


def client(script: Script, sleeps: list[float], **kwargs) -> ApiClient:
    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    return ApiClient("http://service", transport=httpx.MockTransport(script), sleep=sleep, **kwargs)


def post(api: ApiClient, body: dict | None = None):
    async def go():
        async with api:
            return await api.post("/v1/ocr", body or {"model": None})

    return asyncio.run(go())


def error(status: int, code: str, headers: dict | None = None) -> httpx.Response:
    return httpx.Response(
        status, json={"error": {"message": code, "type": "x", "param": None, "code": code}}, headers=headers
    )


def test_429_and_503_are_retried_after_retry_after_then_the_answer_returns():
    script = Script(
        error(429, "rate_limit_exceeded", {"Retry-After": "1"}),
        error(503, "service_unavailable", {"Retry-After": "2.5"}),
        httpx.Response(200, json={"pages": []}),
    )
    sleeps: list[float] = []
    response = post(client(script, sleeps))
    assert (response.status_code, response.body, response.attempts) == (200, {"pages": []}, 3)
    assert sleeps == [1.0, 2.5]
    assert len(script.requests) == 3 and script.requests[0].content == script.requests[2].content


def test_without_retry_after_the_backoff_grows_and_is_capped():
    policy = RetryPolicy(attempts=6, base_s=1.0, cap_s=4.0)
    script = Script(*[httpx.ConnectError("refused")] * 5, httpx.Response(200, json={}))
    sleeps: list[float] = []
    assert post(client(script, sleeps, retry=policy)).status_code == 200
    steps = [1.0, 2.0, 4.0, 4.0, 4.0]
    assert len(sleeps) == 5
    # Half of each step fixed, half random.
    assert all(step / 2 <= slept <= step for slept, step in zip(sleeps, steps, strict=True))


def test_a_refusal_that_outlasts_the_retries_is_returned_as_it_came():
    script = Script(*[error(503, "service_unavailable")] * 3)
    sleeps: list[float] = []
    response = post(client(script, sleeps, retry=RetryPolicy(attempts=3, base_s=0.1)))
    assert response.status_code == 503 and response.attempts == 3 and len(sleeps) == 2
    assert ApiError.from_response(response).record() == {
        "status_code": 503,
        "code": "service_unavailable",
        "message": "service_unavailable",
    }


def test_connection_errors_that_outlast_the_retries_raise():
    script = Script(*[httpx.ReadError("reset")] * 2)
    with pytest.raises(ApiError) as raised:
        post(client(script, [], retry=RetryPolicy(attempts=2, base_s=0.01)))
    assert raised.value.code == "connection_error" and raised.value.status_code is None


@pytest.mark.parametrize("status", [400, 401, 404, 413, 500])
def test_a_final_answer_is_not_retried(status):
    script = Script(error(status, "no"))
    sleeps: list[float] = []
    assert post(client(script, sleeps)).status_code == status
    assert sleeps == [] and len(script.requests) == 1


def test_the_api_key_is_a_bearer_header():
    script = Script(httpx.Response(200, json={}))
    post(client(script, [], api_key="secret-key"))
    assert script.requests[0].headers["authorization"] == "Bearer secret-key"
    script = Script(httpx.Response(200, json={}))
    post(client(script, []))
    assert "authorization" not in script.requests[0].headers


def test_retry_after_is_seconds_or_an_http_date_capped_and_never_negative():
    now = 1_700_000_000.0
    assert retry_after_s("3", now) == 3.0
    assert retry_after_s(email.utils.formatdate(now + 7, usegmt=True), now) == pytest.approx(7.0)
    assert retry_after_s(email.utils.formatdate(now - 60, usegmt=True), now) == 0.0
    assert retry_after_s("86400", now) == 300.0
    assert retry_after_s("soon", now) is None and retry_after_s(None, now) is None


def test_a_non_json_answer_is_kept_as_text():
    script = Script(httpx.Response(502, text="<html>bad gateway</html>"), httpx.Response(500, text="oops"))
    response = post(client(script, []))
    assert (response.status_code, response.body) == (500, "oops")
    assert ApiError.from_response(response).message == "oops"
