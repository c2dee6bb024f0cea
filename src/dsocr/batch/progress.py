"""Progress while a run goes, and its summary at the end.

On a terminal: tqdm's bar over the pages (done / total, pages/s, ETA), with the documents done and the
failures so far after it. Elsewhere (CI, a log file, a Kubernetes pod): a plain line every few
seconds, never a redrawn bar, so that a log holds readable lines. The totals grow while the run is
still counting the documents' pages.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Protocol, TextIO

from tqdm import tqdm

MODES = ("auto", "bar", "lines", "none")


@dataclass
class Tally:
    """What a run has done so far. `item` is what a run is made of (documents, requests), `unit` what its
    speed counts (pages, requests)."""

    item: str = "documents"
    unit: str = "pages"
    items: int = 0  # in this run: those already done included
    items_done: int = 0  # finished in this run
    skipped: int = 0  # already done by an earlier run
    failed: int = 0
    units: int = 0  # to do in this run, as far as counted
    units_done: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    interrupted: bool = False
    started: float = field(default_factory=time.monotonic)

    @property
    def elapsed_s(self) -> float:
        return time.monotonic() - self.started

    @property
    def rate(self) -> float:
        return self.units_done / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def eta_s(self) -> float | None:
        remaining = self.units - self.units_done
        return remaining / self.rate if self.rate > 0 else None

    def add_usage(self, usage: dict[str, Any] | None) -> None:
        if usage:
            self.prompt_tokens += int(usage.get("prompt_tokens") or 0)
            self.completion_tokens += int(usage.get("completion_tokens") or 0)

    def items_line(self) -> str:
        settled = self.items_done + self.skipped + self.failed
        line = f"{settled}/{self.items} {self.item}"
        if self.skipped:
            line += f" ({self.skipped} already done)"
        return line

    def line(self) -> str:
        eta = "?" if self.eta_s is None else _clock(self.eta_s)
        units = f"{self.units_done}/{self.units} {self.unit}, " if self.unit != self.item else ""
        return (
            f"{units}{self.items_line()}, {self.failed} failed, {self.rate:.2f} {self.unit}/s, "
            f"ETA {eta}, elapsed {_clock(self.elapsed_s)}"
        )

    def summary(self) -> dict[str, Any]:
        return {
            self.item: self.items,
            f"{self.item}_done": self.items_done,
            f"{self.item}_already_done": self.skipped,
            f"{self.item}_failed": self.failed,
            self.unit: self.units_done,
            "seconds": round(self.elapsed_s, 3),
            f"{self.unit}_per_s": round(self.rate, 4),
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "interrupted": self.interrupted,
        }


class View(Protocol):
    def show(self, tally: Tally, *, periodic: bool) -> None: ...

    def close(self, tally: Tally) -> None: ...


class Bar:
    def __init__(self, tally: Tally, stream: TextIO) -> None:
        self._bar = tqdm(total=tally.units, unit=tally.unit.rstrip("s"), file=stream, dynamic_ncols=True)

    def show(self, tally: Tally, *, periodic: bool) -> None:
        self._bar.total = tally.units
        self._bar.update(tally.units_done - self._bar.n)
        self._bar.set_postfix_str(f"{tally.items_line()}, {tally.failed} failed", refresh=False)
        self._bar.refresh()

    def close(self, tally: Tally) -> None:
        self.show(tally, periodic=False)
        self._bar.close()


class Lines:
    def __init__(self, stream: TextIO, prefix: str) -> None:
        self._stream, self._prefix = stream, prefix

    def show(self, tally: Tally, *, periodic: bool) -> None:
        if periodic:  # events come many a second; a log wants a line every interval
            self._write(tally)

    def close(self, tally: Tally) -> None:
        self._write(tally)

    def _write(self, tally: Tally) -> None:
        print(f"[{self._prefix}] {tally.line()}", file=self._stream, flush=True)


class Silent:
    def show(self, tally: Tally, *, periodic: bool) -> None:
        pass

    def close(self, tally: Tally) -> None:
        pass


class Progress:
    """The tally and how it is shown; `async with` shows it every `interval_s` until the run ends."""

    def __init__(
        self, tally: Tally, mode: str = "auto", *, interval_s: float = 10.0, stream: TextIO | None = None, prefix: str
    ) -> None:
        self.tally = tally
        self.interval_s = interval_s
        stream = stream or sys.stderr
        if mode == "auto":
            mode = "bar" if stream.isatty() else "lines"
        self._view = _view(mode, tally, stream, prefix)
        self._ticker: asyncio.Task[None] | None = None

    def changed(self) -> None:
        self._view.show(self.tally, periodic=False)

    async def __aenter__(self) -> Progress:
        self._ticker = asyncio.create_task(self._tick())
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
        self._view.close(self.tally)

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            self._view.show(self.tally, periodic=True)


def _view(mode: str, tally: Tally, stream: TextIO, prefix: str) -> View:
    if mode == "bar":
        return Bar(tally, stream)
    if mode == "lines":
        return Lines(stream, prefix)
    return Silent()


def summary_table(tally: Tally, errors_file: str | None = None) -> str:
    """The run at a glance, for a person (summary.json has the same for a program)."""
    settled = f"{tally.items_done} done, {tally.skipped} already done, {tally.failed} failed"
    if tally.failed and errors_file:
        settled += f" (see {errors_file})"
    rows = [
        (tally.item, f"{tally.items}: {settled}"),
        *([(tally.unit, str(tally.units_done))] if tally.unit != tally.item else []),
        (f"{tally.unit}/s", f"{tally.rate:.2f}"),
        ("tokens", f"{tally.prompt_tokens} prompt + {tally.completion_tokens} completion"),
        ("time", _clock(tally.elapsed_s) + (" (interrupted)" if tally.interrupted else "")),
    ]
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


def _clock(seconds: float) -> str:
    return str(datetime.timedelta(seconds=round(seconds)))
