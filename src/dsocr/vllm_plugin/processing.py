"""The multimodal processors: vLLM's own for PIL images, and already-processed
views (`dsocr.vllm_plugin.inputs`) in any resolution mode.

A dict under "image" is checked, then passed through as `DictEmbeddingItems`
(no decoding, no cropping); its `<image>` run is sized from the views' sizes
and spatial crops. Anything else takes vLLM's own path unchanged.

The dict items carry one more field, added here: the view sizes (B, T),
shared by all images of one dict. vLLM batches the encoder inputs of
consecutive items only where their shared fields are equal, so images of
different modes reach the model in separate calls and are never padded
into one tensor; nor are they batched with PIL items, which lack the field.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, ClassVar

import torch
from vllm.model_executor.models.deepseek_ocr import DeepseekOCRMultiModalProcessor, DeepseekOCRProcessingInfo
from vllm.model_executor.models.deepseek_ocr2 import DeepseekOCR2MultiModalProcessor, DeepseekOCR2ProcessingInfo
from vllm.multimodal.inputs import MultiModalFieldConfig, MultiModalKwargsItems
from vllm.multimodal.parse import DictEmbeddingItems, MultiModalDataItems, MultiModalDataParser
from vllm.multimodal.processing import PromptReplacement, PromptUpdate

from .geometry import max_image_tokens, views_token_count
from .inputs import GLOBAL_VIEWS, SPATIAL_CROPS, TILES, check_image_data

VIEW_SIZES = "dsocr_view_sizes"  # int64 [2]: (B, T)


def views_fields(views: Mapping[str, torch.Tensor]) -> dict[str, MultiModalFieldConfig]:
    """How checked image data splits into per-image items.

    The model's own fields, as its `_get_mm_fields_config` declares them for
    vLLM's processor output (a unit test holds the two equal): one global
    view and one spatial crop per image, and each image's columns * rows
    tiles (none for a (1, 1) crop); plus the shared view sizes.
    """
    crops = views[SPATIAL_CROPS]
    tiled = (crops > 1).any(dim=-1)
    tiles_per_image = torch.where(tiled, crops.prod(dim=-1), 0)
    return {
        GLOBAL_VIEWS: MultiModalFieldConfig.batched("image"),
        SPATIAL_CROPS: MultiModalFieldConfig.batched("image", keep_on_cpu=True),
        TILES: MultiModalFieldConfig.flat_from_sizes("image", tiles_per_image),
        VIEW_SIZES: MultiModalFieldConfig.shared("image", batch_size=len(crops), keep_on_cpu=True),
    }


def item_token_count(family: str, item: Mapping[str, torch.Tensor]) -> int:
    """The `<image>` tokens of one image item of checked data."""
    columns, rows = (int(side) for side in item[SPATIAL_CROPS].tolist())
    crop = (columns, rows)
    return views_token_count(family, item[GLOBAL_VIEWS].shape[-1], item[TILES].shape[-1], crop)


class ViewsDataParser(MultiModalDataParser):
    """vLLM's parser, plus image data given as a dict of views."""

    # Every view sizes the `<image>` run (its side and its tile count), so
    # none is optional, not even on an embedding-cache consumer.
    embedding_fields: ClassVar[dict[str, dict[str, str]]] = {
        "image": {GLOBAL_VIEWS: "metadata", TILES: "metadata", SPATIAL_CROPS: "metadata"}
    }

    def __init__(self, family: str, **kwargs) -> None:
        super().__init__(**kwargs)
        self.family = family

    def _parse_image_data(self, data):
        if not isinstance(data, Mapping):
            return super()._parse_image_data(data)
        mode = check_image_data(self.family, data)
        required, optional = self.embedding_field_sets("image")
        sizes = torch.tensor([mode.base_size, mode.tile_size], dtype=torch.int64)
        return DictEmbeddingItems(
            {**data, VIEW_SIZES: sizes},
            modality="image",
            required_fields=required,
            optional_fields=optional,
            fields_factory=views_fields,
        )


if TYPE_CHECKING:  # what the mixins below are mixed into
    from vllm.model_executor.models.deepseek_ocr import DeepseekOCRMultiModalProcessor as _Processor
    from vllm.model_executor.models.deepseek_ocr import DeepseekOCRProcessingInfo as _ProcessingInfo
else:
    _ProcessingInfo = _Processor = object


class ViewsProcessingInfo(_ProcessingInfo):
    """Mixed in before a DeepSeek-OCR processing info; `family` names the model family."""

    family: str

    def get_data_parser(self) -> MultiModalDataParser:
        return ViewsDataParser(
            self.family,
            expected_hidden_size=self._get_expected_hidden_size(),
            allow_missing_mm_embeddings=self.allow_missing_mm_embeddings,
        )

    def get_mm_max_tokens_per_item(self, seq_len: int, mm_counts: Mapping[str, int]) -> Mapping[str, int]:
        # vLLM's own bound comes from one Gundam dummy image; other modes and
        # taller tile grids have more tokens, and the encoder budget must fit them.
        return {"image": min(max_image_tokens(self.family), seq_len)}


class ViewsProcessor(_Processor):
    """Mixed in before a DeepSeek-OCR multimodal processor."""

    def _get_mm_fields_config(self, hf_inputs, hf_processor_mm_kwargs) -> Mapping[str, MultiModalFieldConfig]:
        if VIEW_SIZES in hf_inputs:
            return views_fields(hf_inputs)
        return super()._get_mm_fields_config(hf_inputs, hf_processor_mm_kwargs)

    def _get_prompt_updates(
        self,
        mm_items: MultiModalDataItems,
        hf_processor_mm_kwargs: Mapping[str, object],
        out_mm_kwargs: MultiModalKwargsItems,
    ) -> Sequence[PromptUpdate]:
        images = mm_items.get("image")
        if not isinstance(images, DictEmbeddingItems):
            return super()._get_prompt_updates(mm_items, hf_processor_mm_kwargs, out_mm_kwargs)
        image_token_id = self.info.get_hf_processor(**hf_processor_mm_kwargs).image_token_id
        family = self.info.family

        def image_tokens(item_idx: int) -> list[int]:
            return [image_token_id] * item_token_count(family, images.get(item_idx))

        return [PromptReplacement(modality="image", target=[image_token_id], replacement=image_tokens)]


class OCRProcessingInfo(ViewsProcessingInfo, DeepseekOCRProcessingInfo):
    family = "ocr"


class OCRProcessor(ViewsProcessor, DeepseekOCRMultiModalProcessor):
    pass


class OCR2ProcessingInfo(ViewsProcessingInfo, DeepseekOCR2ProcessingInfo):
    family = "ocr2"


class OCR2Processor(ViewsProcessor, DeepseekOCR2MultiModalProcessor):
    pass
