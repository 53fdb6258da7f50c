"""Thin LightningModule for the linear probe / fine-tune of method.md section 9: BCE-with-logits, AUROC and
AUPRC per class and their mean (torchmetrics), NaN labels ignored.

This is the paper's training procedure (``gloria train``, ``task: classification``: gradient descent with
augmentation, optionally the whole encoder); the quick evaluation on frozen features by logistic
regression is ``gloria.tasks.linear_probe``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import lightning.pytorch as L
import torch
from torch import Tensor, nn
from torchmetrics import Metric
from torchmetrics.classification import BinaryAUROC, BinaryAveragePrecision

from gloria.training.experiment import OptimSection, SchedulerSection
from gloria.training.objective import ClassificationObjective
from gloria.training.optim import optimizer_config, step_unless_plateau


def freeze_unused_heads(classifier: nn.Module) -> None:
    """The classifier reads the pooled trunk feature; GLoRIA's projection heads never reach its loss (and
    DDP would stop on their missing gradients when fine-tuning), so they are excluded from training."""
    encoder = getattr(classifier, "img_encoder", None)
    for name in ("global_embedder", "local_embedder"):
        head = getattr(encoder, name, None)
        if isinstance(head, nn.Module):
            for p in head.parameters():
                p.requires_grad_(False)


class ClassifyModule(L.LightningModule):
    """Wraps a classifier ``[B,3,H,W] -> [B,C]`` (``gloria.tasks.classifier.ImageClassifier``)."""

    def __init__(
        self,
        classifier: nn.Module,
        classes: Sequence[str],
        optim: OptimSection,
        scheduler: SchedulerSection,
    ) -> None:
        super().__init__()
        self.classifier = classifier
        freeze_unused_heads(classifier)
        self.classes = list(classes)
        self.optim = optim
        self.scheduler = scheduler
        self.objective = ClassificationObjective(classifier)
        self.metrics: dict[str, dict[str, list[Metric]]] = {
            stage: {
                "auroc": [BinaryAUROC() for _ in self.classes],
                "auprc": [BinaryAveragePrecision() for _ in self.classes],
            }
            for stage in ("val", "test")
        }
        # registered so that Lightning moves them to the device and DDP syncs them
        self.metric_modules = nn.ModuleList(m for s in self.metrics.values() for ms in s.values() for m in ms)

    def training_step(self, batch: Mapping[str, Any], batch_idx: int) -> Tensor:
        out = self.objective(batch)
        size = int(batch["image"].shape[0])
        loss = out["loss"]
        self.log("train_loss", loss.detach(), prog_bar=True, on_step=True, on_epoch=True, batch_size=size)
        return out["loss"]

    def _eval_step(self, batch: Mapping[str, Any], stage: str) -> Tensor:
        out = self.objective(batch)
        size = int(batch["image"].shape[0])
        self.log(f"{stage}_loss", out["loss"], prog_bar=True, on_epoch=True, batch_size=size, sync_dist=True)
        probs = torch.sigmoid(out["logits"].float())
        labels = batch["labels"]
        for c in range(len(self.classes)):
            keep = ~torch.isnan(labels[:, c])
            if bool(keep.any()):
                target = labels[keep, c].long()
                self.metrics[stage]["auroc"][c].update(probs[keep, c], target)
                self.metrics[stage]["auprc"][c].update(probs[keep, c], target)
        return out["loss"]

    def _eval_epoch_end(self, stage: str) -> None:
        for name in ("auroc", "auprc"):
            values = []
            for c, cls in enumerate(self.classes):
                metric = self.metrics[stage][name][c]
                value = metric.compute() if metric.update_count else torch.tensor(float("nan"))
                metric.reset()
                values.append(value.float())
                self.log(f"{stage}_{name}/{cls}", value.float())
            stacked = torch.stack(values)
            valid = stacked[~torch.isnan(stacked)]
            mean = valid.mean() if valid.numel() else torch.tensor(float("nan"))
            self.log(f"{stage}_{name}", mean, prog_bar=name == "auroc")

    def validation_step(self, batch: Mapping[str, Any], batch_idx: int) -> Tensor:
        return self._eval_step(batch, "val")

    def test_step(self, batch: Mapping[str, Any], batch_idx: int) -> Tensor:
        return self._eval_step(batch, "test")

    def on_validation_epoch_end(self) -> None:
        self._eval_epoch_end("val")

    def on_test_epoch_end(self) -> None:
        self._eval_epoch_end("test")

    def configure_optimizers(self) -> Any:
        return optimizer_config(self.classifier, self.optim, self.scheduler)

    def lr_scheduler_step(self, scheduler: Any, metric: Any) -> None:
        step_unless_plateau(scheduler, metric)
