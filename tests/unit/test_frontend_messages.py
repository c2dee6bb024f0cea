"""Chat messages -> the images and documents to OCR and DeepSeek's prompt; data URLs -> bytes."""

from __future__ import annotations

import base64

import pytest

from openai_frontend.errors import BadRequest
from openai_frontend.messages import DEFAULT_PROMPT, to_ocr_request
from openai_frontend.schemas import ChatCompletionRequest
from openai_frontend.sources import Loaded, Source, decode_data_url, decoded_size

PNG_URL = "data:image/png;base64," + base64.b64encode(b"\x89PNG image bytes").decode()


def request(*messages, **fields) -> ChatCompletionRequest:
    return ChatCompletionRequest.model_validate({"model": "deepseek-ocr", "messages": list(messages), **fields})


def image(url: str = PNG_URL) -> dict:
    return {"type": "image_url", "image_url": {"url": url}}


def text(value: str) -> dict:
    return {"type": "text", "text": value}


def test_image_before_or_after_the_text_gives_the_same_prompt():
    before = to_ocr_request(request({"role": "user", "content": [image(), text("Free OCR.")]}))
    after = to_ocr_request(request({"role": "user", "content": [text("Free OCR."), image()]}))
    assert before.prompt == after.prompt == "<image>\nFree OCR."
    assert before.sources == [Source(url=PNG_URL, param="messages[0].content[0].image_url.url")]
    assert after.sources == [Source(url=PNG_URL, param="messages[0].content[1].image_url.url")]
    assert before.single_image


def test_texts_of_system_and_user_messages_join_in_order_and_assistant_turns_are_skipped():
    ocr = to_ocr_request(
        request(
            {"role": "system", "content": "Parse the figure."},
            {"role": "assistant", "content": "earlier answer"},
            {"role": "user", "content": [text("  Free OCR.  "), image(), text("   ")]},
        )
    )
    assert ocr.prompt == "<image>\nParse the figure.\nFree OCR."


def test_an_image_alone_gets_the_default_document_prompt():
    assert to_ocr_request(request({"role": "user", "content": [image()]})).prompt == f"<image>\n{DEFAULT_PROMPT}"


def test_an_image_or_a_file_is_required():
    with pytest.raises(BadRequest, match="an image or a file is required") as error:
        to_ocr_request(request({"role": "user", "content": "just text"}))
    assert error.value.code == "image_count"


def test_images_and_files_in_several_messages_are_sources_in_order():
    pdf = "data:application/pdf;base64," + base64.b64encode(b"%PDF-1.7").decode()
    ocr = to_ocr_request(
        request(
            {"role": "user", "content": [image(), {"type": "file", "file": {"file_data": pdf, "filename": "a.pdf"}}]},
            {"role": "user", "content": [image()]},
        )
    )
    assert [(s.kind, s.param) for s in ocr.sources] == [
        ("image", "messages[0].content[0].image_url.url"),
        ("document", "messages[0].content[1].file.file_data"),
        ("image", "messages[1].content[0].image_url.url"),
    ]
    assert not ocr.single_image


@pytest.mark.parametrize(
    "file, param, code",
    [
        ({"file_id": "file-123"}, "messages[0].content[0].file.file_id", "unsupported_parameter"),
        ({"file_data": "JVBERi0xLjc="}, "messages[0].content[0].file.file_data", "invalid_document_url"),
        ({}, "messages[0].content[0].file.file_data", "invalid_document_url"),
    ],
)
def test_files_by_id_or_without_a_data_url_are_refused_naming_the_field(file, param, code):
    with pytest.raises(BadRequest) as error:
        to_ocr_request(request({"role": "user", "content": [{"type": "file", "file": file}]}))
    assert (error.value.param, error.value.code) == (param, code)


def test_placeholder_in_text_is_refused():
    with pytest.raises(BadRequest, match="<image>") as error:
        to_ocr_request(request({"role": "user", "content": [image(), text("<image>\nFree OCR.")]}))
    assert error.value.param == "messages[0].content[1]"


def test_image_outside_a_user_message_is_refused():
    with pytest.raises(BadRequest, match="user messages") as error:
        to_ocr_request(request({"role": "system", "content": [image()]}))
    assert (error.value.param, error.value.code) == ("messages[0].content[0]", "misplaced_image")


def test_image_url_scheme_must_be_data_or_http():
    with pytest.raises(BadRequest, match="data: URL or an http") as error:
        to_ocr_request(request({"role": "user", "content": [image("file:///etc/passwd")]}))
    assert error.value.param == "messages[0].content[0].image_url.url"


def test_data_url_decodes_to_the_image_bytes():
    source = Source(url=PNG_URL, param="p")
    assert decode_data_url(source, max_bytes=1000) == Loaded(b"\x89PNG image bytes", "image/png")


@pytest.mark.parametrize(
    "url, match",
    [
        ("data:image/png,rawbytes", "must be base64"),
        ("data:image/png;base64,***", "not valid base64"),
    ],
)
def test_bad_data_urls_are_named(url, match):
    with pytest.raises(BadRequest, match=match) as error:
        decode_data_url(Source(url=url, param="messages[0].content[0].image_url.url"), max_bytes=1000)
    assert error.value.param == "messages[0].content[0].image_url.url"


def test_oversized_data_url_is_refused_from_its_length():
    data = base64.b64encode(bytes(101)).decode()
    assert decoded_size(data) == 101
    with pytest.raises(BadRequest, match="larger than 100 bytes") as error:
        decode_data_url(Source(url=f"data:image/png;base64,{data}", param="p"), max_bytes=100)
    assert error.value.code == "image_too_large"


@pytest.mark.parametrize("size", range(0, 7))
def test_decoded_size_is_exact(size):
    assert decoded_size(base64.b64encode(bytes(size)).decode()) == size


def test_parameters_carry_only_what_was_set_under_the_ensembles_names():
    body = request(
        {"role": "user", "content": [image()]},
        max_completion_tokens=7,
        temperature=0,
        resolution_mode="small",
        ignore_eos=True,
    )
    assert body.parameters() == {
        "max_tokens": 7,
        "temperature": 0,
        "resolution_mode": "small",
        "ignore_eos": True,
        "stream": False,
    }
