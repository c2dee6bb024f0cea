"""Per-request generation settings: parsed and checked before vLLM sees them.

The PARAMETERS tensor carries a JSON object; an empty tensor means defaults.
Unknown keys are refused so a misspelt setting is an error, not ignored.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

# DeepSeek's OCR outputs are long (a dense page is thousands of tokens);
# without max_tokens a request may use all the context left after the prompt.
DEFAULT_TEMPERATURE = 0.0


class ParameterError(ValueError):
    pass


@dataclass(frozen=True)
class GenerationSettings:
    max_tokens: int | None = None
    temperature: float = DEFAULT_TEMPERATURE
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    # Off by default: grounding tags (<|ref|>, <|det|>) are special tokens.
    skip_special_tokens: bool = False
    ignore_eos: bool = False

    def max_tokens_for(self, prompt_tokens: int, max_model_len: int) -> int:
        """The output budget: what was asked, clamped to the context left."""
        room = max_model_len - prompt_tokens
        if room < 1:
            raise ParameterError(
                f"the prompt is {prompt_tokens} tokens, which leaves no room for output "
                f"in the context of {max_model_len} tokens"
            )
        return room if self.max_tokens is None else min(self.max_tokens, room)


def _number(name, value, kind, low=None, high=None):
    if isinstance(value, bool) or not isinstance(value, (int, float) if kind is float else int):
        raise ParameterError(f"{name} must be {'a number' if kind is float else 'an integer'}")
    if (low is not None and value < low) or (high is not None and value > high):
        raise ParameterError(f"{name} must be between {low} and {high}, got {value}")
    return kind(value)


def parse_settings(raw: bytes) -> GenerationSettings:
    if not raw:
        return GenerationSettings()
    try:
        body = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ParameterError(f"PARAMETERS is not a JSON object: {exc}") from exc
    if not isinstance(body, dict):
        raise ParameterError("PARAMETERS must be a JSON object")
    # null means "not set", as in OpenAI's API
    body = {key: value for key, value in body.items() if value is not None}
    known = {}
    if "max_tokens" in body:
        known["max_tokens"] = _number("max_tokens", body.pop("max_tokens"), int, 1)
    if "temperature" in body:
        known["temperature"] = _number("temperature", body.pop("temperature"), float, 0, 2)
    if "top_p" in body:
        known["top_p"] = _number("top_p", body.pop("top_p"), float, 0, 1)
        if known["top_p"] == 0:
            raise ParameterError("top_p must be greater than 0")
    if "seed" in body:
        known["seed"] = _number("seed", body.pop("seed"), int)
    if "stop" in body:
        stop = body.pop("stop")
        stop = [stop] if isinstance(stop, str) else stop
        if not isinstance(stop, list) or not all(isinstance(s, str) and s for s in stop):
            raise ParameterError("stop must be a non-empty string or a list of them")
        known["stop"] = tuple(stop)
    for flag in ("skip_special_tokens", "ignore_eos"):
        if flag in body:
            value = body.pop(flag)
            if not isinstance(value, bool):
                raise ParameterError(f"{flag} must be true or false")
            known[flag] = value
    if body:
        raise ParameterError(f"unknown parameter(s): {', '.join(sorted(body))}")
    return GenerationSettings(**known)
