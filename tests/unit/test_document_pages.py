"""Mistral OCR's `pages` field: None, a list of 0-based indices, or "0,2-4"."""

from __future__ import annotations

import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dsocr.documents.errors import DocumentError
from dsocr.documents.pages import select_pages
from dsocr.errors import RequestError


@pytest.mark.parametrize(
    ("pages", "page_count", "expected"),
    [
        (None, 3, [0, 1, 2]),
        ([0], 1, [0]),
        ([3, 0, 1], 5, [0, 1, 3]),
        ("0", 1, [0]),
        ("0,2-4", 5, [0, 2, 3, 4]),
        ("0-5", 6, [0, 1, 2, 3, 4, 5]),
        (" 4 , 0 - 1 ,2", 5, [0, 1, 2, 4]),
        ("3-3", 4, [3]),
        ("007", 8, [7]),
    ],
    ids=str,
)
def test_selects_pages_in_document_order(pages, page_count, expected):
    assert select_pages(pages, page_count) == expected


@pytest.mark.parametrize(
    ("pages", "message"),
    [
        ([5], r"page index 5 is out of range: the document has 5 page\(s\), indices 0 to 4"),
        ("2-5", "page index 5 is out of range"),
        ("7-9", "page index 7 is out of range"),
        ("0-999999999", "page index 999999999 is out of range"),
        ("9" * 5000, "is out of range"),
        ([-1], "page index -1 is negative"),
        ([True], "integers, not True"),
        ([1.0], "integers, not 1.0"),
        (["1"], "integers, not '1'"),
        ("x", "malformed page selection 'x'"),
        ("1-", "malformed page selection '1-'"),
        ("-3", "malformed page selection '-3'"),
        ("1.5", "malformed"),
        ("3-1", "its end is before its start"),
        ("", "empty string"),
        ("  ", "empty string"),
        ("1,,2", "an empty item"),
        ("1,", "an empty item"),
        ("١", "malformed"),  # a digit, but not an ASCII one
        ([0, 0], "page index 0 is selected more than once"),
        ([2, 1, 2], "page index 2 is selected more than once"),
        ("1,0-2", "page index 1 is selected more than once"),
        ("0-2,2-4", "page index 2 is selected more than once"),
        ([], "selects no page"),
        (3, "must be a list of page indices or a string"),
        ({"0": 1}, "must be a list"),
    ],
    ids=repr,
)
def test_refuses_bad_selections(pages, message):
    with pytest.raises(DocumentError, match=message) as error:
        select_pages(pages, 5)
    assert error.value.code == "invalid_pages"
    assert error.value.param == "pages"
    assert isinstance(error.value, RequestError)


def test_a_long_item_is_quoted_short():
    with pytest.raises(DocumentError) as error:
        select_pages("x" * 10_000, 5)
    assert len(error.value.message) < 200


def test_huge_ranges_are_refused_before_any_list_is_built():
    started = time.perf_counter()
    for pages in ("0-999999999999", "0-999999999999,0-999999999999", ",".join(["0-999999999"] * 1000)):
        with pytest.raises(DocumentError, match="out of range"):
            select_pages(pages, 1000)
    assert time.perf_counter() - started < 0.5


def test_overlaps_of_huge_valid_ranges_are_found_without_building_them():
    started = time.perf_counter()
    with pytest.raises(DocumentError, match="page index 5 is selected more than once"):
        select_pages("0-9999999,5-9999999", 10**7)
    assert time.perf_counter() - started < 0.5


def _as_ranges(indices: list[int]) -> str:
    """The shortest range string for a set of indices: [0, 1, 2, 5] -> "0-2,5"."""
    items, start = [], None
    for position, index in enumerate(indices):
        if start is None:
            start = index
        if position + 1 == len(indices) or indices[position + 1] != index + 1:
            items.append(str(start) if start == index else f"{start}-{index}")
            start = None
    return ",".join(items)


@given(st.data())
def test_string_and_list_forms_select_the_same_pages(data):
    page_count = data.draw(st.integers(1, 60))
    chosen = sorted(data.draw(st.sets(st.integers(0, page_count - 1), min_size=1)))
    shuffled = data.draw(st.permutations(chosen))
    ranges = _as_ranges(chosen).split(",")
    spaced = ",".join(f" {item} " for item in data.draw(st.permutations(ranges)))
    assert select_pages(list(shuffled), page_count) == chosen
    assert select_pages(spaced, page_count) == chosen


@given(st.integers(1, 30), st.lists(st.integers(0, 29), min_size=1))
def test_a_list_selects_each_page_once_or_is_refused(page_count, indices):
    if len(set(indices)) < len(indices) or max(indices) >= page_count:
        with pytest.raises(DocumentError):
            select_pages(indices, page_count)
    else:
        assert select_pages(indices, page_count) == sorted(indices)
