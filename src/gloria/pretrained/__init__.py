"""Release checkpoints: safe import of the 2021 ``.ckpt`` files, the key map, conversion to safetensors,
the model registry and the release's loading API (``load_gloria`` and the image-only models).

Submodules are imported on first use, so ``import gloria.pretrained`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS: dict[str, str] = {
    "available_models": "gloria.pretrained.loading",
    "load_gloria": "gloria.pretrained.loading",
    "load_model": "gloria.pretrained.loading",
    "load_image_encoder": "gloria.pretrained.loading",
    "load_img_classification_model": "gloria.pretrained.loading",
    "load_img_segmentation_model": "gloria.pretrained.loading",
    "convert_checkpoint": "gloria.pretrained.convert",
    "read_release_checkpoint": "gloria.pretrained.release",
    "export_model": "gloria.pretrained.export",
}

__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:  # pragma: no cover
    from gloria.pretrained.convert import convert_checkpoint as convert_checkpoint
    from gloria.pretrained.export import export_model as export_model
    from gloria.pretrained.loading import available_models as available_models
    from gloria.pretrained.loading import load_gloria as load_gloria
    from gloria.pretrained.loading import load_image_encoder as load_image_encoder
    from gloria.pretrained.loading import load_img_classification_model as load_img_classification_model
    from gloria.pretrained.loading import load_img_segmentation_model as load_img_segmentation_model
    from gloria.pretrained.loading import load_model as load_model
    from gloria.pretrained.release import read_release_checkpoint as read_release_checkpoint


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'gloria.pretrained' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
