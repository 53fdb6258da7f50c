"""Linear probe, the paper's "fine-tuning" (method.md section 9): a linear layer on the pooled trunk feature.

The frozen encoder stays in eval mode even under ``.train()`` (the release let BatchNorm statistics drift).
"""

from __future__ import annotations

import logging

import torch
from torch import Tensor, nn

from gloria.config import GloriaConfig
from gloria.encoders.image import ImageEncoder

log = logging.getLogger(__name__)


def image_encoder_of(source: nn.Module) -> ImageEncoder:
    """The ``ImageEncoder`` of a GLoRIA model (its ``img_encoder``) or the encoder itself."""
    if isinstance(source, ImageEncoder):
        return source
    encoder = getattr(source, "img_encoder", None)
    if isinstance(encoder, ImageEncoder):
        return encoder
    raise ValueError(f"expected an ImageEncoder or a GLoRIA model, got {type(source).__name__}")


class ImageClassifier(nn.Module):
    """``img_encoder`` (trunk after the input resize) -> pooled [B, C4] -> ``classifier`` -> [B, num_cls].

    ``freeze_encoder=True`` is the linear probe: no gradients into the encoder and its BatchNorm layers keep
    their statistics; ``False`` fine-tunes everything. The projection heads of GLoRIA are not used.
    """

    def __init__(self, encoder: nn.Module, num_cls: int = 1, *, freeze_encoder: bool = True) -> None:
        super().__init__()
        if num_cls < 1:
            raise ValueError(f"num_cls must be >= 1, got {num_cls}")
        self.img_encoder = image_encoder_of(encoder)
        self.freeze_encoder = freeze_encoder
        self.num_cls = num_cls
        self.classifier = nn.Linear(self.img_encoder.feature_dim, num_cls)
        self.classes: list[str] = []  # the label names, when known (a loaded training checkpoint)
        self.config: GloriaConfig | None = None  # the model config it came from (its preprocessing)
        if freeze_encoder:
            for p in self.img_encoder.parameters():
                p.requires_grad_(False)
            self.img_encoder.eval()

    def train(self, mode: bool = True) -> ImageClassifier:
        super().train(mode)
        if self.freeze_encoder:
            self.img_encoder.eval()
        return self

    def forward(self, images: Tensor) -> Tensor:
        """images [B, 3, H, W] -> logits [B, num_cls]."""
        if self.freeze_encoder:
            with torch.no_grad():
                _, pooled = self.img_encoder.forward_trunk(images)
        else:
            _, pooled = self.img_encoder.forward_trunk(images)
        return self.classifier(pooled)
