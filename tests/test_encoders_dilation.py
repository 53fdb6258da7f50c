"""``image.region_stride: 8``: a ResNet's layer 3 dilated instead of strided (encoders/dilation.py)."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from gloria.config import GloriaConfig, ImageEncoderConfig, from_dict
from gloria.encoders.dilation import dilate_layer3
from gloria.encoders.image import ImageEncoder


def conv_geometry(net: nn.Module) -> dict[str, tuple]:
    return {n: (m.stride, m.dilation, m.padding) for n, m in net.named_modules() if isinstance(m, nn.Conv2d)}


def test_resnet50_is_what_torchvision_builds_with_a_dilated_layer3() -> None:
    """On the Bottleneck ResNet torchvision can build the dilated network itself: every convolution's
    stride, dilation and padding match, and with the same weights so does the output."""
    torch.manual_seed(0)
    ours = torchvision.models.resnet50(weights=None)
    reference = torchvision.models.resnet50(weights=None, replace_stride_with_dilation=[False, True, False])
    reference.load_state_dict(ours.state_dict())
    before = conv_geometry(ours)
    dilate_layer3(ours)
    assert conv_geometry(ours) == conv_geometry(reference)
    assert conv_geometry(ours) != before
    ours.eval(), reference.eval()
    images = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(ours(images), reference(images), rtol=0, atol=0)


def test_dilating_twice_is_refused() -> None:
    net = torchvision.models.resnet18(weights=None)
    dilate_layer3(net)
    with pytest.raises(ValueError, match="dilated already"):
        dilate_layer3(net)


@pytest.mark.parametrize("backbone", ["resnet18", "resnet34", "resnet50"])
def test_stride_8_doubles_the_grid_with_the_same_parameters(backbone: str) -> None:
    torch.manual_seed(0)
    coarse = ImageEncoder(ImageEncoderConfig(backbone=backbone, input_resize=None), embed_dim=16).eval()  # type: ignore[arg-type]
    fine = ImageEncoder(
        ImageEncoderConfig(backbone=backbone, input_resize=None, region_stride=8),  # type: ignore[arg-type]
        embed_dim=16,
    ).eval()
    shapes = {k: v.shape for k, v in coarse.state_dict().items()}
    assert {k: v.shape for k, v in fine.state_dict().items()} == shapes
    fine.load_state_dict(coarse.state_dict())  # strict: a stride-16 checkpoint loads into the finer grid
    images = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        a, b = coarse(images), fine(images)
    assert a.regions.shape == (2, 16, 4, 6)
    assert b.regions.shape == (2, 16, 8, 12)
    assert b.embedding.shape == a.embedding.shape == (2, 16)
    assert not torch.allclose(a.embedding, b.embedding)  # layer 4 reads the finer map (dilated to match)


def test_the_option_is_validated() -> None:
    with pytest.raises(ValueError, match=r"image\.region_stride=8 needs a ResNet"):
        ImageEncoderConfig(backbone="densenet121", region_stride=8)
    with pytest.raises(ValueError, match="region_stride"):
        from_dict(ImageEncoderConfig, {"backbone": "resnet18", "region_stride": 4}, "image")
    assert from_dict(ImageEncoderConfig, {"region_stride": 8}, "image").region_stride == 8
    assert ImageEncoderConfig().region_stride == 16  # the release


def test_a_model_with_the_finer_grid_trains_a_step(tiny_config: GloriaConfig) -> None:
    """The whole model on 16x16 regions at 128 px: forward, both losses and their gradients."""
    from gloria.model import GLoRIA

    torch.manual_seed(0)
    model = GLoRIA(tiny_config.replace(image__region_stride=8)).train()
    tokens = model.process_text(["small left pleural effusion", "enlarged heart", "no acute findings"], "cpu")
    feats = model.encode_images(torch.randn(3, 3, 128, 128))
    assert feats.regions.shape[-2:] == (16, 16)
    losses = model.compute_losses(feats, model.encode_texts(tokens))
    assert torch.isfinite(losses["local_loss"]) and torch.isfinite(losses["global_loss"])
    losses["loss"].backward()
    grad = model.img_encoder.local_embedder.weight.grad
    assert grad is not None and bool(grad.abs().sum() > 0)
