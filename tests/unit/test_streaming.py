"""Responses sent off the engine loop: exact text and counts, coalesced when sending is slow, one final
response whatever happens, a cancellation seen after a response, and a loop that never waits on a send."""

from __future__ import annotations

import threading
import time

from dsocr.triton.streaming import ResponseStream, Sender, Update


class Transport:
    """Records what was sent; each send takes `send_s` (the server's round trip)."""

    def __init__(self, send_s: float = 0.0, cancel_after: int | None = None, fail_on: int | None = None) -> None:
        self.sent: list[Update] = []
        self.send_s, self.cancel_after, self.fail_on = send_s, cancel_after, fail_on
        self.done = threading.Event()

    def send(self, update: Update) -> None:
        if self.fail_on is not None and len(self.sent) == self.fail_on:
            raise RuntimeError("the stub's response sender is gone")
        time.sleep(self.send_s)
        self.sent.append(update)
        if update.final:
            self.done.set()

    def cancelled(self) -> bool:
        return self.cancel_after is not None and len(self.sent) >= self.cancel_after


def generate(stream: ResponseStream, tokens: int, step_s: float = 0.0) -> None:
    """The engine loop's side: one output per step, the last one final."""
    for n in range(1, tokens + 1):
        stream.add(f"t{n} ", "length" if n == tokens else None, 50, n, final=n == tokens)
        time.sleep(step_s)


def test_text_and_counts_are_exact_and_the_last_response_is_final():
    sender = Sender()
    transport = Transport()
    generate(ResponseStream(transport, sender), 20, step_s=0.001)
    assert transport.done.wait(5)
    sender.stop()
    assert "".join(update.text for update in transport.sent) == "".join(f"t{n} " for n in range(1, 21))
    assert [update.final for update in transport.sent].count(True) == 1 and transport.sent[-1].final
    last = transport.sent[-1]
    assert (last.finish_reason, last.prompt_tokens, last.completion_tokens) == ("length", 50, 20)
    assert [u.completion_tokens for u in transport.sent] == sorted(u.completion_tokens for u in transport.sent)


def test_a_slow_send_coalesces_tokens_and_never_blocks_the_engine_loop():
    sender = Sender()
    transport = Transport(send_s=0.05)
    stream = ResponseStream(transport, sender)
    started = time.perf_counter()
    generate(stream, 200)
    added_s = time.perf_counter() - started
    assert transport.done.wait(10)
    sender.stop()
    assert added_s < 0.05  # 200 outputs added in less than one send takes
    assert len(transport.sent) <= 3  # the first at once, the rest together
    assert transport.sent[0].text == "t1 "  # the first token did not wait for the others
    assert "".join(update.text for update in transport.sent).count(" ") == 200


def test_many_streams_share_one_sender_and_each_gets_its_own_text():
    sender = Sender()
    transports = [Transport(send_s=0.001) for _ in range(8)]
    threads = [threading.Thread(target=generate, args=(ResponseStream(t, sender), 30, 0.0005)) for t in transports]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(t.done.wait(10) for t in transports)
    sender.stop()
    for transport in transports:
        assert "".join(u.text for u in transport.sent) == "".join(f"t{n} " for n in range(1, 31))


def test_an_error_comes_after_the_text_already_generated_and_is_the_only_final():
    sender = Sender()
    transport = Transport(send_s=0.02)
    stream = ResponseStream(transport, sender)
    stream.add("partial ", None, 50, 1, final=False)
    stream.add("text", None, 50, 2, final=False)
    stream.fail("generation failed (RuntimeError)", code="INTERNAL")
    stream.close()  # the usual `finally`: a no-op now
    stream.add("late", "stop", 50, 3, final=True)  # nothing after the end
    assert transport.done.wait(5)
    sender.stop()
    assert "".join(u.text for u in transport.sent) == "partial text"
    assert transport.sent[-1].kind == "error" and transport.sent[-1].error_code == "INTERNAL"
    assert [u.final for u in transport.sent].count(True) == 1


def test_close_alone_sends_the_final_flag():
    sender = Sender()
    transport = Transport()
    ResponseStream(transport, sender).close()
    assert transport.done.wait(5)
    sender.stop()
    assert [(u.kind, u.final) for u in transport.sent] == [("end", True)]


def test_a_cancellation_is_seen_after_a_response():
    sender = Sender()
    transport = Transport(send_s=0.005, cancel_after=2)
    stream = ResponseStream(transport, sender)
    for n in range(1, 100):
        stream.add("x", None, 50, n, final=False)
        time.sleep(0.002)
        if stream.cancelled:  # the engine loop's check, per output
            break
    assert stream.cancelled and n < 99
    stream.close()
    assert transport.done.wait(5)
    sender.stop()


def test_a_send_that_fails_marks_the_stream_cancelled_and_the_sender_goes_on():
    errors: list[str] = []
    sender = Sender(on_error=errors.append)
    broken, healthy = Transport(fail_on=0), Transport()
    broken_stream = ResponseStream(broken, sender)
    broken_stream.add("lost", None, 50, 1, final=False)
    generate(ResponseStream(healthy, sender), 3)
    assert healthy.done.wait(5)
    sender.stop()
    assert broken_stream.cancelled and errors and "could not be sent" in errors[0]
    assert "".join(u.text for u in healthy.sent) == "t1 t2 t3 "
