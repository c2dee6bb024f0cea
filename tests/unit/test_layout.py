"""DeepSeek-OCR's grounded output -> layout blocks, figures and markdown."""

from __future__ import annotations

import re
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dsocr.documents.layout import (
    BLOCK_TYPES,
    PAGE_SPLIT,
    Block,
    Box,
    Figure,
    PageLayout,
    clean_markdown,
    parse_page,
)

MISTRAL_TYPES = {
    "text", "title", "image", "table", "caption", "equation", "list", "code",
    "header", "footer", "aside_text", "references", "signature",
}  # fmt: skip
MARKERS = ("<|ref|>", "<|/ref|>", "<|det|>", "<|/det|>")
EOS = "<｜end▁of▁sentence｜>"

# A letter page rendered at 144 dpi, as DeepSeek's PDF script renders pages.
W, H = 1224, 1584

# Shaped like DeepSeek-OCR's output on its own paper: a tag, a newline, the
# content, then two trailing spaces and a blank line.
PAPER = (
    "<|ref|>title<|/ref|><|det|>[[205, 132, 790, 157]]<|/det|>\n"
    "# DeepSeek-OCR: Contexts Optical Compression  \n\n"
    "<|ref|>text<|/ref|><|det|>[[350, 187, 646, 203]]<|/det|>\n"
    "Haoran Wei, Yaofeng Sun, Yukun Li  \n\n"
    "<|ref|>sub_title<|/ref|><|det|>[[450, 263, 547, 283]]<|/det|>\n"
    "## Abstract  \n\n"
    "<|ref|>image<|/ref|><|det|>[[130, 583, 866, 813]]<|/det|>\n"
    "<|ref|>image_caption<|/ref|><|det|>[[115, 828, 881, 892]]<|/det|>\n"
    "<center>Figure 1 | Compression on Fox. </center>"
)
PAPER_MARKDOWN = (
    "# DeepSeek-OCR: Contexts Optical Compression  \n\n"
    "Haoran Wei, Yaofeng Sun, Yukun Li  \n\n"
    "## Abstract  \n\n"
    "![img-0.jpeg](img-0.jpeg)\n\n"
    "<center>Figure 1 | Compression on Fox. </center>"
)

SPEC = (
    "<|ref|>sub_title<|/ref|><|det|>[[115, 72, 231, 93]]<|/det|>\n"
    "## 2.2 Definitions  \n\n"
    "<|ref|>table_caption<|/ref|><|det|>[[115, 100, 500, 115]]<|/det|>\n"
    "Table 1 | Multi resolution support.  \n\n"
    "<|ref|>table<|/ref|><|det|>[[115, 120, 880, 300]]<|/det|>\n"
    "<table><tr><td>Mode</td><td>Tokens</td></tr><tr><td>Tiny</td><td>64</td></tr></table>\n\n"
    "<|ref|>table_footnote<|/ref|><|det|>[[115, 305, 333, 321]]<|/det|>\n"
    "Table 2.1:Definitions for AVRCP  \n\n"
    "<|ref|>text<|/ref|><|det|>[[115, 330, 880, 360]]<|/det|>\n"
    "The compression ratio is defined as  \n\n"
    "<|ref|>equation<|/ref|><|det|>[[352, 370, 821, 400]]<|/det|>\n"
    "\\[ r \\coloneqq \\frac{N_{text}}{N_{vision}} \\quad (1) \\]\n\n\n\n"
)
TABLE = "<table><tr><td>Mode</td><td>Tokens</td></tr><tr><td>Tiny</td><td>64</td></tr></table>"
EQUATION = "\\[ r := \\frac{N_{text}}{N_{vision}} \\quad (1) \\]"

# DeepSeek-OCR-2 names a figure's caption figure_title, and leaves a blank
# line after an image's tag.
OCR2 = (
    "<|ref|>text<|/ref|><|det|>[[273, 117, 929, 147]]<|/det|>\n"
    "all test systems, and remains the preferred method.\n\n"
    "<|ref|>image<|/ref|><|det|>[[277, 160, 925, 465]]<|/det|>\n\n\n"
    "<|ref|>figure_title<|/ref|><|det|>[[273, 475, 929, 529]]<|/det|>\n"
    "Figure 1: A Langevin Hull surrounds explicit water.\n\n"
    "<|ref|>sub_title<|/ref|><|det|>[[274, 553, 496, 568]]<|/det|>\n"
    "## Real Space Electrostatics\n\n"
)

REALISTIC = [PAPER, SPEC, OCR2]


def pixels(x1: int, y1: int, x2: int, y2: int, width: int = W, height: int = H) -> Box:
    """DeepSeek's formula, written out independently of the module."""
    return Box(int(x1 / 999 * width), int(y1 / 999 * height), int(x2 / 999 * width), int(y2 / 999 * height))


def tag(label: str, det: str = "[[100, 100, 200, 200]]") -> str:
    return f"<|ref|>{label}<|/ref|><|det|>{det}<|/det|>"


def test_a_paper_page_becomes_typed_blocks_with_boxes_and_figures() -> None:
    caption = "<center>Figure 1 | Compression on Fox. </center>"
    layout = parse_page(PAPER, W, H)
    figure = Figure(id="img-0.jpeg", box=Box(159, 924, 1061, 1289))
    assert layout == PageLayout(
        markdown=PAPER_MARKDOWN,
        blocks=[
            Block("title", "title", Box(251, 209, 967, 248), "# DeepSeek-OCR: Contexts Optical Compression"),
            Block("text", "text", Box(428, 296, 791, 321), "Haoran Wei, Yaofeng Sun, Yukun Li"),
            Block("sub_title", "title", Box(551, 417, 670, 448), "## Abstract"),
            Block("image", "image", figure.box, "![img-0.jpeg](img-0.jpeg)", image_id="img-0.jpeg"),
            Block("image_caption", "caption", Box(140, 1312, 1079, 1414), caption),
        ],
        figures=[figure],
    )
    assert [b.box for b in layout.blocks] == [
        pixels(205, 132, 790, 157),
        pixels(350, 187, 646, 203),
        pixels(450, 263, 547, 283),
        pixels(130, 583, 866, 813),
        pixels(115, 828, 881, 892),
    ]


def test_a_table_an_equation_and_their_captions() -> None:
    layout = parse_page(SPEC, W, H)
    assert [(b.label, b.type, b.content) for b in layout.blocks] == [
        ("sub_title", "title", "## 2.2 Definitions"),
        ("table_caption", "caption", "Table 1 | Multi resolution support."),
        ("table", "table", TABLE),
        ("table_footnote", "caption", "Table 2.1:Definitions for AVRCP"),
        ("text", "text", "The compression ratio is defined as"),
        ("equation", "equation", EQUATION),
    ]
    assert [b.box for b in layout.blocks] == [
        Box(140, 114, 283, 147),
        Box(140, 158, 612, 182),
        Box(140, 190, 1078, 475),
        Box(140, 483, 408, 508),
        Box(140, 523, 1078, 570),
        Box(431, 586, 1005, 634),
    ]
    assert layout.markdown == (
        "## 2.2 Definitions  \n\n"
        "Table 1 | Multi resolution support.  \n\n"
        f"{TABLE}\n\n"
        "Table 2.1:Definitions for AVRCP  \n\n"
        "The compression ratio is defined as  \n\n"
        f"{EQUATION}"
    )
    assert layout.figures == []


def test_deepseek_ocr_2_figure_titles_are_captions() -> None:
    layout = parse_page(OCR2, 1190, 1684, first_figure=4)
    assert [(b.type, b.content, b.image_id) for b in layout.blocks] == [
        ("text", "all test systems, and remains the preferred method.", None),
        ("image", "![img-4.jpeg](img-4.jpeg)", "img-4.jpeg"),
        ("caption", "Figure 1: A Langevin Hull surrounds explicit water.", None),
        ("title", "## Real Space Electrostatics", None),
    ]
    assert layout.figures == [Figure("img-4.jpeg", pixels(277, 160, 925, 465, 1190, 1684))]
    assert layout.markdown == (
        "all test systems, and remains the preferred method.\n\n"
        "![img-4.jpeg](img-4.jpeg)\n\n"
        "Figure 1: A Langevin Hull surrounds explicit water.\n\n"
        "## Real Space Electrostatics"
    )


def test_ocr_this_image_refs_hold_the_text_itself() -> None:
    output = (
        "<|ref|>Hello World<|/ref|><|det|>[[10, 20, 300, 60]]<|/det|>\n"
        "<|ref|>Total: 42 €<|/ref|><|det|>[[10, 70, 280, 110]]<|/det|>"
        "<|ref|>Thanks<|/ref|><|det|>[[10, 120, 200, 150]]<|/det|>"
    )
    layout = parse_page(output, 999, 999)
    assert [(b.label, b.type, b.content) for b in layout.blocks] == [
        ("Hello World", "text", "Hello World"),
        ("Total: 42 €", "text", "Total: 42 €"),
        ("Thanks", "text", "Thanks"),
    ]
    assert layout.markdown == "Hello World\nTotal: 42 €\nThanks"


def test_an_unknown_label_with_content_is_a_text_block_and_its_label_is_dropped() -> None:
    layout = parse_page(tag("seal") + "\nACME Corp.\n", 1000, 1000)
    assert [(b.label, b.type, b.content) for b in layout.blocks] == [("seal", "text", "ACME Corp.")]
    assert layout.markdown == "ACME Corp."


def test_every_label_maps_onto_a_mistral_block_type() -> None:
    assert set(BLOCK_TYPES.values()) <= MISTRAL_TYPES
    for label in ("title", "sub_title", "text", "image", "image_caption", "table", "table_caption",
                  "table_footnote", "equation", "figure_title"):  # fmt: skip
        assert label in BLOCK_TYPES
    layout = parse_page("".join(tag(label) + f"\n{label} body\n\n" for label in BLOCK_TYPES), 1000, 1000)
    assert [b.type for b in layout.blocks] == list(BLOCK_TYPES.values())


@pytest.mark.parametrize(
    ("coordinate", "size", "pixel"),
    [
        (0, 1224, 0),
        (1, 1224, 1),  # 1.225...
        (500, 1224, 612),  # 612.6...
        (998, 1224, 1222),  # 1222.7...
        (999, 1224, 1224),  # the page's far edge
        (500, 1000, 500),  # 500.5...
        (63, 999, 62),  # 62.99999...: the float formula, floored as DeepSeek floors it
        (-5, 1224, 0),  # clamped into 0..999 before scaling
        (1000, 1224, 1224),
        (123456789, 1224, 1224),
    ],
)
def test_coordinates_scale_as_deepseek_scales_them_clamped_to_the_page(coordinate: int, size: int, pixel: int) -> None:
    det = f"[[{coordinate}, {coordinate}, {coordinate}, {coordinate}]]"
    (block,) = parse_page(tag("text", det) + "x", size, size).blocks
    assert block.box == Box(pixel, pixel, pixel, pixel)


def test_corners_are_ordered_and_huge_or_fractional_numbers_do_not_break_the_box() -> None:
    (block,) = parse_page(tag("text", "[[800, 900, 100, 50]]") + "x", 1000, 1000).blocks
    assert block.box == pixels(100, 50, 800, 900, 1000, 1000)
    (block,) = parse_page(tag("text", f"[[{'9' * 10000}, 0.5, -{'9' * 10000}, 00000000012]]") + "x", 999, 999).blocks
    assert block.box == Box(0, 0, 999, 12)


def test_a_tag_with_several_boxes_is_one_block_over_their_union() -> None:
    (block,) = parse_page(
        tag("text", "[[100, 500, 400, 600], [50, 650, 300, 700]]") + "\ntwo columns", 1000, 2000
    ).blocks
    assert block.box == Box(50, 1001, 400, 1401)


def test_each_box_of_an_image_tag_is_a_figure_and_an_image_block() -> None:
    layout = parse_page(tag("image", "[[0, 0, 499, 499], [500, 500, 999, 999]]") + "\n", 1000, 1000, first_figure=7)
    assert layout.figures == [
        Figure("img-7.jpeg", Box(0, 0, 499, 499)),
        Figure("img-8.jpeg", Box(500, 500, 1000, 1000)),
    ]
    assert [(b.box, b.image_id, b.content) for b in layout.blocks] == [
        (Box(0, 0, 499, 499), "img-7.jpeg", "![img-7.jpeg](img-7.jpeg)"),
        (Box(500, 500, 1000, 1000), "img-8.jpeg", "![img-8.jpeg](img-8.jpeg)"),
    ]
    assert layout.markdown == "![img-7.jpeg](img-7.jpeg)\n\n![img-8.jpeg](img-8.jpeg)"


def test_figures_are_numbered_across_calls_from_first_figure() -> None:
    page = (
        tag("image", "[[0, 0, 100, 100]]") + "\n" + tag("text") + "\nbetween\n" + tag("image", "[[0, 200, 100, 300]]")
    )
    layout = parse_page(page, 1000, 1000, first_figure=3)
    assert [f.id for f in layout.figures] == ["img-3.jpeg", "img-4.jpeg"]
    assert layout.markdown == "![img-3.jpeg](img-3.jpeg)\n\nbetween\n![img-4.jpeg](img-4.jpeg)"


def test_figures_beyond_the_limit_or_below_the_minimum_size_are_not_extracted() -> None:
    small = tag("image", "[[0, 0, 20, 900]]") + "\n"  # 20 pixels wide on a 999-pixel page
    large = [tag("image", f"[[0, {y}, 500, {y + 100}]]") + "\n" for y in (0, 200, 400)]
    page = small + "".join(large) + tag("text") + "\nafter"
    layout = parse_page(page, 999, 999, first_figure=1, figure_limit=2, figure_min_size=50)
    assert [f.id for f in layout.figures] == ["img-1.jpeg", "img-2.jpeg"]
    assert [f.box.y1 for f in layout.figures] == [0, 200]
    assert [b.type for b in layout.blocks] == ["image", "image", "text"]
    assert layout.markdown == "![img-1.jpeg](img-1.jpeg)\n\n![img-2.jpeg](img-2.jpeg)\n\nafter"
    assert parse_page(page, 999, 999, figure_limit=0).figures == []
    assert len(parse_page(page, 999, 999).figures) == 4


def test_a_figure_with_no_area_is_never_extracted() -> None:
    layout = parse_page(tag("image", "[[300, 300, 300, 600]]") + "\n" + tag("text") + "\nafter", 1000, 1000)
    assert layout.figures == [] and [b.type for b in layout.blocks] == ["text"]
    assert layout.markdown == "after"


@pytest.mark.parametrize(
    "det",
    ["[[1, 2, 3]]", "[[1, 2, 3, 4, 5]]", "[]", "", "[[a, b, c, d]]", "nonsense", "[[1, 2], [3, 4]]"],
)
def test_a_block_whose_box_cannot_be_read_is_dropped_but_its_content_stays(det: str) -> None:
    page = tag("title") + "\n# Kept\n\n" + tag("text", det) + "\nStill here.\n\n" + tag("image", det) + "\ncaption text"
    layout = parse_page(page, 1000, 1000)
    assert [b.content for b in layout.blocks] == ["# Kept"]
    assert layout.markdown == "# Kept\n\nStill here.\n\ncaption text"
    assert layout.figures == []


def test_a_ref_with_no_det_is_no_block_and_its_label_is_not_text() -> None:
    # Seen in real output: "<|ref|>text<|/ref|>成为 17".
    layout = parse_page("<|ref|>text<|/ref|>成为 17  \n\n" + tag("text") + "\nnext", 1000, 1000)
    assert [b.content for b in layout.blocks] == ["next"]
    assert layout.markdown == "成为 17  \n\nnext"


def test_text_before_the_first_tag_is_markdown_but_no_block() -> None:
    layout = parse_page("Preamble line.\n\n" + tag("title") + "\n# Title", 1000, 1000)
    assert layout.markdown == "Preamble line.\n\n# Title"
    assert [b.content for b in layout.blocks] == ["# Title"]


def test_output_without_tags_is_all_markdown() -> None:
    free_ocr = "First paragraph.\n\n\n\nSecond  \nline with a \\coloneqq b.\n"
    layout = parse_page(free_ocr, 1000, 1000)
    assert layout == PageLayout(markdown="First paragraph.\n\nSecond  \nline with a := b.", blocks=[], figures=[])


def test_stray_markers_and_the_end_of_sentence_token_are_removed() -> None:
    page = "a<|/ref|>b<|/det|>c<|det|>[[1, 2, 3, 4]]<|/det|>d" + tag("text") + "\ne" + EOS
    layout = parse_page(page, 1000, 1000)
    assert layout.markdown == "abcd\ne"
    assert [b.content for b in layout.blocks] == ["e"]


def test_markers_formed_by_removing_a_tag_are_removed_too() -> None:
    layout = parse_page("x<|re<|/det|>f|>y <|r<|re" + tag("text") + "f|>ef|>z", 1000, 1000)
    assert layout.markdown == "xy z"
    assert [b.content for b in layout.blocks] == ["f|>ef|>z"]  # no marker within the block alone


@pytest.mark.parametrize(
    "cut",
    ["<|ref|>", "<|ref|>tex", "<|ref|>text", "<|ref|>text<|/ref|>", "<|ref|>text<|/ref|><|det|>",
     "<|ref|>text<|/ref|><|det|>[[12, 3", "<|ref|>text<|/ref|><|det|>[[12, 34, 56, 78]",
     "<|ref|>image<|/ref|><|det|>[[12, 34, 56, 78]]"],
)  # fmt: skip
def test_a_tag_cut_at_the_end_of_the_output_is_removed(cut: str) -> None:
    layout = parse_page(PAPER + "  \n\n" + cut, W, H)
    assert layout.markdown == PAPER_MARKDOWN
    assert len(layout.blocks) == 5 and len(layout.figures) == 1


def test_an_unclosed_ref_before_more_text_loses_its_line_only() -> None:
    layout = parse_page("<|ref|>text\nbody text\n\n" + tag("text") + "\nnext", 1000, 1000)
    assert layout.markdown == "body text\n\nnext"
    assert [b.content for b in layout.blocks] == ["next"]


def test_an_unclosed_det_keeps_the_text_after_its_boxes() -> None:
    layout = parse_page("<|ref|>text<|/ref|><|det|>[[1, 2, 3, 4]]\nbody text", 1000, 1000)
    assert layout.markdown == "body text"
    assert layout.blocks == []


@pytest.mark.parametrize("output", REALISTIC)
def test_every_prefix_of_an_output_parses_and_keeps_its_complete_blocks(output: str) -> None:
    full = parse_page(output, W, H)
    tag_starts = [m.start() for m in re.finditer(re.escape("<|ref|>"), output)]
    assert len(full.blocks) == len(tag_starts)  # one block per tag in these outputs
    ends = [*tag_starts[1:], len(output)]
    for cut in range(len(output) + 1):
        layout = parse_page(output[:cut], W, H)
        assert_well_formed(layout, W, H)
        for block, end in zip(full.blocks, ends, strict=True):
            if end <= cut:
                assert block.content in layout.markdown, (cut, block)


def test_clean_markdown_applies_deepseeks_rules() -> None:
    assert clean_markdown("a \\coloneqq b, c \\eqqcolon d") == "a := b, c =: d"
    assert clean_markdown("a\n\n\nb\n\n\n\n\nc") == "a\n\nb\n\nc"
    assert clean_markdown("a  \n \n\t\n  b") == "a  \n\n  b"  # lines of spaces are blank lines
    assert clean_markdown("a\n\nb\nc  \n") == "a\n\nb\nc  \n"


def test_page_split_is_deepseeks_separator() -> None:
    assert PAGE_SPLIT == "\n<--- Page Split --->\n"


def assert_well_formed(layout: PageLayout, width: int, height: int, first: int = 0) -> None:
    for box in [b.box for b in layout.blocks] + [f.box for f in layout.figures]:
        assert 0 <= box.x1 <= box.x2 <= width and 0 <= box.y1 <= box.y2 <= height
    for text in [layout.markdown, *(b.content for b in layout.blocks)]:
        assert not any(marker in text for marker in MARKERS)
    ids = [f.id for f in layout.figures]
    assert ids == [f"img-{first + n}.jpeg" for n in range(len(ids))]
    assert [b.image_id for b in layout.blocks if b.type == "image"] == ids
    assert all(b.image_id is None for b in layout.blocks if b.type != "image")
    assert all(b.type in MISTRAL_TYPES for b in layout.blocks)


FRAGMENTS = st.sampled_from(
    [*MARKERS, "<|", "|>", "<|re", "f|>", "<|/", "[[", "]]", "[", "]", ", ", ",", " ", "\n", "\n\n\n", "12", "999",
     "-5", "1000", "3.5", "9" * 30, "image", "text", "title", "table", "Hello", "\\coloneqq", EOS, "<table>", "é"]
)  # fmt: skip
COORDINATE = st.integers(-2000, 2000) | st.sampled_from([0, 999, 10**40])
WELL_FORMED_TAG = st.builds(
    lambda label, boxes, content: tag(label, str(boxes)) + content,
    st.sampled_from([*BLOCK_TYPES, "image", "image", "Hello"]),
    st.lists(st.lists(COORDINATE, min_size=3, max_size=5), max_size=3),
    st.sampled_from(["", "\n", "\nbody\n\n", "body"]),
)
PAGE_SIDE = st.integers(min_value=0, max_value=5000)


@settings(max_examples=300, deadline=None)
@given(st.text(), PAGE_SIDE, PAGE_SIDE)
def test_any_text_parses_into_a_well_formed_layout(text: str, width: int, height: int) -> None:
    assert_well_formed(parse_page(text, width, height), width, height)


@settings(max_examples=500, deadline=None)
@given(
    st.lists(FRAGMENTS | WELL_FORMED_TAG, max_size=60).map("".join),
    PAGE_SIDE,
    PAGE_SIDE,
    st.integers(0, 50),
    st.none() | st.integers(0, 3),
    st.integers(0, 300),
)
def test_text_built_from_tag_fragments_parses_into_a_well_formed_layout(
    text: str, width: int, height: int, first: int, limit: int | None, min_size: int
) -> None:
    layout = parse_page(text, width, height, first_figure=first, figure_limit=limit, figure_min_size=min_size)
    assert_well_formed(layout, width, height, first)
    assert limit is None or len(layout.figures) <= limit
    assert all(f.box.width >= min_size and f.box.height >= min_size for f in layout.figures)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_characters="<")))
def test_text_without_tags_survives_but_for_the_cleaning_rules(text: str) -> None:
    assert parse_page(text, 100, 100).markdown == clean_markdown(text).strip()


@pytest.mark.parametrize(
    "adversarial",
    [
        "<|ref|>" * 20000,
        "[[" * 50000,
        "<|det|>" * 15000,
        tag("image", "[[" * 50000),
        tag("text", "[" + "1, " * 30000),
        "<|ref|>image<|/ref|><|det|>" + "[[1, 2, 3, 4]], " * 6000 + "<|/det|>",
        "<|re" * 12000 + "<|/det|>" + "f|>" * 12000,
        "\n" + " " * 100000,
        "9" * 100000,
        "<|ref|>x<|/ref|>" * 6000,
    ],
)
def test_adversarial_output_parses_in_linear_time(adversarial: str) -> None:
    start = time.perf_counter()
    parse_page(adversarial, 1224, 1584)
    assert time.perf_counter() - start < 2  # a guard against quadratic blow-up, not a benchmark
