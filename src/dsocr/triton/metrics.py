"""vLLM's engine metrics on Triton's metrics endpoint, next to Triton's own.

A vLLM stat logger that writes into Triton's custom metrics (Python backend
`pb_utils.MetricFamily`), so one Prometheus scrape of Triton's metrics port
shows queueing in Triton and batching in vLLM. Names follow vLLM's own
`vllm:` metrics.

Every `Metric.set`/`increment` is a round trip to the server (shared memory
and a message, synchronous). Made for every engine step, on the engine's
event loop, they were most of the host time a generated token cost. So a
step's figures are added up here and sent at most once a second: when a step
finds the last send a second old, and from the model's once-a-second engine
watch (what the last steps of a burst added). A scrape lags a second at most.

Imported only inside a Triton stub process.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from typing import Any

import triton_python_backend_utils as pb_utils
from vllm.v1.metrics.loggers import PrometheusStatLogger, StatLoggerBase

_GAUGES = {
    "vllm:num_requests_running": "Requests in the engine's running batch",
    "vllm:num_requests_waiting": "Requests waiting for the engine to schedule them",
    "vllm:kv_cache_usage_perc": "Fraction of the KV cache in use (0..1)",
}
_COUNTERS = {
    "vllm:prompt_tokens_total": "Prompt tokens processed (image tokens included)",
    "vllm:generation_tokens_total": "Tokens generated",
    "vllm:e2e_request_latency_seconds_total": "Sum of finished requests' engine latency",
    "vllm:time_to_first_token_seconds_total": "Sum of time to first token",
    "vllm:time_to_first_token_count_total": "Number of first tokens measured",
}


LABELS = {"model": "vllm_model"}
SEND_INTERVAL_S = 1.0


class TritonStatLogger(StatLoggerBase):
    def __init__(self, vllm_config, engine_index: int = 0):
        # A Metric is only valid while its MetricFamily lives: keep them all.
        self._families: list[Any] = []
        self._gauges = {name: self._metric(name, help, pb_utils.MetricFamily.GAUGE) for name, help in _GAUGES.items()}
        self._counters = {
            name: self._metric(name, help, pb_utils.MetricFamily.COUNTER) for name, help in _COUNTERS.items()
        }
        self._success = pb_utils.MetricFamily(
            "vllm:request_success_total", "Requests finished, by finish reason", pb_utils.MetricFamily.COUNTER
        )
        self._by_reason: dict[str, Any] = {}
        self._failed = False
        # Not sent yet. Touched on the engine's event loop only (record and flush).
        self._gauge_values: dict[str, float] = {}
        self._increments: defaultdict[str, float] = defaultdict(float)
        self._finished_by_reason: Counter[str] = Counter()
        self._sent_at = 0.0

    def _metric(self, name: str, help: str, kind):
        family = pb_utils.MetricFamily(name, help, kind)
        self._families.append(family)
        return family.Metric(LABELS)

    def record(self, scheduler_stats, iteration_stats, mm_cache_stats=None, engine_idx: int = 0):
        # vLLM calls this from its output handler: an exception here would
        # stop every request in flight, so metrics fail alone.
        if self._failed:
            return
        try:
            self._add(scheduler_stats, iteration_stats)
        except Exception as exc:
            self._disable(exc)
            return
        if time.monotonic() - self._sent_at >= SEND_INTERVAL_S:
            self.flush()

    def _add(self, scheduler_stats, iteration_stats) -> None:
        if scheduler_stats is not None:
            self._gauge_values["vllm:num_requests_running"] = scheduler_stats.num_running_reqs
            self._gauge_values["vllm:num_requests_waiting"] = scheduler_stats.num_waiting_reqs
            self._gauge_values["vllm:kv_cache_usage_perc"] = scheduler_stats.kv_cache_usage
        if iteration_stats is None:
            return
        self._increments["vllm:prompt_tokens_total"] += iteration_stats.num_prompt_tokens
        self._increments["vllm:generation_tokens_total"] += iteration_stats.num_generation_tokens
        for ttft in iteration_stats.time_to_first_tokens_iter:
            self._increments["vllm:time_to_first_token_seconds_total"] += ttft
            self._increments["vllm:time_to_first_token_count_total"] += 1
        for finished in iteration_stats.finished_requests:
            self._finished_by_reason[str(finished.finish_reason)] += 1
            self._increments["vllm:e2e_request_latency_seconds_total"] += finished.e2e_latency

    def flush(self) -> None:
        """Send what was added since the last send (nothing to send: no round trip)."""
        if self._failed:
            return
        self._sent_at = time.monotonic()
        gauges, self._gauge_values = self._gauge_values, {}
        increments, self._increments = self._increments, defaultdict(float)
        finished, self._finished_by_reason = self._finished_by_reason, Counter()
        try:
            for name, amount in increments.items():
                if amount:
                    self._counters[name].increment(amount)
            for reason, count in finished.items():
                self._finished(reason).increment(count)
            # Last: a scrape that sees the engine idle sees the counts of its last step.
            for name, value in gauges.items():
                self._gauges[name].set(value)
        except Exception as exc:
            self._disable(exc)

    def _finished(self, reason: str):
        if reason not in self._by_reason:
            self._by_reason[reason] = self._success.Metric({**LABELS, "finished_reason": reason})
        return self._by_reason[reason]

    def _disable(self, exc: Exception) -> None:
        pb_utils.Logger.log_error(f"vllm metrics disabled: {exc!r}")
        self._failed = True

    def log_engine_initialized(self):
        pass

    def close(self) -> None:
        """Drop the metrics, then their families, while the stub still runs.

        Left to the garbage collector they are freed after the stub has torn
        down its shared memory, and the stub crashes on exit.
        """
        self._failed = True  # later records do nothing
        self._gauges.clear()
        self._counters.clear()
        self._by_reason.clear()
        self._families.clear()
        self._success = None


class NoPrometheus(PrometheusStatLogger):
    """Given to the engine in place of vLLM's own Prometheus logger, which it adds unless one is given.

    In a stub nothing scrapes vLLM's registry (Triton's endpoint shows what TritonStatLogger sends), and that
    logger's labelled counters and histograms cost the engine's event loop every step.
    """

    def __init__(self, vllm_config, engine_indexes=None):
        pass

    def record(self, *args, **kwargs):
        pass

    def record_sleep_state(self, sleep: int = 0, level: int = 0):
        pass

    def record_admission_rejection(self, reason: str) -> None:
        pass

    def log_engine_initialized(self):
        pass
