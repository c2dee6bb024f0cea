"""DeepSeek-OCR's grounded markdown -> typed layout blocks, figure boxes and clean markdown.

Asked `<|grounding|>Convert the document to markdown.`, the model writes each
block of the page as a grounding tag followed by the block's content:

    <|ref|>sub_title<|/ref|><|det|>[[117, 290, 291, 308]]<|/det|>
    ## 2. Related Works

The ref holds the block's label (`BLOCK_TYPES`), the det one or more boxes
`[x1, y1, x2, y2]` on a 0-999 scale of the page. DeepSeek's own scripts
(run_dpsk_ocr_pdf.py, run_dpsk_ocr_image.py) turn a coordinate v into the
page's pixels as int(v / 999 * W) (x) and int(v / 999 * H) (y); so do we, after
clamping v into 0..999, so that a box always lies on the page. They then crop
every box of an `image` block out of the page and put a link in its tag's
place, delete every other tag, and clean the text (`clean_markdown`); our
markdown is theirs, with figure links written the way Mistral OCR writes them:
`![img-3.jpeg](img-3.jpeg)`.

Model output is untrusted: it may be cut by max_tokens in the middle of a tag,
repeat itself, or be anything at all. Parsing never raises, never evaluates
the output (DeepSeek's scripts `eval` the boxes), and runs in linear time: the
tags are found by one regex pass and the boxes read by a second, neither of
which can backtrack. What becomes of the odd cases:

- Text before the first tag (all of it when there is no tag, as with the
  prompt "Free OCR.") is kept in the markdown but is no block: the model gave
  it no box, and we do not make one up.
- A tag whose boxes cannot be read (no det, an unclosed det, no box of exactly
  four numbers) gives no block; its content stays in the markdown.
- A tag cut at the end of the output (`<|ref|>tex`, `<|det|>[[12, 3`) is
  removed. An unclosed ref elsewhere is dropped up to the end of its line or
  the next tag; a stray det is dropped with its boxes, a stray closing marker
  on its own; the text around them stays.
- With `<|grounding|>OCR this image.` the ref holds the recognised text
  rather than a label. A ref that is no known label and is followed by no
  content is such text: it stays in the markdown and is its block's content
  (type "text"). An unknown label followed by content is a label, dropped like
  any other (DeepSeek does the same) and its block typed "text".
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

PAGE_SPLIT = "\n<--- Page Split --->\n"  # DeepSeek's separator when pages are joined

# The model's label -> Mistral OCR's block type. Seen in DeepSeek-OCR's output
# (its README's prompt, outputs of papers and specs): title, sub_title, text,
# image, image_caption, table, table_caption, table_footnote, equation.
# DeepSeek-OCR-2 merged "figure caption" and "figure title" (its paper, §4.1)
# and writes figure_title; table_title is reported for it too. The rest are
# the layout classes of DeepSeek's data sources (MinerU, OmniDocBench), not
# seen in its output: mapped so that they would land well if it ever wrote them.
BLOCK_TYPES: dict[str, str] = {
    "title": "title",
    "sub_title": "title",  # Mistral has one heading type; the level stays in the markdown (##)
    "text": "text",
    "image": "image",
    "image_caption": "caption",
    "figure_title": "caption",  # DeepSeek-OCR-2's name for a figure's caption
    "table": "table",
    "table_caption": "caption",
    "table_title": "caption",
    # The note under a table, often its numbered caption ("Table 2.1: ...");
    # Mistral has no footnote type, and this belongs to its table as a caption does.
    "table_footnote": "caption",
    "equation": "equation",
    "header": "header",
    "page_header": "header",
    "footer": "footer",
    "page_footer": "footer",
    "page_number": "footer",  # page furniture, like the footer it usually sits in
    "list": "list",
    "code": "code",
    "reference": "references",
    "references": "references",
    "aside_text": "aside_text",
    "signature": "signature",
}
_IMAGE_LABEL = "image"  # the only label DeepSeek crops out as a figure
_UNKNOWN_TYPE = "text"

_EOS = "<｜end▁of▁sentence｜>"  # DeepSeek's scripts strip it: it ends the output, it is not text
_MARKERS = ("<|ref|>", "<|/ref|>", "<|det|>", "<|/det|>")
_MARKER = re.compile(r"<\|(/?(?:ref|det))\|>")
# A det cut short has no closing marker: its boxes run as far as box syntax does.
_BOX_SYNTAX = re.compile(r"[0-9 \t,.\[\]-]*")
_BOX_TOKEN = re.compile(r"\[|\]|-?[0-9]+(?:\.[0-9]+)?")
_BLANK_LINES = re.compile(r"\n(?:[ \t]*\n){2,}")
_SCALE = 999  # the model's coordinates run 0..999


@dataclass(frozen=True)
class Box:
    """In page pixels, clamped to the page: 0 <= x1 <= x2 <= width, 0 <= y1 <= y2 <= height."""

    x1: int
    y1: int
    x2: int
    y2: int

    @property
    def width(self) -> int:
        return self.x2 - self.x1

    @property
    def height(self) -> int:
        return self.y2 - self.y1


@dataclass(frozen=True)
class Block:
    label: str  # DeepSeek's label as the model wrote it (stripped)
    type: str  # Mistral's block type (BLOCK_TYPES)
    box: Box  # the union of the tag's boxes (an image block: its figure's box)
    content: str  # the block's cleaned markdown (an image block: the link to its figure)
    image_id: str | None = None  # image blocks that were extracted as figures


@dataclass(frozen=True)
class Figure:
    id: str  # "img-3.jpeg": Mistral's naming, numbered across the document
    box: Box


@dataclass(frozen=True)
class PageLayout:
    markdown: str  # DeepSeek's cleaned markdown of the page, figure links as Mistral writes them
    blocks: list[Block]  # in reading order, the order of the output
    figures: list[Figure]


@dataclass
class _Tag:
    """One grounding tag and the text that follows it up to the next tag."""

    ref: str | None  # None: the ref was never closed, so no label can be trusted
    det: str | None = None  # None: no det, or one never closed
    content: list[str] = field(default_factory=list)


def clean_markdown(text: str) -> str:
    """DeepSeek's clean-up of the markdown, on text without tags: its two LaTeX
    colon-equals macros, which common renderers lack, as plain symbols, and
    runs of blank lines collapsed into one."""
    text = text.replace("\\coloneqq", ":=").replace("\\eqqcolon", "=:")
    return _BLANK_LINES.sub("\n\n", text)


def parse_page(
    text: str,
    width: int,
    height: int,
    *,
    first_figure: int = 0,
    figure_limit: int | None = None,
    figure_min_size: int = 0,
) -> PageLayout:
    """Parse one page of the model's output, for a page of width x height pixels.

    Every box of an `image` block is a figure, as DeepSeek crops each one, and
    an image block of its own, numbered from `first_figure` ("img-{n}.jpeg").
    A figure less than `figure_min_size` pixels wide or high (and always one
    with no area: there is nothing to crop), or beyond `figure_limit` figures,
    is not extracted: no figure, no link, no block.
    """
    leading, tags = _scan(text.replace(_EOS, ""))
    width, height = max(0, width), max(0, height)
    figures = _FigureCounter(first_figure, figure_limit, max(1, figure_min_size))
    chunks = ["".join(leading)]
    blocks: list[Block] = []
    for tag in tags:
        chunk, tag_blocks = _layout_tag(tag, width, height, figures)
        chunks.append(chunk)
        blocks.extend(tag_blocks)
    return PageLayout(markdown=_finish("".join(chunks)), blocks=blocks, figures=figures.extracted)


def _scan(text: str) -> tuple[list[str], list[_Tag]]:
    """Split the output into the text before the first tag and the tags, each
    with the text that follows it; stray and broken markers are dropped here."""
    tokens = [(m.start(), m.end(), m.group(1)) for m in _MARKER.finditer(text)]
    leading: list[str] = []
    tags: list[_Tag] = []
    pieces = leading
    cursor = i = 0
    while i < len(tokens):
        start, end, kind = tokens[i]
        pieces.append(text[cursor:start])
        following = tokens[i + 1] if i + 1 < len(tokens) else None
        if kind == "ref":
            tag = _Tag(ref=None)
            tags.append(tag)
            pieces = tag.content
            if following is not None and following[2] == "/ref":
                tag.ref = text[end : following[0]]
                cursor, i = following[1], i + 2
                if i < len(tokens) and tokens[i][2] == "det" and not text[cursor : tokens[i][0]].strip():
                    cursor, i, tag.det = _take_det(text, tokens, i)
            else:
                # Labels and recognised words sit on one line: the line's end
                # (or the next tag) ends an unclosed ref; the output's end, a cut one.
                limit = following[0] if following is not None else len(text)
                newline = text.find("\n", end, limit)
                cursor, i = (limit if newline == -1 else newline), i + 1
        elif kind == "det":  # a det with no ref to ground: its boxes are not text
            cursor, i, _ = _take_det(text, tokens, i)
        else:  # a closing marker that closes nothing
            cursor, i = end, i + 1
    pieces.append(text[cursor:])
    return leading, tags


def _take_det(text: str, tokens: list[tuple[int, int, str]], i: int) -> tuple[int, int, str | None]:
    """The det opening at tokens[i]: (where the text resumes, the next token,
    its boxes or None when it was never closed)."""
    end = tokens[i][1]
    if i + 1 < len(tokens) and tokens[i + 1][2] == "/det":
        return tokens[i + 1][1], i + 2, text[end : tokens[i + 1][0]]
    limit = tokens[i + 1][0] if i + 1 < len(tokens) else len(text)
    boxes = _BOX_SYNTAX.match(text, end, limit)
    # Unclosed, its last box may be cut short ("[[12, 3"): none of it is trusted.
    return (boxes.end() if boxes else end), i + 1, None


class _FigureCounter:
    """Numbers the figures of a page and applies the limits on them."""

    def __init__(self, first: int, limit: int | None, min_size: int) -> None:
        self.first, self.limit, self.min_size = first, limit, min_size
        self.extracted: list[Figure] = []

    def extract(self, box: Box) -> Figure | None:
        if self.limit is not None and len(self.extracted) >= self.limit:
            return None
        if box.width < self.min_size or box.height < self.min_size:
            return None
        figure = Figure(id=f"img-{self.first + len(self.extracted)}.jpeg", box=box)
        self.extracted.append(figure)
        return figure


def _layout_tag(tag: _Tag, width: int, height: int, figures: _FigureCounter) -> tuple[str, list[Block]]:
    """A tag's markdown (what replaces the tag, then its content) and its blocks."""
    content = "".join(tag.content)
    if tag.ref is None:
        return content, []
    label = tag.ref.strip()
    boxes = _read_boxes(tag.det, width, height) if tag.det is not None else []
    if label == _IMAGE_LABEL:
        return _layout_image(label, boxes, content, figures)
    if label not in BLOCK_TYPES and not content.strip():
        # The recognised text itself (`<|grounding|>OCR this image.`).
        chunk = label + (content if "\n" in content else "\n")
    else:
        chunk = content
    if not boxes:
        return chunk, []
    block_type = BLOCK_TYPES.get(label, _UNKNOWN_TYPE)
    return chunk, [Block(label=label, type=block_type, box=_union(boxes), content=_finish(chunk))]


def _layout_image(label: str, boxes: list[Box], content: str, figures: _FigureCounter) -> tuple[str, list[Block]]:
    """One figure, link and block per box; text after the tag goes with the last."""
    extracted = [figure for figure in map(figures.extract, boxes) if figure is not None]
    links = [f"![{figure.id}]({figure.id})" for figure in extracted]
    blocks = []
    for n, figure in enumerate(extracted):
        own = links[n] + ("\n" + content if n == len(extracted) - 1 else "")
        blocks.append(Block(label=label, type="image", box=figure.box, content=_finish(own), image_id=figure.id))
    chunk = "\n\n".join(links) + "\n" + content if links else content
    return chunk, blocks


def _read_boxes(det: str, width: int, height: int) -> list[Box]:
    """The boxes in a det's text: each innermost [...] of exactly four numbers
    (bare numbers count as one box when there are four). Anything else in it
    is ignored rather than fatal: the model writes it, not a person."""
    boxes: list[Box] = []
    numbers: list[float] = []
    for match in _BOX_TOKEN.finditer(det):
        token = match.group()
        if token == "[":
            numbers = []
        elif token == "]":
            if len(numbers) == 4:
                boxes.append(_to_pixels(numbers, width, height))
            numbers = []
        else:
            numbers.append(_coordinate(token))
    if len(numbers) == 4:
        boxes.append(_to_pixels(numbers, width, height))
    return boxes


def _coordinate(number: str) -> float:
    """A coordinate clamped into 0..999; never converts a huge digit string
    (int() refuses one past 4300 digits, and it would be clamped anyway)."""
    if number.startswith("-"):
        return 0.0
    whole = number.partition(".")[0].lstrip("0")
    if len(whole) > len(str(_SCALE)):
        return float(_SCALE)
    return min(float(number), float(_SCALE))


def _to_pixels(numbers: list[float], width: int, height: int) -> Box:
    """DeepSeek's scaling, int(v / 999 * W); corners ordered so x1 <= x2, y1 <= y2."""
    x1, y1, x2, y2 = (int(v / _SCALE * size) for v, size in zip(numbers, (width, height, width, height), strict=True))
    return Box(min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2))


def _union(boxes: list[Box]) -> Box:
    return Box(
        min(b.x1 for b in boxes),
        min(b.y1 for b in boxes),
        max(b.x2 for b in boxes),
        max(b.y2 for b in boxes),
    )


def _finish(text: str) -> str:
    return clean_markdown(_drop_markers(text)).strip()


def _drop_markers(text: str) -> str:
    """Removing a tag can join the text on its two sides into a new marker
    ("<|re" + tag + "f|>"); this removes those too, in one pass, as a stack
    does, so that no marker is left however they nest."""
    if not any(marker in text for marker in _MARKERS):
        return text
    kept: list[str] = []
    for char in text:
        kept.append(char)
        if char == ">":
            tail = "".join(kept[-8:])
            for marker in _MARKERS:
                if tail.endswith(marker):
                    del kept[-len(marker) :]
                    break
    return "".join(kept)
