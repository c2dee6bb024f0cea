"""The prompt side of an image request: `<image>` placeholders and the token ids they expand to."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from .errors import PromptError

IMAGE_PLACEHOLDER = "<image>"


def check_placeholders(prompt: str, image_count: int) -> None:
    """Raise PromptError unless the prompt holds one `<image>` per image."""
    placeholders = prompt.count(IMAGE_PLACEHOLDER)
    if placeholders != image_count:
        raise PromptError(
            "placeholder_mismatch",
            f"the prompt has {placeholders} {IMAGE_PLACEHOLDER} placeholder(s) "
            f"but {image_count} image(s) were sent; put one {IMAGE_PLACEHOLDER} where each image goes",
        )


def prompt_token_ids(
    prompt: str,
    image_token_counts: Sequence[int],
    encode: Callable[[str], list[int]],
    image_token_id: int,
    bos_id: int,
) -> list[int]:
    """The prompt's token ids with each `<image>` expanded to its image's token run.

    BOS, then the text between placeholders encoded piece by piece (`encode`
    must add no special tokens), each placeholder replaced by
    image_token_counts[i] copies of image_token_id; no EOS. This is the
    layout of the reference processor's `input_ids`.
    """
    check_placeholders(prompt, len(image_token_counts))
    texts = prompt.split(IMAGE_PLACEHOLDER)
    ids = [bos_id]
    for text, count in zip(texts, image_token_counts, strict=False):  # the last text follows no image
        ids += encode(text)
        ids += [image_token_id] * count
    ids += encode(texts[-1])
    return ids
