"""Shared fixtures. The `service` fixture runs the real stack once per session:
`python -m dsocr.serve` (tritonserver + vLLM on CPU with the tiny model, and
the OpenAI frontend) on free ports. A failing test that used it gets the tail
of the service log in its report.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# Shared test helpers (tests/helpers.py) import as `helpers`.
sys.path.insert(0, str(Path(__file__).parent))
from helpers import SERVICES, Service, start_service, stop_service  # noqa: E402


@pytest.fixture(scope="session")
def service(tmp_path_factory) -> Service:
    service = start_service(tmp_path_factory.mktemp("service") / "service.log")
    try:
        service.wait_ready()
        yield service
    finally:
        stop_service(service)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        for service in SERVICES:
            report.sections.append((f"service log (tail): {service.log_path}", service.log_tail()))
