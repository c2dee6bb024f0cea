"""The HTTP server: uvicorn, with the deadlines it lacks, so that no slow or hostile client holds anything for ever.

What a client can hold, and what bounds it (each deadline a setting, README "Slow and hostile clients"):

- a connection that sends nothing, or a request head that never completes: uvicorn's httptools
  protocol has no deadline for either (its keep-alive timer is armed only after a response), so
  `DeadlineProtocol` closes a connection whose head is not in `header_timeout_s` after the
  connection opened (or, on a kept-alive connection, after the request's first byte).
- a body that trickles in: `BodySizeLimit`'s deadline, a 408 (openai_frontend/middlewares.py).
- a response nobody reads: uvicorn's flow control stops writing once the transport holds 64 KiB
  (the ASGI `send` waits for the client), so an unread stream does not buffer without bound; but
  it would wait for ever, holding its concurrency slot and its generation. A connection whose
  writes stay paused for `write_timeout_s` is aborted (its buffers dropped): the app sees the
  client's disconnect, which closes the stream and cancels the generation.
- an idle kept-alive connection: uvicorn's `timeout_keep_alive`.

No cap on connections (uvicorn's `limit_concurrency`): it answers a plain-text 503 to the
requests over it, idle connections included in the count, so a flood of idle connections
would turn other clients away; the header deadline bounds how long each one lives instead.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from openai_frontend.settings import Settings


class DeadlineProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a deadline on each request's head and on a stalled write."""

    header_timeout_s: float
    write_timeout_s: float
    _head_timer: asyncio.TimerHandle | None = None
    _write_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._await_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        self._cancel_write_timer()
        super().connection_lost(exc)

    # httptools' parser callbacks: a request starts, its head is complete.
    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._head_timer is None:  # the first request's deadline runs from the connection's opening
            self._await_head()

    def on_headers_complete(self) -> None:
        self._cancel_head_timer()
        super().on_headers_complete()

    # The transport's flow control: its buffer passed the high-water mark, then drained.
    def pause_writing(self) -> None:
        super().pause_writing()
        if self._write_timer is None:
            self._write_timer = self.loop.call_later(self.write_timeout_s, self._write_stalled)

    def resume_writing(self) -> None:
        super().resume_writing()
        self._cancel_write_timer()

    def _await_head(self) -> None:
        self._head_timer = self.loop.call_later(self.header_timeout_s, self._head_late)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _cancel_write_timer(self) -> None:
        if self._write_timer is not None:
            self._write_timer.cancel()
            self._write_timer = None

    def _head_late(self) -> None:
        # Idle pre-opened connections end this way too: not worth a log line each.
        self.logger.debug("closing a connection whose request head did not arrive in %g s", self.header_timeout_s)
        self.transport.close()

    def _write_stalled(self) -> None:
        self.logger.info(
            "dropping a connection whose client read nothing for %g s: %s", self.write_timeout_s, self.client
        )
        # abort, not close: close would wait for the unread buffer to be sent, for ever.
        self.transport.abort()


def deadline_protocol(header_timeout_s: float, write_timeout_s: float) -> type[asyncio.Protocol]:
    """The protocol class uvicorn instantiates per connection, with these deadlines."""
    deadlines = {"header_timeout_s": header_timeout_s, "write_timeout_s": write_timeout_s}
    return type("DeadlineProtocol", (DeadlineProtocol,), deadlines)


def server_options(settings: Settings) -> dict[str, Any]:
    """uvicorn.run's (and uvicorn.Config's) keyword arguments for `settings`."""
    return {
        "host": settings.host,
        "port": settings.port,
        "log_level": "info",
        "http": deadline_protocol(settings.header_timeout_s, settings.write_timeout_s),
        "timeout_keep_alive": settings.keep_alive_timeout_s,
    }
