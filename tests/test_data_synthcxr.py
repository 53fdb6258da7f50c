"""The real-data loaders read SynthCXR's files unchanged (CheXpert tree, reports CSV, 5x200, RSNA, SIIM)."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pandas as pd
import pytest

from gloria.cli import prepare
from gloria.data.chexpert_5x200 import read_5x200_csv


def run_cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    prepare.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return int(args.func(args))


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory):
    generate = pytest.importorskip("gloria.data.synth.generate").generate
    root = tmp_path_factory.mktemp("synth")
    generate(root, 40, seed=0, progress=False)
    return root


def test_prepare_reads_synthcxr(synth_root, tmp_path):
    chex = synth_root / "CheXpert-v1.0"
    out = tmp_path / "out"
    reports = str(chex / "master_updated.csv")
    zero_shot = chex / "chexpert_5x200.csv"  # SynthCXR writes it in the release's layout (task columns)
    drawn = read_5x200_csv(zero_shot)
    assert len(drawn.frame) > 0
    argv = ["prepare", "chexpert", "--root", str(chex), "--out", str(out), "--reports", reports,
            "--exclude-5x200", str(zero_shot)]  # fmt: skip
    assert run_cli(argv) == 0
    train = pd.read_csv(out / "chexpert_train.csv")
    assert not set(train["Path"]) & set(drawn.frame["Path"])
    assert train["report"].fillna("").str.len().gt(0).mean() > 0.9
    for name in ("rsna_pneumonia", "siim_pneumothorax"):
        source = name.split("_")[0]
        assert run_cli(["prepare", source, "--root", str(synth_root / name), "--out", str(out)]) == 0
        summary = json.loads((out / f"{source}_summary.json").read_text())
        assert summary["missing_images"] == 0
    siim = pd.concat(pd.read_csv(out / f"siim_{s}.csv") for s in ("train", "valid", "test"))
    from gloria.data.siim import load_mask, split_rles

    positive = siim[siim["positive"] == 1].iloc[0]
    mask = load_mask(split_rles(positive["rles"]), height=positive["height"], width=positive["width"])
    assert mask.shape == (positive["height"], positive["width"]) and mask.sum() > 0
    assert np.isin(mask, [0, 1]).all()
