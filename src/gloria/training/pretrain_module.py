"""Thin LightningModule for GLoRIA pretraining (method.md section 4): the objective computes the losses,
this class only logs them and hands Lightning the optimiser.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

import lightning.pytorch as L
from lightning.pytorch.core.optimizer import LightningOptimizer
from torch import Tensor

from gloria.alignment.options import LossOptions
from gloria.config import to_dict
from gloria.model import GLoRIA
from gloria.training.experiment import OptimSection, SchedulerSection
from gloria.training.grad_cache import grad_cache_step
from gloria.training.objective import PretrainObjective
from gloria.training.optim import optimizer_config, step_unless_plateau
from gloria.types import ImageFeatures, TextFeatures


def freeze_unused_pooler(model: GLoRIA) -> None:
    """With ``last_n_layers > 1`` the BERT pooler never reaches the loss; DDP would stop on its missing
    gradients, so it is excluded from training (its weights are kept as loaded)."""
    pooler = getattr(model.text_encoder.model, "pooler", None)
    if model.config.text.last_n_layers > 1 and pooler is not None:
        for p in pooler.parameters():
            p.requires_grad_(False)


class PretrainModule(L.LightningModule):
    """Wraps a ``GLoRIA`` (attribute ``model``; checkpoint keys ``model.<release key without gloria.>``).

    ``loss`` options reach the objective unchanged. ``grad_cache_chunks`` > 1 trains each batch by gradient
    caching (``gloria.training.grad_cache``) under manual optimisation, clipping by ``gradient_clip_val``
    itself (Lightning clips only automatic optimisation).
    """

    def __init__(
        self,
        model: GLoRIA,
        optim: OptimSection,
        scheduler: SchedulerSection,
        *,
        loss: LossOptions | None = None,
        grad_cache_chunks: int = 1,
        gradient_clip_val: float | None = None,
    ) -> None:
        super().__init__()
        if grad_cache_chunks < 1:
            raise ValueError(f"grad_cache_chunks must be >= 1, got {grad_cache_chunks}")
        self.model = model
        freeze_unused_pooler(model)
        self.optim = optim
        self.scheduler = scheduler
        self.objective = PretrainObjective(model, loss)
        self.grad_cache_chunks = grad_cache_chunks
        self.gradient_clip_val = gradient_clip_val
        self.automatic_optimization = grad_cache_chunks == 1

    def _log_losses(self, losses: Mapping[str, Tensor], size: int, stage: str) -> None:
        train = stage == "train"
        self.log_dict(
            {f"{stage}_{k}": v.detach() for k, v in losses.items()},
            prog_bar=True,
            on_step=train,
            on_epoch=True,
            batch_size=size,
            sync_dist=not train,
        )

    def _step(self, batch: Mapping[str, Any], stage: str) -> Tensor:
        losses = self.objective(batch)
        self._log_losses(losses, int(batch["image"].shape[0]), stage)
        return losses["loss"]

    def _chunk_backward(self, surrogate: Tensor, last: bool) -> None:
        """Backward of one chunk; under DDP only the last one synchronises the accumulated gradients."""
        if last:
            self.manual_backward(surrogate)
            return
        block = getattr(self.trainer.strategy, "block_backward_sync", contextlib.nullcontext)
        with block():
            self.manual_backward(surrogate)

    def _grad_cache_step(self, batch: Mapping[str, Any]) -> Tensor:
        optimizer = self.optimizers()
        assert isinstance(optimizer, LightningOptimizer)
        optimizer.zero_grad()
        obj = self.objective
        batch = obj.with_tokens(batch)  # tokenised once: every chunk carries its slice of the tokens
        groups = obj.groups(batch)  # the whole batch's keys: the cached loss is the whole batch's

        def loss(image: ImageFeatures, text: TextFeatures) -> dict[str, Tensor]:
            return obj.loss(image, text, groups)

        losses = grad_cache_step(
            obj.encode, loss, batch, self.grad_cache_chunks, self.model, self._chunk_backward
        )
        if self.gradient_clip_val is not None:
            self.clip_gradients(
                optimizer.optimizer, gradient_clip_val=self.gradient_clip_val, gradient_clip_algorithm="norm"
            )
        optimizer.step()
        self._log_losses(losses, int(batch["image"].shape[0]), "train")
        return losses["loss"]

    def training_step(self, batch: Mapping[str, Any], batch_idx: int) -> Tensor:
        if not self.automatic_optimization:
            return self._grad_cache_step(batch)
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
