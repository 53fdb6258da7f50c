"""Optimiser and scheduler of every task (method.md section 9): Adam with the release's betas (0.5, 0.999)
and ReduceLROnPlateau(0.5, patience 5) stepped once per validation (the release's never fired).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from gloria.training.experiment import OptimSection, SchedulerSection

log = logging.getLogger(__name__)


def trainable(module: nn.Module) -> list[nn.Parameter]:
    """Parameters that receive gradients; ValueError when there are none (everything frozen)."""
    params = [p for p in module.parameters() if p.requires_grad]
    if not params:
        raise ValueError(f"{type(module).__name__} has no trainable parameters (everything is frozen)")
    return params


def build_optimizer(
    params: Iterable[nn.Parameter] | list[dict[str, Any]], cfg: OptimSection
) -> torch.optim.Optimizer:
    """Adam/AdamW with ``cfg.lr``, ``cfg.weight_decay`` and ``cfg.betas`` (parameter groups may set their
    own ``lr``)."""
    cls = torch.optim.Adam if cfg.name == "adam" else torch.optim.AdamW
    groups: list[Any] = list(params)
    return cls(groups, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)


def parameter_groups(module: nn.Module, optim: OptimSection) -> list[nn.Parameter] | list[dict[str, Any]]:
    """The trainable parameters; with ``optim.text_lr`` two groups: the text tower (``module.text_encoder``)
    at ``text_lr`` and everything else at ``lr``."""
    params = trainable(module)
    text = getattr(module, "text_encoder", None)
    if optim.text_lr is None:
        return params
    if not isinstance(text, nn.Module):
        log.warning("optim.text_lr=%g ignored: %s has no text tower", optim.text_lr, type(module).__name__)
        return params
    text_ids = {id(p) for p in text.parameters()}
    groups = [
        {"params": [p for p in params if id(p) not in text_ids], "lr": optim.lr},
        {"params": [p for p in params if id(p) in text_ids], "lr": optim.text_lr},
    ]
    return [g for g in groups if g["params"]]


def optimizer_config(module: nn.Module, optim: OptimSection, scheduler: SchedulerSection) -> dict[str, Any]:
    """Lightning's ``configure_optimizers`` answer: the optimiser and, unless disabled, the plateau schedule
    stepped after every validation on ``scheduler.monitor`` (by ``callbacks.PlateauOnValidation``)."""
    optimizer = build_optimizer(parameter_groups(module, optim), optim)
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
