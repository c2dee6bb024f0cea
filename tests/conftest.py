"""Shared fixtures and the test tiers.

Tiers are folders: `unit/` (no server), `engine/` (the vLLM engine in-process),
`server/` (a real tritonserver and frontend, with the engine), `gpu/` (the
real weights on a GPU). Each test is marked with its folder's tier(s), so
`-m "not engine"` runs the fast ones.

The `service` fixture runs the real stack once per session:
`python -m dsocr.serve` (tritonserver + vLLM on CPU with the tiny model, and
the OpenAI frontend) on free ports. A failing test gets the tail of every
running service's log in its report.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import SERVICES, Service, start_service

TESTS = Path(__file__).parent
TIER_MARKERS = {
    "engine": ("engine",),
    "server": ("server", "engine"),
    "gpu": ("gpu", "server", "engine"),
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        tier = item.path.relative_to(TESTS).parts[0]
        for marker in TIER_MARKERS.get(tier, ()):
            item.add_marker(marker)


@pytest.fixture(scope="session")
def service(tmp_path_factory) -> Service:
    with start_service(tmp_path_factory.mktemp("service") / "service.log") as service:
        yield service


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        for service in SERVICES:
            report.sections.append((f"service log (tail): {service.log_path}", service.log_tail()))
