"""The plugin's multimodal processor and model hooks, without an engine.

The processor is the one vLLM builds for each tiny model with the plugin
registered: image data of every mode gets the prompt our preprocessing
predicts, a PIL image still gets vLLM's own, and items of different view
sizes (or of the two paths) are never batched into one encoder call.
"""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from dsocr import paths
from dsocr.preprocessing import image_views, resolution_mode
from dsocr.preprocessing.normalize import normalize
from dsocr.tiny_models import FAMILIES, IMAGE_TOKEN, build_tiny_model
from dsocr.vllm_plugin import ENGINE_ARGS, image_data, register
from dsocr.vllm_plugin.geometry import family_modes
from tests.helpers import expected_prompt_ids

PROMPT = f"{IMAGE_TOKEN}\nFree OCR."
# (width, height): no tiles in any mode; 2 x 3, 1 x 2 and 9 x 1 Gundam grids.
SIZES = [(320, 240), (1000, 1400), (700, 1400), (9000, 1000)]


@pytest.fixture(scope="module", params=FAMILIES)
def processor(request):
    from vllm.config import ModelConfig
    from vllm.multimodal import MULTIMODAL_REGISTRY

    register()
    model_dir = build_tiny_model(paths.tiny_model_dir(request.param), request.param)
    config = ModelConfig(model=str(model_dir), limit_mm_per_prompt={"image": 1}, **ENGINE_ARGS)
    return request.param, MULTIMODAL_REGISTRY.create_processor(config)


def process(processor, image) -> dict:
    """The processor's output for PROMPT with one image (PIL or image data)."""
    from vllm.multimodal.processing import ProcessorInputs
    from vllm.multimodal.processing.context import TimingContext

    prompt_ids = processor.info.get_tokenizer().encode(PROMPT)
    items = processor.info.parse_mm_data({"image": image})
    return processor.apply(ProcessorInputs(prompt_ids, items), TimingContext())


def page(size: tuple[int, int]) -> Image.Image:
    return Image.effect_noise(size, 64).convert("RGB")


def test_the_plugin_classes_serve_both_architectures(processor):
    family, built = processor
    assert type(built).__module__ == "dsocr.vllm_plugin.processing"
    assert built.info.family == family


def test_image_data_of_every_mode_gets_the_predicted_prompt(processor):
    family, built = processor
    for size in SIZES:
        image = page(size)
        for mode in family_modes(family):
            views = image_views(image, mode)
            output = process(built, image_data(views))
            assert output["prompt_token_ids"] == expected_prompt_ids(
                built.info.get_tokenizer(), PROMPT, views.num_image_tokens
            ), (mode, size)


def test_a_pil_image_gets_the_prompt_of_its_gundam_views(processor):
    family, built = processor
    for size in SIZES[:3]:  # vLLM's own processor stops at 6 tiles
        image = page(size)
        ours = process(built, image_data(image_views(image, resolution_mode(family, "gundam"))))
        theirs = process(built, image)
        assert ours["prompt_token_ids"] == theirs["prompt_token_ids"], size


def test_image_data_keeps_the_model_fields(processor):
    """The model's own fields, uint8 instead of float; plus the shared view sizes."""
    family, built = processor
    image = page(SIZES[1])
    [ours] = process(built, image_data(image_views(image, resolution_mode(family, "gundam"))))["mm_kwargs"]["image"]
    [theirs] = process(built, image)["mm_kwargs"]["image"]
    assert set(ours) == set(theirs) | {"dsocr_view_sizes"}
    for key, elem in theirs.items():
        assert type(ours[key].field) is type(elem.field), key
        assert ours[key].field.keep_on_cpu == elem.field.keep_on_cpu, key
        assert ours[key].data.shape == elem.data.shape, key
    assert ours["pixel_values"].data.dtype == ours["images_crop"].data.dtype == torch.uint8
    assert theirs["pixel_values"].data.is_floating_point() and theirs["images_crop"].data.is_floating_point()


def test_only_items_of_one_view_size_and_path_are_batched(processor):
    from vllm.multimodal.utils import group_and_batch_mm_items

    family, built = processor
    image = page(SIZES[1])

    def item(data):
        [kwargs] = process(built, data)["mm_kwargs"]["image"]
        return kwargs

    gundam = item(image_data(image_views(image, resolution_mode(family, "gundam"))))
    base = item(image_data(image_views(image, resolution_mode(family, "base"))))
    pil = item(image)
    groups = [count for count, _ in group_and_batch_mm_items([base, gundam, gundam, pil, pil, base, base])]
    assert groups == [1, 2, 2, 2]


def test_uint8_views_are_normalised_in_the_model_and_float_views_pass():
    from dsocr.vllm_plugin.models import encoder_pixels

    pixels = torch.randint(0, 256, (2, 3, 8, 8), dtype=torch.uint8)
    assert torch.equal(encoder_pixels(pixels, torch.bfloat16), normalize(pixels).to(torch.bfloat16))
    views = torch.randn(2, 3, 8, 8, dtype=torch.bfloat16)
    assert encoder_pixels(views, torch.bfloat16) is views
