"""GLoRIA for chest X-rays: the 2021 release's drop-in API.

    import gloria
    model = gloria.load_gloria("gloria_resnet50")          # or a release .ckpt, or a converted directory
    prompts = gloria.generate_chexpert_class_prompts(n=5, seed=6)
    scores = gloria.zero_shot_classification(model, model.process_img(paths, model.device),
                                             model.process_class_prompts(prompts, model.device))

Names are resolved lazily, so ``import gloria`` is cheap and has no side effects.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS: dict[str, str] = {
    "available_models": "gloria.pretrained",
    "load_gloria": "gloria.pretrained",
    "load_model": "gloria.pretrained",
    "load_img_classification_model": "gloria.pretrained",
    "load_img_segmentation_model": "gloria.pretrained",
    "generate_chexpert_class_prompts": "gloria.prompts",
    "get_similarities": "gloria.api",
    "zero_shot_classification": "gloria.api",
    "GLoRIA": "gloria.model",
    "GloriaConfig": "gloria.config",
}
_SUBMODULES = {"constants", "loss", "data", "config", "model", "api", "pretrained", "tasks", "alignment"}

__all__ = [*_EXPORTS, *sorted(_SUBMODULES), "__version__"]

if TYPE_CHECKING:  # pragma: no cover
    from gloria.api import get_similarities as get_similarities
    from gloria.api import zero_shot_classification as zero_shot_classification
    from gloria.config import GloriaConfig as GloriaConfig
    from gloria.model import GLoRIA as GLoRIA
    from gloria.pretrained import available_models as available_models
    from gloria.pretrained import load_gloria as load_gloria
    from gloria.pretrained import load_img_classification_model as load_img_classification_model
    from gloria.pretrained import load_img_segmentation_model as load_img_segmentation_model
    from gloria.pretrained import load_model as load_model
    from gloria.prompts import generate_chexpert_class_prompts as generate_chexpert_class_prompts


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    if name in _SUBMODULES:
        return importlib.import_module(f"gloria.{name}")
    raise AttributeError(f"module 'gloria' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
