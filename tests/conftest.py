"""Shared fixtures: the tiny preset model and deterministic seeding for every test."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch


@pytest.fixture(autouse=True)
def _warnings_once_per_test() -> None:
    """Warnings logged once per distinct text (gloria.data.reports) are logged again in every test, so a
    test's caplog does not depend on which tests ran before it."""
    from gloria.data.reports import _warn_kept

    _warn_kept.cache_clear()


@pytest.fixture(autouse=True)
def _seed_everything() -> None:
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def tiny_config():
    from gloria.config import tiny_config as make

    return make()


@pytest.fixture()
def tiny_model(tiny_config):
    """A freshly built tiny GLoRIA (random weights, eval mode)."""
    from gloria.model import GLoRIA

    torch.manual_seed(0)
    return GLoRIA(tiny_config).eval()
