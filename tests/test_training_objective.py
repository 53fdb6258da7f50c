"""Task objectives: the release's segmentation loss and per-image Dice (empty-truth rule) against plain
loops, masked BCE, and the pretraining objective on the tiny model equal to the model's own loss."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from gloria.training.objective import (
    PretrainObjective,
    dice_per_image,
    masked_bce,
    segmentation_loss,
)


def test_segmentation_loss_is_10_focal_minus_log_soft_dice() -> None:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 1, 5, 5, generator=g, dtype=torch.float64)
    masks = (torch.rand(2, 1, 5, 5, generator=g) > 0.6).double()
    focal_terms = []
    inter = psum = tsum = 0.0
    for z, t in zip(logits.flatten().tolist(), masks.flatten().tolist()):
        p = 1 / (1 + math.exp(-z))
        pt = p if t == 1 else 1 - p
        focal_terms.append(-((1 - pt) ** 2) * math.log(pt))
        inter, psum, tsum = inter + p * t, psum + p, tsum + t
    focal = sum(focal_terms) / len(focal_terms)
    dice = (2 * inter + 1) / (psum + tsum + 1)
    out = segmentation_loss(logits, masks)
    assert math.isclose(float(out["focal_loss"]), focal, rel_tol=1e-6)
    assert math.isclose(float(out["soft_dice"]), dice, rel_tol=1e-6)
    assert math.isclose(float(out["loss"]), 10 * focal - math.log(dice), rel_tol=1e-6)


def test_dice_per_image_with_empty_truth_rule() -> None:
    truth = torch.zeros(4, 1, 3, 3)
    truth[0, 0, 0, :2] = 1  # 2 pixels
    truth[1, 0, 1, 1] = 1
    logits = torch.full((4, 1, 3, 3), -5.0)
    logits[0, 0, 0, 1:] = 5  # predicts 2 pixels, 1 overlapping -> 2*1/(2+2) = 0.5
    # image 1: truth 1 pixel, prediction empty -> 0; image 2: both empty -> 1;
    # image 3: empty truth, 1 pixel predicted -> 0
    logits[3, 0, 2, 2] = 5
    assert dice_per_image(logits, truth).tolist() == [0.5, 0.0, 1.0, 0.0]


def test_masked_bce_ignores_nan_labels() -> None:
    logits = torch.tensor([[0.3, -1.0], [2.0, 0.5]])
    labels = torch.tensor([[1.0, float("nan")], [0.0, 1.0]])
    keep = ~torch.isnan(labels)
    expected = F.binary_cross_entropy_with_logits(logits[keep], labels[keep])
    assert torch.allclose(masked_bce(logits, labels), expected)
    assert float(masked_bce(logits, torch.full_like(labels, float("nan")))) == 0.0


def test_pretrain_objective_equals_the_models_loss(tiny_model) -> None:
    images = torch.randn(3, 3, 64, 64)
    texts = ["small left pleural effusion", "heart size is normal", "no pneumothorax is seen here"]
    ours = PretrainObjective(tiny_model)({"image": images, "text": texts})
    tokens = tiny_model.process_text(texts, "cpu")
    theirs = tiny_model.compute_losses(tiny_model.encode_images(images), tiny_model.encode_texts(tokens))
    for key in ("loss", "global_loss", "local_loss"):
        assert torch.allclose(ours[key], theirs[key], rtol=1e-5, atol=1e-6), key


def test_pretrain_objective_under_bf16_autocast_trains_in_float32(tiny_model) -> None:
    """Mixed precision (trainer.precision=bf16-mixed / 16-mixed): encoders in half, losses in float32."""
    tiny_model.train()
    texts = ["small left effusion", "heart is normal", "no edema"]
    batch = {"image": torch.randn(3, 3, 64, 64), "text": texts}
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = PretrainObjective(tiny_model)(batch)
    assert out["loss"].dtype == torch.float32 and torch.isfinite(out["loss"])
    out["loss"].backward()
    grad = tiny_model.img_encoder.local_embedder.weight.grad
    assert grad is not None and torch.isfinite(grad).all() and bool(grad.abs().sum() > 0)


class _FixedLogits(torch.nn.Module):
    """A stand-in U-Net: returns the logits stored for each image (indexed by its first pixel)."""

    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.logits = torch.nn.Parameter(logits.clone())

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.logits[images[:, 0, 0, 0].long()]


def test_segment_module_logs_dice_over_all_and_over_positive_images() -> None:
    import lightning.pytorch as L
    from torch.utils.data import DataLoader

    from gloria.training.experiment import OptimSection, SchedulerSection
    from gloria.training.segment_module import SegmentModule

    truth = torch.zeros(4, 1, 3, 3)
    truth[0, 0, 0, :2] = 1
    truth[1, 0, 1, 1] = 1
    logits = torch.full((4, 1, 3, 3), -5.0)
    logits[0, 0, 0, 1:] = 5  # Dice 0.5; image 1 predicted empty (0); image 2 empty/empty (1); image 3: 0
    logits[3, 0, 2, 2] = 5
    images = torch.arange(4).float().view(4, 1, 1, 1).expand(4, 3, 3, 3)
    # batches of 2: the second batch (images 2 and 3) has no positive image
    rows = [{"image": images[i], "mask": truth[i]} for i in range(4)]
    module = SegmentModule(_FixedLogits(logits), OptimSection(), SchedulerSection(name="none"))
    trainer = L.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False)
    (metrics,) = trainer.test(module, DataLoader(rows, batch_size=2), verbose=False)
    per_image = [0.5, 0.0, 1.0, 0.0]
    assert math.isclose(metrics["test_dice"], sum(per_image) / 4, rel_tol=1e-6)
    assert math.isclose(metrics["test_dice_positive"], (0.5 + 0.0) / 2, rel_tol=1e-6)
