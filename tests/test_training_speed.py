"""Encoder options (issue 16 item 4): activation checkpointing gives the same losses, gradients and
BatchNorm statistics as without it (and does recompute), channels-last gives the same features, the
precision default resolves to 32-true without a GPU."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch

from gloria.config import ImageEncoderConfig
from gloria.encoders.image import ImageEncoder
from gloria.model import GLoRIA
from gloria.training.objective import PretrainObjective
from gloria.training.speed import apply_encoder_options, checkpoint_image_trunk, resolve_precision

TEXTS = ["small left pleural effusion", "heart size is normal", "no pneumothorax is seen", "mild edema"]


def _step(model, images: torch.Tensor) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    torch.manual_seed(7)  # the same dropout masks in both models
    losses = PretrainObjective(model)({"image": images, "text": TEXTS})
    losses["loss"].backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return losses, grads


def test_activation_checkpointing_gives_the_same_losses_gradients_and_statistics(tiny_config) -> None:
    torch.manual_seed(0)
    config = dataclasses.replace(tiny_config, text=dataclasses.replace(tiny_config.text, dropout=0.1))
    plain = GLoRIA(config).train()  # BatchNorm batch statistics, BERT dropout 0.1
    ckpt = apply_encoder_options(copy.deepcopy(plain), activation_checkpointing=True)
    assert list(ckpt.state_dict()) == list(plain.state_dict())
    runs = {"layer1": 0, "bert": 0}
    first_conv = ckpt.img_encoder.model.layer1[0].conv1
    first_conv.register_forward_hook(lambda *_: runs.__setitem__("layer1", runs["layer1"] + 1))
    attention = ckpt.text_encoder.model.encoder.layer[0].attention
    attention.register_forward_hook(lambda *_: runs.__setitem__("bert", runs["bert"] + 1))
    images = torch.randn(4, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    want_losses, want_grads = _step(plain, images)
    got_losses, got_grads = _step(ckpt, images)
    assert runs == {"layer1": 2, "bert": 2}  # forward, then recomputed in backward
    for key in ("loss", "global_loss", "local_loss"):
        assert torch.allclose(got_losses[key], want_losses[key], rtol=1e-6, atol=1e-7), key
    assert got_grads.keys() == want_grads.keys() and len(want_grads) > 50
    for name, grad in want_grads.items():
        assert torch.allclose(got_grads[name], grad, rtol=1e-5, atol=1e-7), name
    for (name, a), b in zip(plain.named_buffers(), ckpt.buffers()):
        assert torch.equal(a, b), name  # running statistics updated once, not twice


@pytest.mark.parametrize("backbone", ["resnet18", pytest.param("densenet121", marks=pytest.mark.slow)])
def test_checkpointed_image_trunk_gradients_equal_per_backbone(backbone: str) -> None:
    torch.manual_seed(0)
    plain = ImageEncoder(ImageEncoderConfig(backbone=backbone), 16).train()

    class _Holder:
        img_encoder = copy.deepcopy(plain)

    holder = _Holder()
    assert checkpoint_image_trunk(holder) == 4  # type: ignore[arg-type]  # 4 ResNet stages, 4 dense blocks
    images = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    outs = []
    for encoder in (plain, holder.img_encoder):
        features = encoder(images)
        (features.regions.square().mean() + features.embedding.sin().sum()).backward()
        outs.append({n: p.grad for n, p in encoder.named_parameters()})
    for name, grad in outs[0].items():
        assert torch.allclose(outs[1][name], grad, rtol=1e-5, atol=1e-7), name
    for a, b in zip(plain.buffers(), holder.img_encoder.buffers()):
        assert torch.equal(a, b)


def test_channels_last_gives_the_same_image_features(tiny_model) -> None:
    images = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        want = tiny_model.encode_images(images)
        apply_encoder_options(tiny_model, channels_last=True)
        conv = tiny_model.img_encoder.model.conv1.weight
        assert conv.is_contiguous(memory_format=torch.channels_last)
        got = tiny_model.encode_images(images)
    assert torch.allclose(got.regions, want.regions, atol=1e-5)
    assert torch.allclose(got.embedding, want.embedding, atol=1e-5)


def test_precision_auto_is_32_true_without_a_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve_precision("auto", "cpu") == "32-true"
    assert resolve_precision("16-mixed", "gpu") == "16-mixed"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    assert resolve_precision("auto", "auto") == "bf16-mixed"
    assert resolve_precision("auto", "cpu") == "32-true"


def test_compile_option_keeps_the_state_dict_keys(tiny_model) -> None:
    keys = list(tiny_model.state_dict())
    apply_encoder_options(tiny_model, compile=True)  # compiled lazily, on the first call
    assert list(tiny_model.state_dict()) == keys
