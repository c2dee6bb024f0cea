"""Which engine generations belong to which Triton request id, for CANCEL requests.

A client stops a generation by naming its request id in a CANCEL request to
`vllm_model` (Triton does not pass a stream's cancellation on to an ensemble
step that is already running). The CANCEL can arrive before the generation
does: the request may still be in `preprocess` or in Triton's queue. Such a
cancel is remembered for a while, and the generation, when it comes, is not
run for a client that has left.

Client ids need not be unique: one id may cover several generations, and all
of them are stopped. The engine's own ids are unique.
"""

from __future__ import annotations

import time
from collections.abc import Callable

# How long a cancel waits for its request; a request still queued after this
# is rare enough to run (it is not answered to anyone, and max_tokens bounds it).
EARLY_CANCEL_TTL_S = 60.0
# Early cancels kept at most, oldest dropped first: a flood of CANCELs for
# unknown ids must not grow without bound.
EARLY_CANCEL_LIMIT = 10_000


class InflightRequests:
    def __init__(
        self,
        ttl_s: float = EARLY_CANCEL_TTL_S,
        limit: int = EARLY_CANCEL_LIMIT,
        clock: Callable[[], float] = time.monotonic,
    ):
        self._generations: dict[str, set[str]] = {}  # client id -> engine ids
        self._early: dict[str, float] = {}  # client id -> when its cancel expires (insertion order = age)
        self._ttl_s, self._limit, self._clock = ttl_s, limit, clock

    def start(self, client_id: str, engine_id: str) -> bool:
        """Register a generation; False when its request was cancelled before it arrived."""
        if not client_id:  # no id: it cannot be named, so it cannot be cancelled by name
            return True
        self._expire()
        if self._early.pop(client_id, None) is not None:
            return False
        self._generations.setdefault(client_id, set()).add(engine_id)
        return True

    def finish(self, client_id: str, engine_id: str) -> None:
        engine_ids = self._generations.get(client_id)
        if engine_ids is not None:
            engine_ids.discard(engine_id)
            if not engine_ids:
                del self._generations[client_id]

    def cancel(self, client_id: str) -> list[str]:
        """The engine ids to abort for `client_id`; none yet: the cancel waits for its request."""
        engine_ids = self._generations.pop(client_id, None)
        if engine_ids:
            return sorted(engine_ids)
        self._expire()
        self._early.pop(client_id, None)  # a repeated cancel moves to the end, keeping the order by age
        self._early[client_id] = self._clock() + self._ttl_s
        while len(self._early) > self._limit:
            del self._early[next(iter(self._early))]
        return []

    def _expire(self) -> None:
        now = self._clock()
        while self._early:
            oldest = next(iter(self._early))
            if self._early[oldest] > now:
                break
            del self._early[oldest]
