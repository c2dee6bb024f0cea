"""Per-request settings, parsed and checked before any model work.

The ensemble's PARAMETERS tensor carries one JSON object; an empty tensor
means defaults. Both Triton models parse it: `preprocess` uses the resolution
mode, `vllm_model` the generation settings. Unknown keys are refused so that
a misspelt setting is an error, not silently ignored. `null` means "not set",
as in OpenAI's API.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from dsocr.preprocessing import MODES

# DeepSeek's recommended no-repeat n-gram settings for OCR (their vLLM
# example): no 30-gram repeats within the last 90 tokens; table cells are
# exempt because tables legitimately repeat them.
DEFAULT_NGRAM_SIZE = 30
DEFAULT_WINDOW_SIZE = 90
NGRAM_WHITELIST_TOKENS = ("<td>", "</td>")
# The rule looks back over output tokens only: no context of any DeepSeek-OCR
# model comes near this, and vLLM refuses integers beyond 64 bits anyway.
MAX_NGRAM_TOKENS = 65536


class ParameterError(ValueError):
    pass


@dataclass(frozen=True)
class GenerationSettings:
    max_tokens: int | None = None
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    # Off by default: grounding tags (<|ref|>, <|det|>) are special tokens.
    skip_special_tokens: bool = False
    ignore_eos: bool = False
    ngram_size: int = DEFAULT_NGRAM_SIZE  # 0 turns the n-gram rule off
    window_size: int = DEFAULT_WINDOW_SIZE

    def max_tokens_for(self, prompt_tokens: int, max_model_len: int) -> int:
        """The output budget: what was asked, clamped to the context left."""
        room = max_model_len - prompt_tokens
        if room < 1:
            raise ParameterError(
                f"the prompt is {prompt_tokens} tokens, which leaves no room for output "
                f"in the context of {max_model_len} tokens"
            )
        return room if self.max_tokens is None else min(self.max_tokens, room)


@dataclass(frozen=True)
class RequestSettings:
    generation: GenerationSettings = field(default_factory=GenerationSettings)
    resolution_mode: str | None = None  # None: the family's default (gundam)
    max_crops: int | None = None


def _number(name, value, kind, low=None, high=None):
    if isinstance(value, bool) or not isinstance(value, (int, float) if kind is float else int):
        raise ParameterError(f"{name} must be {'a number' if kind is float else 'an integer'}")
    # Written so that NaN, which compares false with everything, is refused too.
    if not ((low is None or value >= low) and (high is None or value <= high)):
        raise ParameterError(f"{name} must be between {low} and {high}, got {value}")
    return kind(value)


def _stop(value) -> tuple[str, ...]:
    stop = [value] if isinstance(value, str) else value
    if not isinstance(stop, list) or not all(isinstance(s, str) and s for s in stop):
        raise ParameterError("stop must be a non-empty string or a list of them")
    return tuple(stop)


def _flag(name, value) -> bool:
    if not isinstance(value, bool):
        raise ParameterError(f"{name} must be true or false")
    return value


def _mode(value) -> str:
    if value not in MODES:
        raise ParameterError(f"resolution_mode must be one of {', '.join(MODES)}, got {value!r}")
    return value


# key -> parser; what each setting may be
_GENERATION = {
    "max_tokens": lambda v: _number("max_tokens", v, int, 1),
    "temperature": lambda v: _number("temperature", v, float, 0, 2),
    "top_p": lambda v: _number("top_p", v, float, 1e-9, 1),
    # The sampler's generator takes a 64-bit seed; a larger one fails deep in the engine.
    "seed": lambda v: _number("seed", v, int, -(2**63), 2**64 - 1),
    "stop": _stop,
    "skip_special_tokens": lambda v: _flag("skip_special_tokens", v),
    "ignore_eos": lambda v: _flag("ignore_eos", v),
    "ngram_size": lambda v: _number("ngram_size", v, int, 0, MAX_NGRAM_TOKENS),
    "window_size": lambda v: _number("window_size", v, int, 1, MAX_NGRAM_TOKENS),
}
_PREPROCESSING = {
    "resolution_mode": _mode,
    "max_crops": lambda v: _number("max_crops", v, int, 2, 9),
}


def parse_settings(raw: bytes) -> RequestSettings:
    if not raw:
        return RequestSettings()
    try:
        body = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ParameterError(f"PARAMETERS is not a JSON object: {exc}") from exc
    if not isinstance(body, dict):
        raise ParameterError("PARAMETERS must be a JSON object")
    body = {key: value for key, value in body.items() if value is not None}
    unknown = set(body) - set(_GENERATION) - set(_PREPROCESSING)
    if unknown:
        raise ParameterError(f"unknown parameter(s): {', '.join(sorted(unknown))}")
    generation = {key: parse(body[key]) for key, parse in _GENERATION.items() if key in body}
    preprocessing = {key: parse(body[key]) for key, parse in _PREPROCESSING.items() if key in body}
    return RequestSettings(GenerationSettings(**generation), **preprocessing)
