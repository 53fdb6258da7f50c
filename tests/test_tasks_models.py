"""Downstream models (method.md 9): the linear probe keeps its frozen encoder in eval mode; U-Net weights."""

from __future__ import annotations

import pytest
import torch

from gloria.config import ImageEncoderConfig
from gloria.encoders.image import ImageEncoder
from gloria.model import GLoRIA
from gloria.tasks.classifier import ImageClassifier
from gloria.tasks.segmentation_model import build_unet


def bn_buffers(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in module.state_dict().items() if "running_" in k or "num_batches" in k}


def train_steps(model: torch.nn.Module, params: list[torch.nn.Parameter], steps: int = 2) -> None:
    opt = torch.optim.Adam(params, lr=1e-2)
    model.train()
    for _ in range(steps):
        logits = model(torch.randn(4, 3, 64, 64))
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, torch.ones_like(logits))
        opt.zero_grad()
        loss.backward()
        opt.step()


def test_frozen_probe_keeps_encoder_fixed(tiny_model: GLoRIA) -> None:
    clf = ImageClassifier(tiny_model, num_cls=5)
    assert clf.classifier.in_features == 512  # ResNet-18 pooled width, read from the trunk
    before_bn = bn_buffers(clf.img_encoder)
    before_w = clf.img_encoder.model.conv1.weight.clone()
    before_head = clf.classifier.weight.clone()
    clf.train()
    assert clf.training and not clf.img_encoder.training
    assert not any(m.training for m in clf.img_encoder.modules())
    train_steps(clf, [p for p in clf.parameters() if p.requires_grad])
    assert not clf.img_encoder.training
    for key, value in bn_buffers(clf.img_encoder).items():
        assert torch.equal(value, before_bn[key]), key
    assert torch.equal(clf.img_encoder.model.conv1.weight, before_w)
    assert not torch.equal(clf.classifier.weight, before_head)
    assert clf(torch.randn(2, 3, 64, 64)).shape == (2, 5)


def test_full_finetune_updates_encoder() -> None:
    enc = ImageEncoder(ImageEncoderConfig(backbone="resnet18", input_resize=None), embed_dim=8)
    clf = ImageClassifier(enc, num_cls=1, freeze_encoder=False)
    before_bn = clf.img_encoder.model.bn1.running_mean.clone()
    before_w = clf.img_encoder.model.conv1.weight.clone()
    train_steps(clf, list(clf.parameters()), steps=1)
    assert clf.img_encoder.training
    assert not torch.equal(clf.img_encoder.model.bn1.running_mean, before_bn)
    assert not torch.equal(clf.img_encoder.model.conv1.weight, before_w)


def test_probe_uses_the_input_resize() -> None:
    torch.manual_seed(0)
    enc = ImageEncoder(ImageEncoderConfig(backbone="resnet18", input_resize=96), embed_dim=8)
    clf = ImageClassifier(enc, num_cls=2).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        resized = torch.nn.functional.interpolate(x, size=(96, 96), mode="bilinear", align_corners=True)
        _, pooled = enc.forward_trunk(x)
        expected = clf.classifier(
            torch.flatten(enc.model.avgpool(enc.model.layer4(_layer3(enc, resized))), 1)
        )
        torch.testing.assert_close(clf(x), expected)
        torch.testing.assert_close(clf(x), clf.classifier(pooled))
    with pytest.raises(ValueError, match="num_cls"):
        ImageClassifier(enc, num_cls=0)
    with pytest.raises(ValueError, match="ImageEncoder or a GLoRIA"):
        ImageClassifier(torch.nn.Linear(2, 2))


def _layer3(enc: ImageEncoder, x: torch.Tensor) -> torch.Tensor:
    m = enc.model
    return m.layer3(m.layer2(m.layer1(m.maxpool(m.relu(m.bn1(m.conv1(x)))))))  # type: ignore[operator]


@pytest.mark.parametrize("backbone", ["resnet18", "resnet50"])
def test_unet_encoder_equals_trunk(backbone: str) -> None:
    torch.manual_seed(1)
    enc = ImageEncoder(ImageEncoderConfig(backbone=backbone, input_resize=None), embed_dim=8)  # type: ignore[arg-type]
    unet = build_unet(enc)
    trunk = enc.model.state_dict()
    encoder = unet.encoder.state_dict()
    assert set(encoder) == set(trunk)
    for key, value in trunk.items():
        assert torch.equal(encoder[key], value), key
    # the same from a release-style state dict
    prefixed = {f"gloria.img_encoder.model.{k}": v for k, v in trunk.items()}
    prefixed["gloria.img_encoder.global_embedder.weight"] = torch.zeros(8, 8)
    unet2 = build_unet(prefixed, backbone)  # type: ignore[arg-type]
    assert torch.equal(unet2.encoder.conv1.weight, enc.model.conv1.weight)
    if backbone == "resnet18":
        with torch.no_grad():
            assert unet.eval()(torch.randn(1, 3, 64, 64)).shape == (1, 1, 64, 64)


def test_unet_from_gloria_and_errors(tiny_model: GLoRIA) -> None:
    unet = build_unet(tiny_model)
    assert torch.equal(
        unet.encoder.layer3[0].conv1.weight, tiny_model.img_encoder.model.layer3[0].conv1.weight
    )
    random_unet = build_unet(None, "resnet18")
    assert random_unet.segmentation_head[0].out_channels == 1
    state = dict(tiny_model.img_encoder.model.state_dict())
    with pytest.raises(ValueError, match="backbone name"):
        build_unet(state)
    with pytest.raises(ValueError, match=r"(?s)missing from the file.*layer4"):
        build_unet({k: v for k, v in state.items() if not k.startswith("layer4")}, "resnet18")
    with pytest.raises(ValueError, match="differs"):
        build_unet(tiny_model, "resnet50")
    with pytest.raises(ValueError, match="shape mismatch"):
        build_unet(state, "resnet50")
