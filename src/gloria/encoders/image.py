"""The image tower (method.md section 1): a torchvision trunk whose stride-16 features become regions
[B, D, h, w] (1x1 conv) and whose pooled feature becomes the global embedding [B, D] (linear). With
``image.region_stride: 8`` a ResNet's layer 3 is dilated instead of strided (``encoders/dilation.py``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
import torchvision
from torch import Tensor, nn

from gloria.config import Backbone, ImageEncoderConfig
from gloria.encoders.dilation import dilate_layer3
from gloria.types import ImageFeatures

log = logging.getLogger(__name__)

RESNETS = ("resnet18", "resnet34", "resnet50")
BACKBONES = (*RESNETS, "densenet121")
# DenseNet-121: regions are the output of dense block 3 (1024 channels, stride 16 like ResNet layer3; the
# next transition halves the resolution); the pooled feature is norm5 -> ReLU -> global average (1024).
DENSENET_REGION_BLOCK = "denseblock3"


class InputResize(nn.Module):
    """The release's in-encoder resize: every input to ``size`` x ``size``, bilinear, ``align_corners=True``.

    [B, 3, H, W] -> [B, 3, size, size]. The released weights were trained with size 299.
    """

    def __init__(self, size: int) -> None:
        super().__init__()
        if size < 1:
            raise ValueError(f"input_resize must be a positive pixel size, got {size}")
        self.size = size

    def forward(self, images: Tensor) -> Tensor:
        return F.interpolate(images, size=(self.size, self.size), mode="bilinear", align_corners=True)

    def extra_repr(self) -> str:
        return f"size={self.size}, mode=bilinear, align_corners=True"


def imagenet_weights_path(backbone: Backbone) -> Path:
    """Where torchvision's cache expects the ImageNet weights of ``backbone`` (the release used V1)."""
    weights = torchvision.models.get_model_weights(backbone)["IMAGENET1K_V1"]
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name


def build_trunk(backbone: Backbone, imagenet_init: bool) -> nn.Module:
    """A torchvision classification network, ImageNet weights read only from torch's local cache."""
    if backbone not in BACKBONES:
        raise ValueError(f"unknown image backbone {backbone!r}; choose one of {list(BACKBONES)}")
    if not imagenet_init:
        return torchvision.models.get_model(backbone, weights=None)
    path = imagenet_weights_path(backbone)
    if not path.is_file():
        weights = torchvision.models.get_model_weights(backbone)["IMAGENET1K_V1"]
        raise FileNotFoundError(
            f"ImageNet weights for {backbone} are missing: expected {path} (torch's hub cache, "
            f"TORCH_HOME={path.parent.parent.parent}). Download {weights.url} to that path on a connected "
            "machine, or set image.imagenet_init=false."
        )
    log.info("loading ImageNet weights for %s from %s", backbone, path)
    # the file is in the cache, so torchvision reads it there (and applies its own key fixes) without network
    return torchvision.models.get_model(backbone, weights="IMAGENET1K_V1")


class ImageEncoder(nn.Module):
    """Image tower with the release's attribute names: ``model`` (torchvision trunk, classifier head replaced
    by ``Identity``), ``global_embedder`` (Linear C4 -> D) and ``local_embedder`` (Conv2d C3 -> D, 1x1, no
    bias). ``input_resize`` is the declared resize step (``Identity`` when the preset has none).
    """

    def __init__(self, cfg: ImageEncoderConfig, embed_dim: int) -> None:
        super().__init__()
        if embed_dim < 1:
            raise ValueError(f"embed_dim must be positive, got {embed_dim}")
        self.cfg = cfg
        self.backbone = cfg.backbone
        trunk: Any = build_trunk(cfg.backbone, cfg.imagenet_init)  # torchvision ResNet or DenseNet
        if cfg.backbone in RESNETS:
            if cfg.region_stride == 8:
                dilate_layer3(trunk)
            self.region_dim = int(trunk.layer4[0].conv1.in_channels)  # layer3 output channels
            self.feature_dim = int(trunk.fc.in_features)
            trunk.fc = nn.Identity()
        else:
            self.region_dim = int(trunk.features.transition3.norm.num_features)  # dense block 3 output
            self.feature_dim = int(trunk.classifier.in_features)
            trunk.classifier = nn.Identity()
        self.model: nn.Module = trunk
        self.input_resize: nn.Module = InputResize(cfg.input_resize) if cfg.input_resize else nn.Identity()
        self.global_embedder = nn.Linear(self.feature_dim, embed_dim)
        self.local_embedder = nn.Conv2d(self.region_dim, embed_dim, kernel_size=1, bias=False)
        self.embed_dim = embed_dim
        self.channels_last = False  # images enter the trunk in channels-last memory order (training option)
        self.trunk_frozen = False
        if cfg.freeze:
            self.freeze_trunk()

    def freeze_trunk(self) -> None:
        """Stop gradients into the trunk and keep it in eval mode (BatchNorm statistics stay fixed)."""
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.trunk_frozen = True
        self.model.eval()

    def train(self, mode: bool = True) -> ImageEncoder:
        super().train(mode)
        if self.trunk_frozen:
            self.model.eval()
        return self

    @staticmethod
    def check_images(images: Tensor) -> None:
        if not isinstance(images, Tensor) or images.ndim != 4 or images.shape[1] != 3:
            shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
            raise ValueError(f"images must be a [B, 3, H, W] tensor, got {shape}")

    def forward_trunk(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """images [B, 3, H, W] -> (layer-3 features [B, C3, h, w] at ``region_stride``, pooled [B, C4]),
        after the resize."""
        self.check_images(images)
        x = self.input_resize(images)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        if self.backbone in RESNETS:
            m: Any = self.model
            x = m.maxpool(m.relu(m.bn1(m.conv1(x))))
            x = m.layer2(m.layer1(x))
            local = m.layer3(x)  # [B, C3, h, w]
            pooled = torch.flatten(m.avgpool(m.layer4(local)), 1)  # [B, C4]
            return local, pooled
        local_dn: Tensor | None = None
        features: nn.Module = self.model.features  # type: ignore[assignment]
        for name, module in features.named_children():
            x = module(x)
            if name == DENSENET_REGION_BLOCK:
                local_dn = x
        if local_dn is None:  # pragma: no cover - torchvision's DenseNet always has the block
            raise ValueError(f"{self.backbone} has no {DENSENET_REGION_BLOCK}")
        pooled = torch.flatten(F.adaptive_avg_pool2d(F.relu(x), 1), 1)
        return local_dn, pooled

    def forward(self, images: Tensor) -> ImageFeatures:
        """images [B, 3, H, W] -> ImageFeatures(regions [B, D, h, w], embedding [B, D])."""
        local, pooled = self.forward_trunk(images)
        return ImageFeatures(regions=self.local_embedder(local), embedding=self.global_embedder(pooled))
