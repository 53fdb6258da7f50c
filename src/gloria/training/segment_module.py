"""Thin LightningModule for segmentation (method.md section 9): U-Net with the GLoRIA encoder, loss
10 * focal - log(soft Dice), Dice per image at 0.5 (empty truth: 1 if the prediction is empty, else 0).

Validation and test also log ``<stage>_dice_positive``: the same Dice averaged over the images whose truth
mask is not empty only -- how well masks are drawn, which the per-image Dice hides when most images are
empty (an all-empty prediction scores 0 on it; NaN when a split has no such image).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import lightning.pytorch as L
from torch import Tensor, nn
from torchmetrics import MeanMetric

from gloria.training.experiment import OptimSection, SchedulerSection
from gloria.training.objective import SegmentationObjective, dice_per_image
from gloria.training.optim import optimizer_config, step_unless_plateau


class SegmentModule(L.LightningModule):
    """Wraps a U-Net ``[B,3,H,W] -> [B,1,H,W]`` logits (``gloria.tasks.segmentation_model.build_unet``)."""

    def __init__(self, unet: nn.Module, optim: OptimSection, scheduler: SchedulerSection) -> None:
        super().__init__()
        self.unet = unet
        self.optim = optim
        self.scheduler = scheduler
        self.objective = SegmentationObjective(unet)
        self.val_dice = MeanMetric()
        self.test_dice = MeanMetric()
        self.val_dice_positive = MeanMetric()
        self.test_dice_positive = MeanMetric()

    def _step(self, batch: Mapping[str, Any], stage: str) -> Tensor:
        out = self.objective(batch)
        size = int(batch["image"].shape[0])
        train = stage == "train"
        self.log_dict(
            {f"{stage}_{k}": out[k].detach() for k in ("loss", "focal_loss", "soft_dice")},
            prog_bar=True,
            on_step=train,
            on_epoch=True,
            batch_size=size,
            sync_dist=not train,
        )
        if not train:
            dice = dice_per_image(out["logits"], batch["mask"])
            positive = (batch["mask"] > 0.5).flatten(1).any(dim=1)
            metric, metric_positive = (
                (self.val_dice, self.val_dice_positive)
                if stage == "val"
                else (self.test_dice, self.test_dice_positive)
            )
            metric.update(dice)
            metric_positive.update(dice, positive.to(dice.dtype))  # weight 0: not counted (NaN if none)
            self.log(f"{stage}_dice", metric, on_epoch=True, prog_bar=True)
            self.log(f"{stage}_dice_positive", metric_positive, on_epoch=True)
        return out["loss"]

    def training_step(self, batch: Mapping[str, Any], batch_idx: int) -> Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: Mapping[str, Any], batch_idx: int) -> Tensor:
        return self._step(batch, "val")

    def test_step(self, batch: Mapping[str, Any], batch_idx: int) -> Tensor:
        return self._step(batch, "test")

    def configure_optimizers(self) -> Any:
        return optimizer_config(self.unet, self.optim, self.scheduler)

    def lr_scheduler_step(self, scheduler: Any, metric: Any) -> None:
        step_unless_plateau(scheduler, metric)
