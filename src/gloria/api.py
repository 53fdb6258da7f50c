"""The release's inference API (method.md section 5): image-text similarities and zero-shot classification,
in the default batch-independent mode or, with ``legacy=True``, the release's formulas.

Shapes: N images, K texts, C classes.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from typing import Any, Literal, Protocol

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from gloria.alignment.similarity import (
    combine_default,
    combine_legacy,
    cosine_matrix,
    default_local_similarity,
    legacy_local_similarity,
    zscore,
)
from gloria.config import GloriaConfig
from gloria.types import ImageFeatures, TextFeatures

log = logging.getLogger(__name__)

SimilarityType = Literal["both", "global", "local"]
Ensemble = Literal["max", "mean", "pairs"]
TEXT_TENSOR_KEYS = ("caption_ids", "attention_mask", "token_type_ids")
DEFAULT_IMAGE_CHUNK = 64


class SimilarityModel(Protocol):
    """What the API needs of a model: its config and the two encoders (see ``gloria.model.GLoRIA``)."""

    config: GloriaConfig

    def encode_images(self, images: Tensor) -> ImageFeatures: ...

    def encode_texts(self, batch: Mapping[str, Any]) -> TextFeatures: ...


def _check_inputs(imgs: Tensor, txts: Mapping[str, Any], legacy: bool) -> None:
    if not isinstance(imgs, Tensor) or imgs.dim() != 4:
        shape = tuple(imgs.shape) if isinstance(imgs, Tensor) else type(imgs).__name__
        raise ValueError(f"imgs must be a [N, 3, H, W] tensor from model.process_img, got {shape}")
    missing = [key for key in TEXT_TENSOR_KEYS[:2] if key not in txts]
    if legacy and "cap_lens" not in txts:
        missing.append("cap_lens")
    if missing:
        raise ValueError(f"txts (from model.process_text) is missing key(s) {missing}; it has {sorted(txts)}")


def _image_chunks(
    model: SimilarityModel, imgs: Tensor, chunk_size: int
) -> Iterator[tuple[slice, ImageFeatures]]:
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    for start in range(0, imgs.shape[0], chunk_size):
        part = slice(start, start + chunk_size)
        yield part, model.encode_images(imgs[part])


def _scores(
    model: SimilarityModel, imgs: Tensor, txts: Mapping[str, Any], legacy: bool, chunk_size: int
) -> tuple[Tensor, Tensor]:
    """(global [N,K], local [N,K]) of the mode, each image encoded once, in chunks of ``chunk_size``."""
    _check_inputs(imgs, txts, legacy)
    cfg = model.config.alignment
    with torch.no_grad():
        text = model.encode_texts(txts)
        prompts = txts.get("texts")
        globals_, locals_ = [], []
        for _, image in _image_chunks(model, imgs, chunk_size):
            globals_.append(cosine_matrix(image.embedding, text.embedding).cpu())
            if legacy:
                local = legacy_local_similarity(
                    image.regions,
                    text.words,
                    list(txts["cap_lens"]),
                    prompts,
                    local_feature_scale=cfg.local_feature_scale,
                )
            else:
                local = default_local_similarity(image.regions, text.words, text.word_mask, cfg)
            locals_.append(local.cpu())
    return torch.cat(globals_), torch.cat(locals_)


def _combine(glob: Tensor, local: Tensor, similarity_type: str, legacy: bool) -> Tensor:
    if similarity_type == "global":
        return glob
    if similarity_type == "local":
        return local
    if similarity_type == "both":
        return combine_legacy(glob, local) if legacy else combine_default(glob, local)
    raise ValueError(f"similarity_type must be 'both', 'global' or 'local', got {similarity_type!r}")


def get_similarities(
    model: SimilarityModel,
    imgs: Tensor,
    txts: Mapping[str, Any],
    similarity_type: SimilarityType = "both",
    legacy: bool = False,
    *,
    chunk_size: int = DEFAULT_IMAGE_CHUNK,
) -> np.ndarray:
    """Similarity of every image to every text -> [N, K] array.

    Default: global cosine; local = the training formula (CLS + real words, logit_temperature * log-sum-exp);
    ``both`` z-scores each over the texts of one image and averages, so a row never depends on other images.
    ``legacy=True``: the release's numbers (local over slots 1..cap_lens[k], 5 * max_j R; both = (l + g) / 2).
    """
    if similarity_type not in ("both", "global", "local"):
        raise ValueError(f"similarity_type must be 'both', 'global' or 'local', got {similarity_type!r}")
    glob, local = _scores(model, imgs, txts, legacy, chunk_size)
    return _combine(glob, local, similarity_type, legacy).numpy()


def _concat_texts(cls_txt_mapping: Mapping[str, Mapping[str, Any]]) -> tuple[dict[str, Any], list[int]]:
    """All classes' prompts as one process_text dict, and the number of prompts of each class."""
    merged: dict[str, Any] = {}
    sizes = []
    for name, txts in cls_txt_mapping.items():
        if "caption_ids" not in txts:
            raise ValueError(f"prompts of class {name!r} are missing 'caption_ids'; it has {sorted(txts)}")
        sizes.append(int(txts["caption_ids"].shape[0]))
    for key in TEXT_TENSOR_KEYS:
        if all(key in txts for txts in cls_txt_mapping.values()):
            merged[key] = torch.cat([txts[key] for txts in cls_txt_mapping.values()])
    for key in ("cap_lens", "texts"):
        if all(key in txts for txts in cls_txt_mapping.values()):
            merged[key] = [item for txts in cls_txt_mapping.values() for item in txts[key]]
    return merged, sizes


def class_prompts_from_processed(
    model: SimilarityModel,
    cls_txt_mapping: Mapping[str, Mapping[str, Any]],
    negatives: Mapping[str, Mapping[str, Any]] | None = None,
) -> Any:
    """The ``process_class_prompts`` dicts (and negatives) encoded once, as a ``ClassPrompts``."""
    from gloria.tasks.embed import EncodedTexts
    from gloria.tasks.zero_shot import ClassPrompts

    names = list(cls_txt_mapping)
    unknown = sorted(set(negatives or {}) - set(names))
    if unknown:
        raise ValueError(f"negative prompts for unknown classes {unknown}; classes are {names}")
    tables = [(name, txts, False) for name, txts in cls_txt_mapping.items()]
    tables += [(name, txts, True) for name, txts in (negatives or {}).items()]
    merged, sizes = _concat_texts({f"{i}:{name}": txts for i, (name, txts, _) in enumerate(tables)})
    with torch.no_grad():
        features = model.encode_texts(merged)
    n = sum(sizes)
    owner = torch.tensor(
        [names.index(name) for (name, _, _), k in zip(tables, sizes, strict=True) for _ in range(k)]
    )
    negative = torch.tensor([neg for (_, _, neg), k in zip(tables, sizes, strict=True) for _ in range(k)])
    cap_lens = [int(c) for c in merged.get("cap_lens", [0] * n)]
    texts = list(merged.get("texts", [""] * n))
    return ClassPrompts(names, texts, EncodedTexts(features, cap_lens), owner, negative)


def zero_shot_classification(
    model: SimilarityModel,
    imgs: Tensor,
    cls_txt_mapping: Mapping[str, Mapping[str, Any]],
    legacy: bool = False,
    ensemble: Ensemble = "max",
    chunk_size: int = DEFAULT_IMAGE_CHUNK,
    negatives: Mapping[str, Mapping[str, Any]] | None = None,
) -> pd.DataFrame:
    """Class scores of every image -> DataFrame [N, C] (columns = class names, predictions = row argmax).

    The scoring is ``gloria.tasks.zero_shot`` (the one implementation, also behind ``gloria zero-shot``),
    on images encoded ``chunk_size`` at a time. Default ``max``: ``both`` over all prompts of all classes,
    z-scored over the prompts of one image, then the max over each class's prompts; an image's scores never
    depend on the other images. ``mean``: global cosine to the mean of a class's unit prompt embeddings and
    the mean local score of its prompts, each z-scored over the classes, averaged. ``pairs``: with
    ``negatives`` (the same kind of dicts per class), sigmoid(max positive - max negative).
    ``legacy=True``: per class (l + g) / 2, max over its prompts, then if N > 1 each class column z-scored
    across the images (population std), as the release did.
    """
    from gloria.tasks.zero_shot import ENSEMBLES, class_scores

    if not cls_txt_mapping:
        raise ValueError("cls_txt_mapping has no classes")
    if ensemble not in ENSEMBLES:
        raise ValueError(f"ensemble must be one of {list(ENSEMBLES)}, got {ensemble!r}")
    for txts in [*cls_txt_mapping.values(), *(negatives or {}).values()]:
        _check_inputs(imgs, txts, legacy)
    prompts = class_prompts_from_processed(model, cls_txt_mapping, negatives if ensemble == "pairs" else None)
    parts = []
    with torch.no_grad():
        for _, image in _image_chunks(model, imgs, chunk_size):
            parts.append(
                class_scores(image, prompts, model.config.alignment, ensemble=ensemble, legacy=legacy)
            )
    scores = torch.cat(parts)  # [N, C]
    if legacy and scores.shape[0] > 1:
        scores = zscore(scores, dim=0)
    log.debug(
        "zero-shot: %d images x %d classes (%d prompts)",
        scores.shape[0],
        len(prompts.class_names),
        len(prompts.texts),
    )
    return pd.DataFrame(scores.numpy(), columns=list(cls_txt_mapping.keys()))
