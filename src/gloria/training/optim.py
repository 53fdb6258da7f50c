"""Optimiser and scheduler of every task (method.md section 9): Adam with the release's betas (0.5, 0.999)
and ReduceLROnPlateau(0.5, patience 5) stepped once per validation (the release's never fired).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from gloria.training.experiment import OptimSection, SchedulerSection


def trainable(module: nn.Module) -> list[nn.Parameter]:
    """Parameters that receive gradients; ValueError when there are none (everything frozen)."""
    params = [p for p in module.parameters() if p.requires_grad]
    if not params:
        raise ValueError(f"{type(module).__name__} has no trainable parameters (everything is frozen)")
    return params


def build_optimizer(params: Iterable[nn.Parameter], cfg: OptimSection) -> torch.optim.Optimizer:
    """Adam/AdamW with ``cfg.lr``, ``cfg.weight_decay`` and ``cfg.betas``."""
    cls = torch.optim.Adam if cfg.name == "adam" else torch.optim.AdamW
    return cls(list(params), lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)


def optimizer_config(module: nn.Module, optim: OptimSection, scheduler: SchedulerSection) -> dict[str, Any]:
    """Lightning's ``configure_optimizers`` answer: the optimiser and, unless disabled, the plateau schedule
    stepped after every validation on ``scheduler.monitor`` (by ``callbacks.PlateauOnValidation``)."""
    optimizer = build_optimizer(trainable(module), optim)
    if scheduler.name == "none":
        return {"optimizer": optimizer}
    plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode=scheduler.mode, factor=scheduler.factor, patience=scheduler.patience
    )
    return {
        "optimizer": optimizer,
        "lr_scheduler": {
            "scheduler": plateau,
            "monitor": scheduler.monitor,
            "interval": "epoch",
            "frequency": 1,
            "strict": False,
        },
    }


def step_unless_plateau(scheduler: Any, metric: Any) -> None:
    """``LightningModule.lr_scheduler_step``: plateau schedulers are stepped by ``PlateauOnValidation``."""
    if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
        return
    scheduler.step()
