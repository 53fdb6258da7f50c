"""Optimiser groups: the text tower's own learning rate (``optim.text_lr``), frozen parameters left out."""

from __future__ import annotations

import logging

import pytest
import torch
from torch import nn

from gloria.model import GLoRIA
from gloria.training.experiment import OptimSection, SchedulerSection
from gloria.training.optim import optimizer_config, parameter_groups


def _ids(params: list[nn.Parameter]) -> set[int]:
    return {id(p) for p in params}


def test_text_lr_puts_the_text_tower_in_its_own_group(tiny_config) -> None:
    model = GLoRIA(tiny_config)
    model.text_encoder.freeze_layers(2)
    trainable = [p for p in model.parameters() if p.requires_grad]
    text = [p for p in model.text_encoder.parameters() if p.requires_grad]

    assert parameter_groups(model, OptimSection(lr=1e-3)) == trainable  # no text_lr: one group
    optimizer = optimizer_config(model, OptimSection(lr=1e-3, text_lr=2e-5), SchedulerSection(name="none"))[
        "optimizer"
    ]
    image_group, text_group = optimizer.param_groups
    assert (image_group["lr"], text_group["lr"]) == (1e-3, 2e-5)
    assert _ids(text_group["params"]) == _ids(text)
    assert _ids(image_group["params"]) == _ids(trainable) - _ids(text)
    assert not _ids(image_group["params"] + text_group["params"]) & {
        id(p) for p in model.parameters() if not p.requires_grad
    }


def test_text_lr_without_a_text_tower_warns_and_uses_one_group(caplog: pytest.LogCaptureFixture) -> None:
    head = nn.Linear(4, 2)
    with caplog.at_level(logging.WARNING, logger="gloria.training.optim"):
        groups = parameter_groups(head, OptimSection(lr=1e-3, text_lr=2e-5))
    assert groups == list(head.parameters())
    assert "text_lr=2e-05 ignored: Linear has no text tower" in caplog.text
    optimizer = optimizer_config(head, OptimSection(lr=1e-3, text_lr=2e-5), SchedulerSection())["optimizer"]
    assert isinstance(optimizer, torch.optim.Adam) and optimizer.param_groups[0]["lr"] == 1e-3
