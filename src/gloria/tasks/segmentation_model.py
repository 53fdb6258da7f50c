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
    # compare by hand: smp's encoders override load_state_dict and do not report what was missing
    target = unet.encoder.state_dict()
    missing = sorted(set(target) - set(state))
    unexpected = sorted(set(state) - set(target))
    wrong = [
        f"{k} {tuple(state[k].shape)} vs {tuple(target[k].shape)}"
        for k in sorted(set(state) & set(target))
        if state[k].shape != target[k].shape
    ]
    problems = []
    if missing:
        problems.append(f"missing {len(missing)}: {missing[:8]}")
    if unexpected:
        problems.append(f"unexpected {len(unexpected)}: {unexpected[:8]}")
    if wrong:
        problems.append(f"wrong shape {len(wrong)}: {wrong[:4]}")
    if problems:
        raise ValueError(f"GLoRIA trunk weights do not fit smp's {backbone} encoder: " + "; ".join(problems))
    unet.encoder.load_state_dict(state)
    log.info("U-Net encoder (%s) initialised from %d GLoRIA trunk tensors", backbone, len(state))
    return unet
