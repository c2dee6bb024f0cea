"""From a request's parameters to vLLM's SamplingParams, and the streamed output.

Kept apart from the Triton model so it is tested without a server.
"""

from __future__ import annotations

from typing import Any

from vllm import SamplingParams
from vllm.sampling_params import RequestOutputKind

from dsocr.parameters import NGRAM_WHITELIST_TOKENS, GenerationParameters


def ngram_whitelist(tokenizer: Any) -> tuple[int, ...]:
    """The ids of the tokens DeepSeek's n-gram rule lets repeat (table cells)."""
    return tuple(tokenizer.convert_tokens_to_ids(token) for token in NGRAM_WHITELIST_TOKENS)


# vLLM's per-request stream interval for a request not streamed to its client: no output between the
# first and the last, which vLLM always sends at once.
UNSTREAMED_INTERVAL = 2**31 - 1


def sampling_params(parameters: GenerationParameters, whitelist: tuple[int, ...]) -> SamplingParams:
    """Greedy by default, deltas streamed (only the first and the last for a request not streamed to its
    client), special tokens kept (grounding tags).

    max_tokens unset is all the context the prompt leaves, and a larger one
    ends at the context's end with "length": vLLM counts the prompt (its
    image run included) once, as it schedules it.
    """
    extra_args = None
    if parameters.ngram_size:
        extra_args = {
            "ngram_size": parameters.ngram_size,
            "window_size": parameters.window_size,
            "whitelist_token_ids": list(whitelist),
        }
    return SamplingParams(
        max_tokens=parameters.max_tokens,
        temperature=parameters.temperature,
        top_p=parameters.top_p,
        seed=parameters.seed,
        stop=list(parameters.stop),
        skip_special_tokens=parameters.skip_special_tokens,
        ignore_eos=parameters.ignore_eos,
        extra_args=extra_args,
        output_kind=RequestOutputKind.DELTA,
        stream_interval=None if parameters.stream else UNSTREAMED_INTERVAL,
    )


class CompletionCounter:
    """Running token counts of one streamed request (outputs come as deltas; the
    prompt's length, image run included, comes with the engine's outputs)."""

    def __init__(self) -> None:
        self.prompt_tokens = 0
        self.completion_tokens = 0

    def add(self, output) -> None:
        if output.prompt_token_ids:
            self.prompt_tokens = len(output.prompt_token_ids)
        self.completion_tokens += len(output.outputs[0].token_ids)


# vLLM's finish reasons -> the model's. "abort" is a CANCEL's doing;
# "repetition" (vLLM's repetition detection, not used here) ends like a stop.
# vLLM's "error" is a failed request, not a way to finish: it has to be an error.
FINISH_REASONS = {"stop": "stop", "length": "length", "abort": "cancelled", "repetition": "stop"}


class GenerationFailed(RuntimeError):
    pass


def finish_reason(reason: str | None) -> str | None:
    if reason is None:
        return None
    if reason not in FINISH_REASONS:
        raise GenerationFailed(f"the engine ended the request with {reason!r}")
    return FINISH_REASONS[reason]
