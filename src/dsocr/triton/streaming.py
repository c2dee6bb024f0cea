"""A decoupled model's responses, sent off the engine's event loop, coalesced when sending is slower than generating.

In Triton's Python backend a response send is synchronous: it writes the
response to shared memory, posts a message to the server and waits for it;
asking whether a request was cancelled is another round trip. Done on the
engine's asyncio loop for every engine step of every request, those waits
stop vLLM's output handling and grow with the requests in flight.

So the loop only adds what a step produced to the request's `ResponseStream`
(a lock and a list append), and one `Sender` thread sends: each request with
something unsent gets one response carrying all of it, the text since its
last response and the latest token counts. A request's first output goes out
as soon as the sender is free (time to first token does not wait for a
batch); when the sender falls behind, the tokens that pile up meanwhile go
out together rather than queueing as responses. After each response the
sender asks whether the request was cancelled, and the loop stops the
generation at its next step: a cancellation is noticed within one response.

Every stream ends with exactly one final response (its finish reason, an
error, or the final flag alone), whatever fails.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Update:
    """What one response carries."""

    kind: Literal["data", "error", "end"]  # "end": the final flag alone
    final: bool
    text: str = ""
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    error: str = ""
    error_code: Any = None


class Transport(Protocol):
    """One request's way back to its client (the Python backend's response sender)."""

    def send(self, update: Update) -> None: ...

    def cancelled(self) -> bool: ...


@dataclass
class _Pending:
    """What the engine added and the sender has not taken yet."""

    pieces: list[str] = field(default_factory=list)
    counts: tuple[int, int] = (0, 0)  # prompt, completion tokens: the latest
    finish_reason: str | None = None
    data_final: bool = False  # the last data added was the request's last output
    terminal: Update | None = None  # an error or the final flag alone, after any data
    final_taken: bool = False

    def take(self) -> list[Update]:
        updates = []
        if self.pieces or (self.data_final and not self.final_taken):
            prompt_tokens, completion_tokens = self.counts
            text = "".join(self.pieces)
            updates.append(Update("data", self.data_final, text, self.finish_reason, prompt_tokens, completion_tokens))
            self.pieces = []
            self.final_taken = self.data_final
        if self.terminal is not None and not self.final_taken:
            updates.append(self.terminal)
            self.terminal, self.final_taken = None, True
        return updates


class ResponseStream:
    """One request's responses: the engine loop adds, the sender sends."""

    def __init__(self, transport: Transport, sender: Sender) -> None:
        self.transport = transport
        self._sender = sender
        self._lock = threading.Lock()
        self._pending = _Pending()
        self._scheduled = False
        self._ended = False  # a final update was added: nothing more may be
        self.cancelled = False  # the client cancelled, or its responses can no longer be sent

    def add(
        self, text: str, finish_reason: str | None, prompt_tokens: int, completion_tokens: int, final: bool
    ) -> None:
        """An engine step's output (its text delta, the running counts); `final` on the last."""
        with self._lock:
            if self._ended:
                return
            if text:
                self._pending.pieces.append(text)
            self._pending.counts = (prompt_tokens, completion_tokens)
            self._pending.finish_reason = finish_reason
            self._pending.data_final = final
            self._ended = final
        self._schedule()

    def fail(self, message: str, code: Any = None) -> None:
        """End the stream with an error (after whatever it generated), unless it has ended."""
        self._end(Update("error", True, error=message, error_code=code))

    def close(self) -> None:
        """End the stream with the final flag alone, unless it has ended."""
        self._end(Update("end", True))

    def _end(self, terminal: Update) -> None:
        with self._lock:
            if self._ended:
                return
            self._ended = True
            self._pending.terminal = terminal
        self._schedule()

    def _schedule(self) -> None:
        with self._lock:
            if self._scheduled:
                return  # the sender will take what was added with what it finds
            self._scheduled = True
        self._sender.schedule(self)

    def take(self) -> list[Update]:
        """Everything unsent, as at most two updates (the data, then an error or the final flag)."""
        with self._lock:
            self._scheduled = False
            return self._pending.take()


_STOP = object()


class Sender:
    """The one thread that sends every stream's responses, in the order streams had something to send."""

    def __init__(self, on_error: Callable[[str], None] | None = None) -> None:
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._on_error = on_error or log.error
        self._thread = threading.Thread(target=self._run, name="response-sender", daemon=True)
        self._thread.start()

    def schedule(self, stream: ResponseStream) -> None:
        self._queue.put(stream)

    def stop(self, timeout_s: float = 10.0) -> None:
        """Send what is queued, then end the thread."""
        self._queue.put(_STOP)
        self._thread.join(timeout=timeout_s)

    def _run(self) -> None:
        while (stream := self._queue.get()) is not _STOP:
            final = False
            for update in stream.take():
                final = final or update.final
                try:
                    stream.transport.send(update)
                except Exception as exc:  # the client's stream is gone: nothing more can reach it
                    self._on_error(f"a response could not be sent: {exc!r}")
                    stream.cancelled = True
                    break
            if not final and not stream.cancelled:
                stream.cancelled = self._asked_to_cancel(stream)

    def _asked_to_cancel(self, stream: ResponseStream) -> bool:
        try:
            return stream.transport.cancelled()
        except Exception as exc:
            self._on_error(f"could not learn whether a request was cancelled: {exc!r}")
            return False
