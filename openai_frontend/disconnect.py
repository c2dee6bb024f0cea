"""Stopping work for a client that has gone away.

A streamed response notices a disconnect itself (Starlette cancels it); work
awaited before any response exists, a whole non-streamed completion or a
stream's first delta, would run on to the end unnoticed. Cancelling it closes
the engine's stream and so the Triton request.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

from starlette.requests import Request
from starlette.responses import Response

T = TypeVar("T")

# nginx's "client closed request": shows in access logs what happened.
CLIENT_CLOSED_REQUEST = 499


class ClientDisconnected(Exception):
    pass


async def _disconnected(request: Request) -> None:
    # The body is read by now: the next message the server has for this
    # request is its disconnect.
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def unless_disconnected(request: Request, work: Awaitable[T]) -> T:
    """`work`'s result; if the client goes away first, `work` is cancelled and ClientDisconnected raised."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_disconnected(request))
    try:
        done, _ = await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
        task.cancel()  # a no-op once it is done
    if task in done:
        return task.result()
    await asyncio.gather(task, return_exceptions=True)  # let its clean-up close the engine's stream
    raise ClientDisconnected()


async def client_disconnected(_: Request, __: Exception) -> Response:
    """Nobody reads this answer; it is for the access log."""
    return Response(status_code=CLIENT_CLOSED_REQUEST)
