"""The segmentation model of method.md section 9: a segmentation_models_pytorch U-Net whose encoder is the
GLoRIA image trunk (torchvision names map one-to-one onto smp's ResNet/DenseNet encoders).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from torch import Tensor, nn

from gloria.config import Backbone
from gloria.encoders.image import BACKBONES
from gloria.tasks.classifier import image_encoder_of

log = logging.getLogger(__name__)

# prefixes a trunk state dict may carry: a release checkpoint, our GLoRIA model, an ImageEncoder
TRUNK_PREFIXES = ("gloria.img_encoder.model.", "img_encoder.model.", "model.")
# the classification head is not part of smp's encoders
HEAD_PREFIXES = ("fc.", "classifier.")


def trunk_state(source: nn.Module | Mapping[str, Tensor]) -> tuple[dict[str, Tensor], Backbone | None]:
    """Torchvision-named trunk weights (and the backbone when known) from a model or a state dict."""
    if isinstance(source, nn.Module):
        encoder = image_encoder_of(source)
        return dict(encoder.model.state_dict()), encoder.backbone
    if not isinstance(source, Mapping):
        raise ValueError(
            f"expected an ImageEncoder, a GLoRIA model or a state dict, got {type(source).__name__}"
        )
    for prefix in TRUNK_PREFIXES:
        picked = {k[len(prefix) :]: v for k, v in source.items() if k.startswith(prefix)}
        if picked:
            return picked, None
    return dict(source), None


def build_unet(
    image_encoder_state: nn.Module | Mapping[str, Tensor] | None,
    backbone: Backbone | None = None,
    *,
    classes: int = 1,
) -> Any:
    """``smp.Unet(backbone, encoder_weights=None, classes=1)`` with the GLoRIA trunk's weights in its encoder.

    ``image_encoder_state`` is an ``ImageEncoder``, a GLoRIA model, a state dict (trunk keys with or without
    the ``img_encoder.model.`` / ``gloria.`` prefixes) or ``None`` (random encoder). Missing or unexpected
    encoder keys raise ``ValueError`` listing them.
    """
    import segmentation_models_pytorch as smp

    state: dict[str, Tensor] | None = None
    known: Backbone | None = None
    if image_encoder_state is not None:
        state, known = trunk_state(image_encoder_state)
    if backbone is None:
        backbone = known
    if backbone is None:
        raise ValueError("build_unet needs the backbone name when given a bare state dict")
    if known is not None and backbone != known:
        raise ValueError(f"backbone {backbone!r} differs from the encoder's {known!r}")
    if backbone not in BACKBONES:
        raise ValueError(f"unknown backbone {backbone!r}; choose one of {list(BACKBONES)}")
    unet = smp.Unet(backbone, encoder_weights=None, classes=classes)
    if state is None:
        return unet
    state = {k: v for k, v in state.items() if not k.startswith(HEAD_PREFIXES)}
    from gloria.pretrained.keymap import load_state_strict

    load_state_strict(unet.encoder, state, "the GLoRIA trunk weights", f"smp {backbone} encoder")
    log.info("U-Net encoder (%s) initialised from %d GLoRIA trunk tensors", backbone, len(state))
    return unet
