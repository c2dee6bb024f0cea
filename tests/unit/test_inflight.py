"""Cancels by Triton request id, including the one that comes before its request."""

from dsocr.triton.inflight import InflightRequests


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_cancel_names_every_generation_of_its_request():
    inflight = InflightRequests()
    assert inflight.start("page-1", "e1") and inflight.start("page-1", "e2") and inflight.start("page-2", "e3")
    assert inflight.cancel("page-1") == ["e1", "e2"]
    inflight.finish("page-1", "e1")  # the aborted generations end later; nothing breaks
    assert inflight.cancel("page-2") == ["e3"]


def test_a_finished_generation_is_not_cancelled():
    inflight = InflightRequests()
    inflight.start("page-1", "e1")
    inflight.finish("page-1", "e1")
    assert inflight.cancel("page-1") == []


def test_a_cancel_that_comes_first_stops_its_request_once():
    inflight = InflightRequests()
    assert inflight.cancel("page-1") == []
    assert not inflight.start("page-1", "e1")  # refused: its client has left
    assert inflight.start("page-1", "e2")  # the cancel is used up
    assert inflight.cancel("page-1") == ["e2"]


def test_a_request_without_an_id_always_runs():
    inflight = InflightRequests()
    inflight.cancel("")
    assert inflight.start("", "e1")
    assert inflight.cancel("") == []


def test_an_early_cancel_expires():
    clock = Clock()
    inflight = InflightRequests(ttl_s=60, clock=clock)
    inflight.cancel("late")
    clock.now = 61
    assert inflight.start("late", "e1")


def test_early_cancels_are_bounded_oldest_first():
    clock = Clock()
    inflight = InflightRequests(ttl_s=60, limit=2, clock=clock)
    for name in ("a", "b", "c"):
        inflight.cancel(name)
    assert inflight.start("a", "e1")  # dropped to keep two
    assert not inflight.start("b", "e2") and not inflight.start("c", "e3")


def test_a_repeated_early_cancel_lives_from_its_last_time():
    clock = Clock()
    inflight = InflightRequests(ttl_s=60, clock=clock)
    inflight.cancel("a")
    inflight.cancel("b")
    clock.now = 50
    inflight.cancel("a")
    clock.now = 70  # b expired; a was renewed at 50
    assert inflight.start("b", "e1")
    assert not inflight.start("a", "e2")
