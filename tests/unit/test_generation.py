"""From a request's parameters to vLLM's SamplingParams, the token counts, and finish reasons."""

from types import SimpleNamespace

import pytest
from vllm.sampling_params import RequestOutputKind

from dsocr.parameters import GenerationParameters
from dsocr.triton.generation import (
    UNSTREAMED_INTERVAL,
    CompletionCounter,
    GenerationFailed,
    finish_reason,
    sampling_params,
)

WHITELIST = (128, 129)


def test_every_setting_reaches_the_sampling_parameters():
    parameters = GenerationParameters(
        max_tokens=123,
        temperature=0.7,
        top_p=0.9,
        seed=11,
        stop=("END", "</doc>"),
        skip_special_tokens=True,
        ignore_eos=True,
        ngram_size=20,
        window_size=50,
    )
    params = sampling_params(parameters, WHITELIST)
    assert (params.max_tokens, params.temperature, params.top_p, params.seed) == (123, 0.7, 0.9, 11)
    assert params.stop == ["END", "</doc>"] and params.skip_special_tokens and params.ignore_eos
    assert params.extra_args == {"ngram_size": 20, "window_size": 50, "whitelist_token_ids": [128, 129]}
    assert params.output_kind == RequestOutputKind.DELTA  # the model streams deltas
    assert params.stream_interval is None  # every step's, at the engine's interval


def test_a_request_not_streamed_to_its_client_gets_its_first_and_last_outputs_only():
    params = sampling_params(GenerationParameters(stream=False), WHITELIST)
    assert params.output_kind == RequestOutputKind.DELTA and params.stream_interval == UNSTREAMED_INTERVAL


def test_defaults_are_greedy_keep_special_tokens_and_apply_deepseeks_ngram_rule():
    params = sampling_params(GenerationParameters(), WHITELIST)
    assert params.max_tokens is None  # vLLM's: what the context leaves after the prompt
    assert params.temperature == 0 and not params.skip_special_tokens and not params.ignore_eos
    assert params.extra_args["ngram_size"] == 30 and params.extra_args["window_size"] == 90


def test_ngram_size_zero_turns_the_rule_off():
    assert sampling_params(GenerationParameters(ngram_size=0), WHITELIST).extra_args is None


def test_completion_counter_adds_deltas_and_takes_the_engines_prompt_length():
    counter = CompletionCounter()
    counter.add(SimpleNamespace(prompt_token_ids=list(range(106)), outputs=[SimpleNamespace(token_ids=[1, 2])]))
    counter.add(SimpleNamespace(prompt_token_ids=None, outputs=[SimpleNamespace(token_ids=[3])]))
    assert (counter.prompt_tokens, counter.completion_tokens) == (106, 3)


@pytest.mark.parametrize(
    "reason, ours",
    [(None, None), ("stop", "stop"), ("length", "length"), ("abort", "cancelled"), ("repetition", "stop")],
)
def test_finish_reasons(reason, ours):
    assert finish_reason(reason) == ours


def test_an_engine_error_is_a_failure_not_a_finish():
    with pytest.raises(GenerationFailed, match="'error'"):
        finish_reason("error")
