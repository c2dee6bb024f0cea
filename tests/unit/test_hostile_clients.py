"""Slow and hostile clients against the real frontend, served as `python -m openai_frontend` serves it
(its uvicorn options, openai_frontend/server.py), over a scripted engine: the transport is what is tested.

Each hostile client runs while a normal client is served within NORMAL_CLIENT_BOUND_S; the frontend
process's memory (RSS) stays within a bound; each deadline fires, frees what the client held
(concurrency slot, generation), and closes its connection:

- clients that stop reading their stream, or read it a trickle at a time: DSOCR_WRITE_TIMEOUT_S;
- a body sent a byte at a time: DSOCR_BODY_TIMEOUT_S, a 408;
- a thousand idle connections, half with an incomplete request head: DSOCR_HEADER_TIMEOUT_S;
- a head sent a byte at a time: DSOCR_HEADER_TIMEOUT_S from the connection's opening, not per byte;
- an idle kept-alive connection: DSOCR_KEEP_ALIVE_TIMEOUT_S.
"""

from __future__ import annotations

import base64
import json
import resource
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import httpx
import psutil
import pytest

from tests.scripted_frontend import ScriptedFrontend, scripted_frontend

# Long enough that a loaded machine still checks what it must while the hostile clients hold on.
HEADER_TIMEOUT_S = 5
BODY_TIMEOUT_S = 3
WRITE_TIMEOUT_S = 3
KEEP_ALIVE_TIMEOUT_S = 1
SLOTS = 4
# A deadline fires within this of its time (event loop and a loaded CI machine included).
SLACK_S = 3
# A normal request takes milliseconds here; this bound leaves room for a loaded machine.
NORMAL_CLIENT_BOUND_S = 2
# The frontend's memory may grow by this much while a test's hostile clients run, and after.
RSS_GROWTH_BOUND = 32 * 2**20
IDLE_CONNECTIONS = 1000
# Each delta is 16 KiB, so that unread streams fill every buffer on the way in well under a second.
DELTA_BYTES = 16384
ENDLESS = 100_000  # deltas a stream would give (1.6 GB) if nothing held the engine back

MODEL = "deepseek-ocr"
IMAGE_URL = "data:image/png;base64," + base64.b64encode(b"\x89PNG not decoded by the scripted engine").decode()
CHAT = {
    "model": MODEL,
    "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": IMAGE_URL}}]}],
}


@pytest.fixture(scope="module")
def frontend(tmp_path_factory) -> Iterator[ScriptedFrontend]:
    enough_file_descriptors(2 * IDLE_CONNECTIONS + 200)  # before the frontend starts: it inherits the limit
    flags = [
        f"--header-timeout-s={HEADER_TIMEOUT_S}",
        f"--body-timeout-s={BODY_TIMEOUT_S}",
        f"--write-timeout-s={WRITE_TIMEOUT_S}",
        f"--keep-alive-timeout-s={KEEP_ALIVE_TIMEOUT_S}",
        f"--max-concurrent-requests={SLOTS}",
    ]
    log = tmp_path_factory.mktemp("hostile") / "frontend.log"
    with scripted_frontend(log, *flags, deltas=ENDLESS, delta_bytes=DELTA_BYTES, pause_s=0.001) as frontend:
        for _ in range(20):  # warm: lazy imports and first allocations are not what is measured
            assert completion(frontend).status_code == 200
        yield frontend


def enough_file_descriptors(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        assert hard == resource.RLIM_INFINITY or hard >= needed, f"ulimit -n: {IDLE_CONNECTIONS} sockets need {needed}"
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


# --- clients -------------------------------------------------------------------


def completion(frontend: ScriptedFrontend, stream: bool = False) -> httpx.Response:
    """A normal client: two deltas, read in full."""
    body = {**CHAT, "max_tokens": 2, "stream": stream}
    return httpx.post(f"{frontend.base_url}/v1/chat/completions", json=body, timeout=30)


def assert_normal_client_served(frontend: ScriptedFrontend) -> None:
    started = time.monotonic()
    assert httpx.get(f"{frontend.base_url}/v1/models", timeout=30).status_code == 200
    assert completion(frontend, stream=True).text.endswith("data: [DONE]\n\n")
    elapsed = time.monotonic() - started
    assert elapsed < NORMAL_CLIENT_BOUND_S, f"a normal client waited {elapsed:.1f} s"


def connect(frontend: ScriptedFrontend, receive_buffer: int | None = None) -> socket.socket:
    sock = socket.socket()
    if receive_buffer is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    sock.connect(("127.0.0.1", frontend.port))
    return sock


def head(length: int) -> bytes:
    return (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n" % length
    )


def unread_stream(frontend: ScriptedFrontend) -> socket.socket:
    """A streamed completion whose client reads nothing."""
    body = json.dumps({**CHAT, "stream": True}).encode()
    sock = connect(frontend, receive_buffer=4096)
    sock.sendall(head(len(body)) + body)
    return sock


def closed_by_server(sock: socket.socket, within_s: float) -> bool:
    """Reads what is left; whether the server closed or reset the connection within `within_s`."""
    sock.settimeout(within_s)
    try:
        while sock.recv(1 << 20):
            pass
        return True
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def response_of(sock: socket.socket, timeout_s: float) -> bytes:
    sock.settimeout(timeout_s)
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


@contextmanager
def trickling(send_one_byte, every_s: float) -> Iterator[None]:
    """Calls `send_one_byte` every `every_s` in a thread until the block ends or the peer goes away."""
    stop = threading.Event()

    def trickle():
        while not stop.wait(every_s):
            try:
                send_one_byte()
            except OSError:
                return

    thread = threading.Thread(target=trickle, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def rss(frontend: ScriptedFrontend) -> int:
    return psutil.Process(frontend.process.pid).memory_info().rss


def wait_until(condition, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


# --- tests ---------------------------------------------------------------------


def test_streams_nobody_reads_are_dropped_after_the_write_timeout_freeing_slots_and_generations(frontend):
    before, start = rss(frontend), frontend.engine_stats()
    with ExitStack() as stack:
        # Two clients that read nothing, two that read a trickle: together every slot.
        silent = [stack.enter_context(unread_stream(frontend)) for _ in range(2)]
        slow = [stack.enter_context(unread_stream(frontend)) for _ in range(2)]
        for sock in slow:
            stack.enter_context(trickling(lambda sock=sock: sock.recv(1024), every_s=0.25))
        assert wait_until(lambda: frontend.engine_stats()["opened"] - start["opened"] == SLOTS, 10)
        stalled_at = time.monotonic()

        # While they hold every slot: a generation is refused, anything else is served.
        assert completion(frontend).status_code == 429
        started = time.monotonic()
        assert httpx.get(f"{frontend.base_url}/v1/models", timeout=30).status_code == 200
        assert time.monotonic() - started < NORMAL_CLIENT_BOUND_S
        during = rss(frontend)

        # Flow control holds the generations back: a few MB of kernel buffers' worth each, not 1.6 GB.
        given = frontend.engine_stats()["deltas_given"] - start["deltas_given"]
        assert given < SLOTS * 1000, f"{given} deltas were generated for clients that read nothing"

        generations_closed = lambda: frontend.engine_stats()["closed"] - start["closed"] == SLOTS  # noqa: E731
        assert wait_until(generations_closed, WRITE_TIMEOUT_S + SLACK_S), frontend.engine_stats()
        assert time.monotonic() - stalled_at >= WRITE_TIMEOUT_S - 0.5
        assert all(closed_by_server(sock, SLACK_S) for sock in silent + slow)

    assert frontend.log().count("dropping a connection whose client read nothing") >= SLOTS
    assert_normal_client_served(frontend)  # the slots are free again
    after = rss(frontend)
    assert during - before < RSS_GROWTH_BOUND, (before, during)
    assert after - before < RSS_GROWTH_BOUND, (before, after)


def test_a_body_sent_a_byte_at_a_time_is_408_after_the_body_timeout_and_frees_its_slot(frontend):
    before = rss(frontend)
    slow_senders = []
    with ExitStack() as stack:
        for _ in range(SLOTS):  # every slot, each held while its body trickles in
            sock = stack.enter_context(connect(frontend))
            sock.sendall(head(1000) + b"{")
            stack.enter_context(trickling(lambda sock=sock: sock.send(b" "), every_s=0.5))
            slow_senders.append(sock)
        started = time.monotonic()
        assert wait_until(lambda: completion(frontend).status_code == 429, 5)  # the slots are theirs
        assert_normal_client_served_outside_generation(frontend)

        answers = [response_of(sock, BODY_TIMEOUT_S + SLACK_S) for sock in slow_senders]
        elapsed = time.monotonic() - started
    assert BODY_TIMEOUT_S - 0.5 <= elapsed < BODY_TIMEOUT_S + SLACK_S
    for answer in answers:
        status_line, _, rest = answer.partition(b"\r\n")
        headers, _, body = rest.partition(b"\r\n\r\n")
        assert status_line == b"HTTP/1.1 408 Request Timeout", answer
        assert b"connection: close" in headers.lower()
        error = json.loads(body)["error"]
        assert error["code"] == "request_timeout" and set(error) == {"message", "type", "param", "code"}
    assert_normal_client_served(frontend)  # its slots freed
    assert rss(frontend) - before < RSS_GROWTH_BOUND


def assert_normal_client_served_outside_generation(frontend: ScriptedFrontend) -> None:
    started = time.monotonic()
    assert httpx.get(f"{frontend.base_url}/v1/models", timeout=30).status_code == 200
    assert time.monotonic() - started < NORMAL_CLIENT_BOUND_S


def test_a_thousand_idle_connections_neither_stop_others_nor_outlive_the_header_timeout(frontend):
    before = rss(frontend)
    with ExitStack() as stack:
        first_opened = time.monotonic()
        idle = [stack.enter_context(connect(frontend)) for _ in range(IDLE_CONNECTIONS)]
        for sock in idle[::2]:  # half of them start a request and never finish its head
            sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: test\r\nContent-Le")
        assert_normal_client_served(frontend)
        during = rss(frontend)
        assert time.monotonic() - first_opened < HEADER_TIMEOUT_S  # all of them were still open meanwhile

        assert all(closed_by_server(sock, HEADER_TIMEOUT_S + SLACK_S) for sock in idle)
        elapsed = time.monotonic() - first_opened
    assert HEADER_TIMEOUT_S <= elapsed < HEADER_TIMEOUT_S + 2 * SLACK_S
    assert_normal_client_served(frontend)
    assert during - before < RSS_GROWTH_BOUND, (before, during)
    assert rss(frontend) - before < RSS_GROWTH_BOUND


def test_a_head_sent_a_byte_at_a_time_is_closed_at_the_header_timeout_not_kept_alive_by_each_byte(frontend):
    request = head(2)  # about a hundred bytes: twenty seconds at this pace
    one_by_one = iter([request[i : i + 1] for i in range(len(request))])
    with connect(frontend) as sock, trickling(lambda: sock.send(next(one_by_one, b"")), every_s=0.2):
        started = time.monotonic()
        assert closed_by_server(sock, HEADER_TIMEOUT_S + SLACK_S)
        elapsed = time.monotonic() - started
    assert HEADER_TIMEOUT_S - 0.5 <= elapsed < HEADER_TIMEOUT_S + SLACK_S


def test_an_idle_kept_alive_connection_is_closed_after_the_keep_alive_timeout(frontend):
    with connect(frontend) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: test\r\n\r\n")
        sock.settimeout(5)
        assert sock.recv(65536).startswith(b"HTTP/1.1 200 OK")
        answered = time.monotonic()
        assert closed_by_server(sock, KEEP_ALIVE_TIMEOUT_S + SLACK_S)
        assert time.monotonic() - answered >= KEEP_ALIVE_TIMEOUT_S - 0.5
