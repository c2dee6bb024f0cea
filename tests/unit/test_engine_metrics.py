"""The engine's stat logger adds a step's figures up and sends them to Triton at most once a second.

Triton's metrics API exists only inside a stub process; here it is a recorder of the calls made to it
(each one a round trip to the server in a stub), so the test can count them. The metrics on Triton's
endpoint are shown in tests/server/test_vllm_model.py.
"""

from __future__ import annotations

import importlib
import sys
import types
from types import SimpleNamespace
from typing import ClassVar

import pytest


class Recorder:
    """`pb_utils.MetricFamily` and its `Metric`s: every set and increment, in order."""

    GAUGE, COUNTER = "gauge", "counter"
    calls: ClassVar[list[tuple[str, str, dict, float]]] = []

    def __init__(self, name: str, description: str, kind: str) -> None:
        self.name = name

    def Metric(self, labels: dict):  # pb_utils' name
        family = self

        class Metric:
            def set(self, value: float) -> None:
                Recorder.calls.append(("set", family.name, labels, value))

            def increment(self, value: float) -> None:
                Recorder.calls.append(("increment", family.name, labels, value))

        return Metric()


@pytest.fixture
def metrics(monkeypatch):
    pb_utils = types.ModuleType("triton_python_backend_utils")
    pb_utils.MetricFamily = Recorder  # type: ignore[attr-defined]
    pb_utils.Logger = SimpleNamespace(log_error=print)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", pb_utils)
    monkeypatch.delitem(sys.modules, "dsocr.triton.metrics", raising=False)
    Recorder.calls = []
    module = importlib.import_module("dsocr.triton.metrics")
    yield module
    sys.modules.pop("dsocr.triton.metrics", None)


def step(running: int, prompt: int, generated: int, first_tokens=(), finished=()):
    scheduler = SimpleNamespace(num_running_reqs=running, num_waiting_reqs=0, kv_cache_usage=0.5)
    iteration = SimpleNamespace(
        num_prompt_tokens=prompt,
        num_generation_tokens=generated,
        time_to_first_tokens_iter=list(first_tokens),
        finished_requests=[SimpleNamespace(finish_reason=reason, e2e_latency=2.0) for reason in finished],
    )
    return scheduler, iteration


def totals() -> dict[str, float]:
    sums: dict[str, float] = {}
    for kind, name, labels, value in Recorder.calls:
        key = name + "".join(f"/{v}" for k, v in labels.items() if k != "model")
        sums[key] = value if kind == "set" else sums.get(key, 0) + value
    return sums


def test_steps_within_a_second_are_sent_once_added_up(metrics):
    logger = metrics.TritonStatLogger(vllm_config=None)
    logger.record(*step(running=1, prompt=100, generated=0, first_tokens=[0.5]))  # the first: sent at once
    sent_first = len(Recorder.calls)
    for _ in range(50):  # a second's worth of decode steps: nothing sent
        logger.record(*step(running=2, prompt=0, generated=2))
    logger.record(*step(running=0, prompt=0, generated=2, finished=["stop", "length"]))
    assert len(Recorder.calls) == sent_first

    logger.flush()  # the model's once-a-second watch
    assert totals() == {
        "vllm:num_requests_running": 0,
        "vllm:num_requests_waiting": 0,
        "vllm:kv_cache_usage_perc": 0.5,
        "vllm:prompt_tokens_total": 100,
        "vllm:generation_tokens_total": 102,
        "vllm:time_to_first_token_seconds_total": 0.5,
        "vllm:time_to_first_token_count_total": 1,
        "vllm:e2e_request_latency_seconds_total": 4.0,
        "vllm:request_success_total/stop": 1,
        "vllm:request_success_total/length": 1,
    }
    # One call per metric per send, the gauges last (a scrape that sees the engine idle has its counts).
    flushed = Recorder.calls[sent_first:]
    assert len(flushed) == len({(name, str(labels)) for _, name, labels, _ in flushed})
    assert [kind for kind, *_ in flushed][-3:] == ["set"] * 3

    before = len(Recorder.calls)
    logger.flush()  # nothing added since: no call
    assert len(Recorder.calls) == before


def test_a_step_a_second_after_the_last_send_is_sent_with_what_was_waiting(metrics, monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr(metrics.time, "monotonic", lambda: clock[0])
    logger = metrics.TritonStatLogger(vllm_config=None)
    logger.record(*step(running=1, prompt=10, generated=1))
    logger.record(*step(running=1, prompt=0, generated=1))
    assert totals()["vllm:generation_tokens_total"] == 1
    clock[0] += metrics.SEND_INTERVAL_S
    logger.record(*step(running=1, prompt=0, generated=1))
    assert totals()["vllm:generation_tokens_total"] == 3


def test_figures_vllm_no_longer_has_disable_the_metrics_not_the_engine(metrics, capsys):
    logger = metrics.TritonStatLogger(vllm_config=None)
    logger.record(SimpleNamespace(), None)  # a renamed field: the output handler must not see it
    logger.record(*step(running=1, prompt=10, generated=1))
    logger.flush()
    assert Recorder.calls == []
    assert "vllm metrics disabled" in capsys.readouterr().out


def test_vllms_own_prometheus_logger_is_left_out(metrics):
    # vLLM adds its Prometheus logger unless one given is one. Nothing scrapes it in a stub, and its labelled
    # counters and histograms were a third of the engine loop's time per step (1024 tokens at concurrency 1).
    from vllm.v1.metrics.loggers import StatLoggerManager

    manager = StatLoggerManager(None, custom_stat_loggers=[metrics.NoPrometheus], enable_default_loggers=False)
    assert [type(logger) for logger in manager.stat_loggers] == [metrics.NoPrometheus]
    manager.record(None, None)  # what the engine calls does nothing
    manager.record_sleep_state(1, 0)
    manager.log_engine_initialized()
    manager.log()
