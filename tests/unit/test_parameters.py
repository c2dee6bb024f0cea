import json

import pytest

from dsocr.parameters import ParameterError, RequestParameters, parse_parameters


def parse(body) -> RequestParameters:
    return parse_parameters(json.dumps(body).encode())


def test_empty_means_defaults():
    settings = parse_parameters(b"")
    assert settings == RequestParameters()
    generation = settings.generation
    assert generation.temperature == 0.0 and generation.skip_special_tokens is False
    assert (generation.ngram_size, generation.window_size) == (30, 90)
    assert settings.resolution_mode is None


def test_known_settings_and_nulls():
    settings = parse(
        {
            "max_tokens": 10,
            "temperature": 0.5,
            "top_p": 0.9,
            "seed": 3,
            "stop": "END",
            "skip_special_tokens": True,
            "ignore_eos": True,
            "ngram_size": 0,
            "stream": False,
            "resolution_mode": "small",
            "max_crops": None,
        }
    )
    assert settings.generation.max_tokens == 10 and settings.generation.stop == ("END",)
    assert settings.generation.stream is False and RequestParameters().generation.stream is True
    assert settings.generation.ngram_size == 0 and settings.resolution_mode == "small"
    assert parse({"max_tokens": None, "seed": None}) == RequestParameters()


@pytest.mark.parametrize(
    "body, names",
    [
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_tokens": "9"}, "max_tokens"),
        ({"temperature": 3}, "temperature"),
        ({"top_p": 0}, "top_p"),
        ({"seed": 2**70}, "seed"),
        ({"temperature": float("nan")}, "temperature"),  # json.loads takes NaN; vLLM would refuse it late
        ({"top_p": float("nan")}, "top_p"),
        ({"ngram_size": 10**23}, "ngram_size"),  # beyond 64 bits: vLLM's own check fails outside ValueError
        ({"window_size": 2**20}, "window_size"),
        ({"stop": ["", "x"]}, "stop"),
        ({"ignore_eos": "yes"}, "ignore_eos"),
        ({"stream": 0}, "stream"),
        ({"resolution_mode": "huge"}, "resolution_mode"),
        ({"max_crops": 12}, "max_crops"),
        ({"tempreature": 1}, "tempreature"),
        ([1, 2], "JSON object"),
    ],
)
def test_bad_settings_name_the_problem(body, names):
    with pytest.raises(ParameterError, match=names):
        parse(body)


def test_not_json():
    with pytest.raises(ParameterError, match="JSON"):
        parse_parameters(b"{nope")
