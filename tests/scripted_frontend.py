"""The real frontend, served as `python -m openai_frontend` serves it (uvicorn, its server options), over
a scripted engine: for tests of the HTTP layer that need no model (API fuzzing, slow and hostile clients).

    python -m tests.scripted_frontend [--deltas N --delta-bytes B --pause-s S] [frontend flags]

The engine streams `deltas` deltas of `delta-bytes` characters each, `pause-s` apart (fewer when the
request's max_tokens says so). It counts the streams it opened and closed, and the deltas it gave,
at GET /test/engine (not in the OpenAPI schema), so that a test can see a generation stopped.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import subprocess
import sys
from collections.abc import AsyncGenerator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import uvicorn

from dsocr.processes import free_port, wait_answering
from dsocr.triton.client import Delta
from openai_frontend.app import create_app
from openai_frontend.server import server_options
from openai_frontend.settings import Settings

# Counts no code path would make up.
PROMPT_TOKENS = 279
STARTUP_TIMEOUT_S = 60


@dataclass
class ScriptedEngine:
    deltas: int
    delta_bytes: int
    pause_s: float
    opened: int = 0
    closed: int = 0
    deltas_given: int = 0

    async def ready(self) -> bool:
        return True

    async def generate(self, image: bytes, prompt: str, parameters: dict) -> AsyncGenerator[Delta, None]:
        self.opened += 1
        count = min(self.deltas, parameters.get("max_tokens") or self.deltas)
        try:
            for i in range(count):
                await asyncio.sleep(self.pause_s)
                self.deltas_given += 1
                finish = "length" if i == count - 1 else None
                yield Delta("x" * self.delta_bytes, finish, PROMPT_TOKENS, i + 1)
        finally:
            self.closed += 1

    async def close(self) -> None:
        pass

    async def stats(self) -> dict[str, int]:
        return {"opened": self.opened, "closed": self.closed, "deltas_given": self.deltas_given}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.scripted_frontend", description=__doc__)
    parser.add_argument("--deltas", type=int, default=3)
    parser.add_argument("--delta-bytes", type=int, default=8)
    parser.add_argument("--pause-s", type=float, default=0.0)
    args, frontend_flags = parser.parse_known_args(argv)
    settings = Settings.from_args(frontend_flags)
    engine = ScriptedEngine(args.deltas, args.delta_bytes, args.pause_s)
    app = create_app(settings, engine=engine)
    app.add_api_route("/test/engine", engine.stats, include_in_schema=False)
    uvicorn.run(app, **{**server_options(settings), "access_log": False})


@dataclass(frozen=True)
class ScriptedFrontend:
    base_url: str
    port: int
    process: subprocess.Popen
    log_path: Path

    def engine_stats(self) -> dict[str, int]:
        return httpx.get(f"{self.base_url}/test/engine", timeout=10).json()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@contextlib.contextmanager
def scripted_frontend(log_path: Path, *flags: str, **engine: float) -> Iterator[ScriptedFrontend]:
    """The frontend as a subprocess on a free loopback port, with frontend `flags` and the `engine`'s
    knobs (deltas, delta_bytes, pause_s); yields once it answers /health."""
    port = free_port()
    knobs = [f"--{name.replace('_', '-')}={value}" for name, value in engine.items()]
    command = [sys.executable, "-m", "tests.scripted_frontend", *knobs, "--host=127.0.0.1", f"--port={port}", *flags]
    with open(log_path, "wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    frontend = ScriptedFrontend(f"http://127.0.0.1:{port}", port, process, log_path)
    try:
        wait_answering("the frontend", process, f"{frontend.base_url}/health", frontend.log, STARTUP_TIMEOUT_S, 0.1)
        yield frontend
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


if __name__ == "__main__":
    main()
