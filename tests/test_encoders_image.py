"""Image tower (method.md 1): backbone shapes, the declared 299 resize, freezing, offline ImageNet errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from gloria.config import ImageEncoderConfig
from gloria.encoders.image import ImageEncoder, InputResize, imagenet_weights_path

# backbone -> (stride-16 channels C3, pooled channels C4)
DIMS = {"resnet18": (256, 512), "resnet34": (256, 512), "resnet50": (1024, 2048), "densenet121": (1024, 1024)}


@pytest.mark.parametrize("backbone", list(DIMS))
def test_backbone_shapes(backbone: str) -> None:
    torch.manual_seed(0)
    enc = ImageEncoder(ImageEncoderConfig(backbone=backbone, input_resize=None), embed_dim=24).eval()  # type: ignore[arg-type]
    c3, c4 = DIMS[backbone]
    assert (enc.region_dim, enc.feature_dim) == (c3, c4)
    # float64: the projections are compared with the plain maths, so the CPU's float32 summation order
    # (a 1x1 convolution against an einsum over 256-1024 channels) must not decide the test
    enc = enc.double()
    images = torch.randn(2, 3, 64, 96, dtype=torch.float64)
    with torch.no_grad():
        local, pooled = enc.forward_trunk(images)
        feats = enc(images)
    assert local.shape == (2, c3, 4, 6)  # stride 16
    assert pooled.shape == (2, c4)
    assert feats.regions.shape == (2, 24, 4, 6)
    assert feats.embedding.shape == (2, 24)
    # projections: 1x1 conv without bias on the regions, linear with bias on the pooled feature
    torch.testing.assert_close(
        feats.regions, torch.einsum("dc,bchw->bdhw", enc.local_embedder.weight[:, :, 0, 0], local)
    )
    torch.testing.assert_close(
        feats.embedding, pooled @ enc.global_embedder.weight.T + enc.global_embedder.bias
    )
    keys = enc.state_dict()
    assert "local_embedder.bias" not in keys
    assert not any(k.startswith(("model.fc.", "model.classifier.")) for k in keys)


def test_release_resize_is_applied() -> None:
    torch.manual_seed(0)
    release = ImageEncoder(ImageEncoderConfig(backbone="resnet18", input_resize=299), embed_dim=8).eval()
    assert isinstance(release.input_resize, InputResize)
    with torch.no_grad():
        assert release(torch.randn(1, 3, 64, 64)).regions.shape == (1, 8, 19, 19)  # 299 px -> 19 x 19
    enc = ImageEncoder(ImageEncoderConfig(backbone="resnet18", input_resize=80), embed_dim=8).eval()
    images = torch.randn(1, 3, 64, 48)
    with torch.no_grad():
        feats = enc(images)
        assert feats.regions.shape == (1, 8, 5, 5)
        resized = F.interpolate(images, size=(80, 80), mode="bilinear", align_corners=True)
        enc_no = ImageEncoder(ImageEncoderConfig(backbone="resnet18", input_resize=None), embed_dim=8).eval()
        enc_no.load_state_dict(enc.state_dict())
        torch.testing.assert_close(enc_no(resized).regions, feats.regions)
    # resize has no parameters: the state dict is the same with or without it
    assert set(enc.state_dict()) == set(enc_no.state_dict())


def test_freeze_keeps_trunk_in_eval_mode() -> None:
    enc = ImageEncoder(ImageEncoderConfig(backbone="resnet18", input_resize=None, freeze=True), embed_dim=8)
    enc.train()
    assert not enc.model.training
    assert enc.global_embedder.training
    assert not any(p.requires_grad for p in enc.model.parameters())
    before = enc.model.bn1.running_mean.clone()
    enc(torch.randn(2, 3, 64, 64)).embedding.sum().backward()
    torch.testing.assert_close(enc.model.bn1.running_mean, before)
    assert enc.global_embedder.weight.grad is not None


def test_imagenet_init_offline_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    with pytest.raises(FileNotFoundError) as info:
        ImageEncoder(ImageEncoderConfig(backbone="resnet50", imagenet_init=True), embed_dim=8)
    message = str(info.value)
    assert str(tmp_path / "hub" / "checkpoints" / "resnet50-0676ba61.pth") in message
    assert "imagenet_init" in message


def test_imagenet_init_reads_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file in torch's cache is what gets loaded (no network): write one and read it back through
    torchvision's own cache lookup (``TORCH_HOME``), nothing of the loading path replaced."""
    import torchvision

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"tried to download {args[:1]}")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    torch.manual_seed(1234)
    reference = torchvision.models.resnet18()
    target = tmp_path / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    target.parent.mkdir(parents=True)
    torch.save(reference.state_dict(), target)
    assert imagenet_weights_path("resnet18") == target
    torch.manual_seed(0)  # a fresh random trunk would differ from the file's weights
    enc = ImageEncoder(ImageEncoderConfig(backbone="resnet18", imagenet_init=True), embed_dim=8)
    loaded = enc.model.state_dict()
    for key, value in reference.state_dict().items():
        if not key.startswith("fc."):  # the classifier head is replaced by Identity
            torch.testing.assert_close(loaded[key], value, rtol=0, atol=0, msg=key)


@pytest.mark.parametrize("shape", [(3, 64, 64), (2, 1, 64, 64), (2, 4, 64, 64)])
def test_wrong_image_shape_raises(shape: tuple[int, ...]) -> None:
    enc = ImageEncoder(ImageEncoderConfig(backbone="resnet18", input_resize=None), embed_dim=8)
    with pytest.raises(ValueError, match=r"\[B, 3, H, W\]"):
        enc(torch.randn(*shape))


def test_bad_config_raises() -> None:
    with pytest.raises(ValueError, match="unknown image backbone"):
        ImageEncoder(ImageEncoderConfig(backbone="vgg16"), embed_dim=8)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="embed_dim"):
        ImageEncoder(ImageEncoderConfig(backbone="resnet18"), embed_dim=0)
