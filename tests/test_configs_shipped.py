"""Every experiment file in configs/ validates and starts with the command that runs it."""

from __future__ import annotations

from pathlib import Path

import pytest

from gloria.training.experiment import load_experiment

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))


def test_configs_exist() -> None:
    names = {p.stem for p in CONFIGS}
    release = {"chexpert_pretrain", "chexpert_classification", "rsna_classification", "siim_segmentation"}
    assert release <= names
    assert {"synth_pretrain", "synth_classification", "synth_segmentation"} <= names


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_config_validates_and_names_its_command(path: Path) -> None:
    first = path.read_text().splitlines()[0]
    assert first.startswith("# ") and f"-c configs/{path.name}" in first, first
    cfg = load_experiment(path)
    assert cfg.task in ("pretrain", "classification", "segmentation")
