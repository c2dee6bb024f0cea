"""vLLM's engine metrics on Triton's metrics endpoint, next to Triton's own.

A vLLM stat logger that writes into Triton's custom metrics (Python backend
`pb_utils.MetricFamily`), so one Prometheus scrape of Triton's metrics port
shows queueing in Triton and batching in vLLM. Names follow vLLM's own
`vllm:` metrics.

Imported only inside a Triton stub process.
"""

from __future__ import annotations

from typing import Any

import triton_python_backend_utils as pb_utils
from vllm.v1.metrics.loggers import StatLoggerBase

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

    def _metric(self, name: str, help: str, kind):
        family = pb_utils.MetricFamily(name, help, kind)
        self._families.append(family)
        return family.Metric(LABELS)

    def record(self, scheduler_stats, iteration_stats, mm_cache_stats=None, engine_idx: int = 0):
        # vLLM calls this from its output handler: an exception here would
        # stop every request in flight, so metrics fail alone.
        try:
            self._record(scheduler_stats, iteration_stats)
        except Exception as exc:
            if not self._failed:
                pb_utils.Logger.log_error(f"vllm metrics disabled: {exc!r}")
                self._failed = True

    def _record(self, scheduler_stats, iteration_stats):
        if scheduler_stats is not None:
            self._gauges["vllm:num_requests_running"].set(scheduler_stats.num_running_reqs)
            self._gauges["vllm:num_requests_waiting"].set(scheduler_stats.num_waiting_reqs)
            self._gauges["vllm:kv_cache_usage_perc"].set(scheduler_stats.kv_cache_usage)
        if iteration_stats is None:
            return
        self._counters["vllm:prompt_tokens_total"].increment(iteration_stats.num_prompt_tokens)
        self._counters["vllm:generation_tokens_total"].increment(iteration_stats.num_generation_tokens)
        for ttft in iteration_stats.time_to_first_tokens_iter:
            self._counters["vllm:time_to_first_token_seconds_total"].increment(ttft)
            self._counters["vllm:time_to_first_token_count_total"].increment(1)
        for finished in iteration_stats.finished_requests:
            self._finished(str(finished.finish_reason)).increment(1)
            self._counters["vllm:e2e_request_latency_seconds_total"].increment(finished.e2e_latency)

    def _finished(self, reason: str):
        if reason not in self._by_reason:
            self._by_reason[reason] = self._success.Metric({**LABELS, "finished_reason": reason})
        return self._by_reason[reason]

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
