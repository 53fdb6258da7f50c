"""A finer region grid for a torchvision ResNet: layer 3 dilated instead of strided.

``dilate_layer3`` turns a ResNet whose layer 3 halves the resolution (regions at stride 16) into one whose
layer 3 keeps it (stride 8) and sees as far through dilation 2, with layer 4 dilated to match -- what
``torchvision.models.resnet50(replace_stride_with_dilation=[False, True, False])`` builds, done on the built
network so that it works for the BasicBlock ResNets too (torchvision's constructor refuses dilation for
them) and keeps every parameter's shape (ImageNet and GLoRIA weights load unchanged).
"""

from __future__ import annotations

from typing import Any

from torch import nn


def _strided_convs(block: nn.Module) -> list[nn.Conv2d]:
    """The block's convolutions with stride 2: its strided 3x3 conv and its downsample's 1x1 conv."""
    return [m for m in block.modules() if isinstance(m, nn.Conv2d) and m.stride == (2, 2)]


def _dilate(conv: nn.Conv2d, dilation: int) -> None:
    """Dilation and the padding that keeps the spatial size (3x3 convs; a 1x1 conv keeps padding 0)."""
    if conv.kernel_size == (3, 3):
        conv.dilation = (dilation, dilation)
        conv.padding = (dilation, dilation)


def dilate_layer3(trunk: Any) -> None:
    """Make ``trunk`` (a torchvision ResNet, in place) read layer 3 at stride 8 instead of 16.

    As torchvision's ``replace_stride_with_dilation=[False, True, False]``: layer 3's first block loses its
    stride (its convs stay undilated), the later blocks' 3x3 convs get dilation 2; layer 4 keeps its stride,
    its first block's 3x3 convs at dilation 2 (the dilation before it) and the later blocks' at 2 as well.
    """
    layer3: nn.Sequential = trunk.layer3
    layer4: nn.Sequential = trunk.layer4
    first = layer3[0]
    strided = _strided_convs(first)
    if not strided:
        raise ValueError("layer3 of this network has no stride-2 convolution: it is dilated already")
    for conv in strided:
        conv.stride = (1, 1)
    for block in list(layer3)[1:]:
        for m in block.modules():
            if isinstance(m, nn.Conv2d):
                _dilate(m, 2)
    for block in layer4:
        for m in block.modules():
            if isinstance(m, nn.Conv2d):
                _dilate(m, 2)
