"""``gloria.zero_shot_classification`` and ``gloria zero-shot`` are one implementation: the same class scores
for every ensemble (and legacy), on the same images, prompts and model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from gloria.api import zero_shot_classification
from gloria.config import tiny_config
from gloria.data.synth import SynthConfig, generate
from gloria.model import GLoRIA
from gloria.pretrained.loading import load_gloria
from gloria.tasks.zero_shot import ENSEMBLES, default_negatives
from support.eval_cli import run_command, write_model_dir


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("synth_zs")
    generate(root, 40, seed=1, config=SynthConfig(size=64), progress=False)
    torch.manual_seed(0)
    model_dir = write_model_dir(GLoRIA(tiny_config()).eval(), tmp_path_factory.mktemp("model"))
    (model_dir / "prompts.yaml").write_text(yaml.safe_dump(PROMPTS))
    return root / "CheXpert-v1.0" / "chexpert_5x200.csv", model_dir


# short enough for the legacy formula's word slots (its cap_len counts characters)
PROMPTS = {
    "Atelectasis": ["atelectasis", "basal atelectasis"],
    "Cardiomegaly": ["cardiomegaly", "enlarged heart"],
    "Consolidation": ["consolidation", "focal consolidation"],
    "Edema": ["edema", "mild edema"],
    "Pleural Effusion": ["pleural effusion", "small effusion"],
}


@pytest.mark.parametrize("ensemble", [*ENSEMBLES, "legacy"])
def test_api_and_cli_give_identical_scores(ensemble: str, setup: tuple[Path, Path], tmp_path: Path) -> None:
    csv, model_dir = setup
    out = tmp_path / "zs"
    legacy = ensemble == "legacy"
    argv = ["zero-shot", "--model", str(model_dir), "--device", "cpu", "--data", str(csv), "--out", str(out),
            "--cache", str(tmp_path / "cache"), "--n-boot", "10", "--ensemble", "max" if legacy else ensemble,
            "--prompts", str(model_dir / "prompts.yaml")]  # fmt: skip
    assert run_command("zero_shot", argv + (["--legacy"] if legacy else [])) == 0
    cli = pd.read_csv(out / "scores.csv")

    model = load_gloria(model_dir, "cpu")
    prompts = PROMPTS
    negatives = default_negatives(list(prompts)) if ensemble == "pairs" else None
    images = model.process_img(cli["Path"].tolist(), "cpu")
    api = zero_shot_classification(
        model,
        images,
        model.process_class_prompts(prompts, "cpu"),
        legacy=legacy,
        ensemble="max" if legacy else ensemble,  # type: ignore[arg-type]
        negatives=model.process_class_prompts(negatives, "cpu") if negatives else None,
    )
    assert list(api.columns) == list(cli.columns[2:])
    np.testing.assert_allclose(api.to_numpy(), cli[api.columns].to_numpy(), rtol=0, atol=1e-5)
    assert (api.to_numpy().argmax(1) == cli[api.columns].to_numpy().argmax(1)).all()
