"""From a request's settings to vLLM's SamplingParams, and the streamed output.

Kept apart from the Triton model so it is tested without a server.
"""

from __future__ import annotations

from dataclasses import dataclass

from vllm import SamplingParams
from vllm.sampling_params import RequestOutputKind

from dsocr.preprocessing import prompt_token_ids
from dsocr.settings import NGRAM_WHITELIST_TOKENS, GenerationSettings


@dataclass(frozen=True)
class PromptTokens:
    """What the engine needs to know of the tokenizer, read once."""

    encode: object  # str -> list[int], no special tokens
    image_token_id: int
    bos_id: int
    ngram_whitelist: tuple[int, ...]

    @classmethod
    def from_tokenizer(cls, tokenizer) -> PromptTokens:
        return cls(
            encode=lambda text: tokenizer.encode(text, add_special_tokens=False),
            image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
            bos_id=tokenizer.bos_token_id,
            ngram_whitelist=tuple(tokenizer.convert_tokens_to_ids(t) for t in NGRAM_WHITELIST_TOKENS),
        )

    def count(self, prompt: str, num_image_tokens: int) -> int:
        """The prompt's length once its image is expanded, as the engine will see it."""
        return len(prompt_token_ids(prompt, [num_image_tokens], self.encode, self.image_token_id, self.bos_id))


def sampling_params(settings: GenerationSettings, max_tokens: int, tokens: PromptTokens) -> SamplingParams:
    """Greedy by default, deltas streamed, special tokens kept (grounding tags)."""
    extra_args = None
    if settings.ngram_size:
        extra_args = {
            "ngram_size": settings.ngram_size,
            "window_size": settings.window_size,
            "whitelist_token_ids": list(tokens.ngram_whitelist),
        }
    return SamplingParams(
        max_tokens=max_tokens,
        temperature=settings.temperature,
        top_p=settings.top_p,
        seed=settings.seed,
        stop=list(settings.stop),
        skip_special_tokens=settings.skip_special_tokens,
        ignore_eos=settings.ignore_eos,
        extra_args=extra_args,
        output_kind=RequestOutputKind.DELTA,
    )


class CompletionCounter:
    """Running token counts of one streamed request (outputs come as deltas)."""

    def __init__(self, prompt_tokens: int):
        self.prompt_tokens = prompt_tokens
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
