"""Which pages of a document to OCR: Mistral OCR's `pages` field.

    select_pages(None, 5)       -> [0, 1, 2, 3, 4]
    select_pages([3, 0], 5)     -> [0, 3]
    select_pages("0, 2-4", 5)   -> [0, 2, 3, 4]

Indices are 0-based, ranges inclusive. The selection is checked as ranges
(bounds, then overlaps) before any list is built, so "0-999999999" costs no
more than "0-1".
"""

from __future__ import annotations

import re
from itertools import pairwise

from .errors import DocumentError

# One item of the string form: a page or an inclusive range, ASCII digits only
# (int() would also take other scripts' digits).
_ITEM = re.compile(r"([0-9]+)(?:\s*-\s*([0-9]+))?")
# More digits than this is out of range for any document, and int() of a
# very long digit string is slow (Python even refuses beyond 4300 digits).
_MAX_DIGITS = 18

PageRange = tuple[int, int]  # first, last (inclusive)


def select_pages(pages: str | list[int] | None, page_count: int) -> list[int]:
    """The selected 0-based page indices, ascending.

    pages: None (every page), a list of indices in any order, or a string of
    comma-separated indices and inclusive ranges ("0,2-4"). Raises
    DocumentError("invalid_pages", param "pages") for an index out of range,
    a negative or non-integer index, a malformed string, an empty selection,
    and a page selected twice.
    """
    if pages is None:
        return list(range(page_count))
    ranges = _parse(pages, page_count)
    if not ranges:
        raise _invalid("pages selects no page; omit it to select every page")
    for first, last in ranges:
        _check_in_range(first, last, page_count)
    ranges.sort()
    _check_no_overlap(ranges)
    return [index for first, last in ranges for index in range(first, last + 1)]


def _parse(pages: object, page_count: int) -> list[PageRange]:
    if isinstance(pages, str):
        if not pages.strip():
            raise _invalid("pages is an empty string; omit it to select every page")
        items = pages.split(",")
        if any(not item.strip() for item in items):
            raise _invalid(f"malformed page selection {_quote(pages)}: an empty item (a comma too many)")
        return [_parse_item(item, page_count) for item in items]
    if isinstance(pages, list):
        return [(index, index) for index in map(_list_index, pages)]
    raise _invalid(f"pages must be a list of page indices or a string such as '0,2-4', not {type(pages).__name__}")


def _parse_item(item: str, page_count: int) -> PageRange:
    item = item.strip()
    match = _ITEM.fullmatch(item)
    if match is None:
        raise _invalid(f"malformed page selection {_quote(item)}: expected an index ('3') or a range ('2-5')")
    first = _number(match[1], page_count)
    last = first if match[2] is None else _number(match[2], page_count)
    if last < first:
        raise _invalid(f"malformed page range {_quote(item)}: its end is before its start")
    return first, last


def _number(digits: str, page_count: int) -> int:
    if len(digits) > _MAX_DIGITS:
        raise _out_of_range(f"{digits[:_MAX_DIGITS]}…", page_count)
    return int(digits)


def _list_index(value: object) -> int:
    # bool is an int subclass, but true/false is no page number.
    if not isinstance(value, int) or isinstance(value, bool):
        raise _invalid(f"page indices must be integers, not {value!r}")
    if value < 0:
        raise _invalid(f"page index {value} is negative; indices start at 0")
    return value


def _check_in_range(first: int, last: int, page_count: int) -> None:
    if last >= page_count:
        raise _out_of_range(str(first if first >= page_count else last), page_count)


def _out_of_range(index: str, page_count: int) -> DocumentError:
    valid = f"indices 0 to {page_count - 1}" if page_count else "no index is valid"
    return _invalid(f"page index {index} is out of range: the document has {page_count} page(s), {valid}")


def _check_no_overlap(ranges: list[PageRange]) -> None:
    """`ranges` sorted by start: each must begin after the previous one ends."""
    for (_, previous_last), (first, _) in pairwise(ranges):
        if first <= previous_last:
            raise _invalid(f"page index {first} is selected more than once")


def _quote(text: str) -> str:
    """The client's text, quoted, short enough for an error message."""
    return repr(text if len(text) <= 40 else f"{text[:40]}…")


def _invalid(message: str) -> DocumentError:
    return DocumentError("invalid_pages", message, param="pages")
