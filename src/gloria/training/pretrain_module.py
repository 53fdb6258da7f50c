"""Thin LightningModule for GLoRIA pretraining (method.md section 4): the objective computes the losses,
this class only logs them and hands Lightning the optimiser.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import lightning.pytorch as L
from torch import Tensor

from gloria.config import to_dict
from gloria.model import GLoRIA
from gloria.training.experiment import OptimSection, SchedulerSection
from gloria.training.objective import PretrainObjective
from gloria.training.optim import optimizer_config, step_unless_plateau


def freeze_unused_pooler(model: GLoRIA) -> None:
    """With ``last_n_layers > 1`` the BERT pooler never reaches the loss; DDP would stop on its missing
    gradients, so it is excluded from training (its weights are kept as loaded)."""
    pooler = getattr(model.text_encoder.model, "pooler", None)
    if model.config.text.last_n_layers > 1 and pooler is not None:
        for p in pooler.parameters():
            p.requires_grad_(False)


class PretrainModule(L.LightningModule):
    """Wraps a ``GLoRIA`` (attribute ``model``; checkpoint keys ``model.<release key without gloria.>``)."""

    def __init__(
        self,
        model: GLoRIA,
        optim: OptimSection,
        scheduler: SchedulerSection,
        *,
        gather: bool = True,
        legacy_word_counts: bool = False,
        chunk_size: int | None = None,
        recompute: bool = False,
    ) -> None:
        super().__init__()
        self.model = model
        freeze_unused_pooler(model)
        self.optim = optim
        self.scheduler = scheduler
        self.objective = PretrainObjective(
            model,
            gather=gather,
            legacy_word_counts=legacy_word_counts,
            chunk_size=chunk_size,
            recompute=recompute,
        )

    def _step(self, batch: Mapping[str, Any], stage: str) -> Tensor:
        losses = self.objective(batch)
        size = int(batch["image"].shape[0])
        train = stage == "train"
        self.log_dict(
            {f"{stage}_{k}": v.detach() for k, v in losses.items()},
            prog_bar=True,
            on_step=train,
            on_epoch=True,
            batch_size=size,
            sync_dist=not train,
        )
        return losses["loss"]

    def training_step(self, batch: Mapping[str, Any], batch_idx: int) -> Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: Mapping[str, Any], batch_idx: int) -> Tensor:
        return self._step(batch, "val")

    def test_step(self, batch: Mapping[str, Any], batch_idx: int) -> Tensor:
        return self._step(batch, "test")

    def configure_optimizers(self) -> Any:
        return optimizer_config(self.model, self.optim, self.scheduler)

    def lr_scheduler_step(self, scheduler: Any, metric: Any) -> None:
        step_unless_plateau(scheduler, metric)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["gloria_config"] = to_dict(self.model.config)
