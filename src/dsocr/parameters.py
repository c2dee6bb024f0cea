"""Per-request parameters: every name and bound declared once, parsed and checked before any model work.

The ensemble's PARAMETERS tensor carries one JSON object of them; an empty
tensor means defaults. Both Triton models parse it: `preprocess` uses the
resolution mode, `vllm_model` the generation parameters. The OpenAI and OCR
request schemas of the frontend derive their fields' bounds from `BOUNDS` and
`dsocr.families.ModeName`, so a bound changed here changes the API and its
OpenAPI schema too. Unknown keys are refused so that a misspelt parameter is
an error, not silently ignored. `null` means "not set", as in OpenAI's API.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from dsocr.errors import RequestError
from dsocr.families import MAX_CROPS_LIMIT, MIN_CROPS, MODES, ModeName

# DeepSeek's recommended no-repeat n-gram settings for OCR (their vLLM
# example): no 30-gram repeats within the last 90 tokens; table cells are
# exempt because tables legitimately repeat them.
DEFAULT_NGRAM_SIZE = 30
DEFAULT_WINDOW_SIZE = 90
NGRAM_WHITELIST_TOKENS = ("<td>", "</td>")
# The rule looks back over output tokens only: no context of any DeepSeek-OCR
# model comes near this, and vLLM refuses integers beyond 64 bits anyway.
MAX_NGRAM_TOKENS = 65536


class ParameterError(RequestError, ValueError):
    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__("invalid_parameter", message, param)


@dataclass(frozen=True)
class Bound:
    """The range of a numeric parameter: low..high, both inclusive unless low_exclusive; None: unbounded."""

    kind: type[int] | type[float]
    low: int | float | None = None
    high: int | float | None = None
    low_exclusive: bool = False

    def check(self, name: str, value: object) -> int | float:
        numeric = (int, float) if self.kind is float else (int,)
        if isinstance(value, bool) or not isinstance(value, numeric):
            raise ParameterError(f"{name} must be {'a number' if self.kind is float else 'an integer'}", name)
        # Written so that NaN, which compares false with everything, is refused too.
        above_low = self.low is None or (value > self.low if self.low_exclusive else value >= self.low)
        if not (above_low and (self.high is None or value <= self.high)):
            raise ParameterError(f"{name} must be {self.describe()}, got {value}", name)
        return self.kind(value)

    def describe(self) -> str:
        low = "" if self.low is None else f"{'above' if self.low_exclusive else 'at least'} {self.low}"
        high = "" if self.high is None else f"at most {self.high}"
        return " and ".join(part for part in (low, high) if part)


BOUNDS: dict[str, Bound] = {
    "max_tokens": Bound(int, 1),
    "temperature": Bound(float, 0, 2),
    "top_p": Bound(float, 0, 1, low_exclusive=True),
    # The sampler's generator takes a 64-bit seed; a larger one fails deep in the engine.
    "seed": Bound(int, -(2**63), 2**64 - 1),
    "ngram_size": Bound(int, 0, MAX_NGRAM_TOKENS),  # 0 turns the n-gram rule off
    "window_size": Bound(int, 1, MAX_NGRAM_TOKENS),
    # The served family's own limit is checked where the family is known (dsocr.preprocessing.modes).
    "max_crops": Bound(int, MIN_CROPS, MAX_CROPS_LIMIT),
}


@dataclass(frozen=True)
class GenerationParameters:
    max_tokens: int | None = None  # None: all the context the prompt leaves (vLLM's default)
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    # Off by default: grounding tags (<|ref|>, <|det|>) are special tokens.
    skip_special_tokens: bool = False
    ignore_eos: bool = False
    ngram_size: int = DEFAULT_NGRAM_SIZE
    window_size: int = DEFAULT_WINDOW_SIZE
    # False: the client takes the text whole, so the engine sends the first output and the last only,
    # not a response per token (the host's cost of a long answer then does not grow with its length).
    stream: bool = True


@dataclass(frozen=True)
class RequestParameters:
    generation: GenerationParameters = field(default_factory=GenerationParameters)
    resolution_mode: ModeName | None = None  # None: the family's default (gundam)
    max_crops: int | None = None


def _stop(value: object) -> tuple[str, ...]:
    stop = [value] if isinstance(value, str) else value
    if not isinstance(stop, list) or not all(isinstance(s, str) and s for s in stop):
        raise ParameterError("stop must be a non-empty string or a list of them", "stop")
    return tuple(stop)


def _flag(name: str) -> Callable[[object], bool]:
    def parse(value: object) -> bool:
        if not isinstance(value, bool):
            raise ParameterError(f"{name} must be true or false", name)
        return value

    return parse


def _mode(value: object) -> ModeName:
    for mode in MODES:
        if value == mode:
            return mode
    raise ParameterError(f"resolution_mode must be one of {', '.join(MODES)}, got {value!r}", "resolution_mode")


def _bounded(name: str) -> Callable[[object], int | float]:
    return lambda value: BOUNDS[name].check(name, value)


# key -> parser; what each parameter may be
_GENERATION: dict[str, Callable[[object], Any]] = {
    "max_tokens": _bounded("max_tokens"),
    "temperature": _bounded("temperature"),
    "top_p": _bounded("top_p"),
    "seed": _bounded("seed"),
    "stop": _stop,
    "skip_special_tokens": _flag("skip_special_tokens"),
    "ignore_eos": _flag("ignore_eos"),
    "ngram_size": _bounded("ngram_size"),
    "window_size": _bounded("window_size"),
    "stream": _flag("stream"),
}
_PREPROCESSING: dict[str, Callable[[object], Any]] = {
    "resolution_mode": _mode,
    "max_crops": _bounded("max_crops"),
}
NAMES = (*_GENERATION, *_PREPROCESSING)


def parse_parameters(raw: bytes) -> RequestParameters:
    if not raw:
        return RequestParameters()
    try:
        body = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ParameterError(f"PARAMETERS is not a JSON object: {exc}") from exc
    if not isinstance(body, dict):
        raise ParameterError("PARAMETERS must be a JSON object")
    body = {key: value for key, value in body.items() if value is not None}
    unknown = set(body) - set(NAMES)
    if unknown:
        raise ParameterError(f"unknown parameter(s): {', '.join(sorted(unknown))}")
    generation = {key: parse(body[key]) for key, parse in _GENERATION.items() if key in body}
    preprocessing = {key: parse(body[key]) for key, parse in _PREPROCESSING.items() if key in body}
    return RequestParameters(GenerationParameters(**generation), **preprocessing)
