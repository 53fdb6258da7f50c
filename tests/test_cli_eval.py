"""The evaluation commands end to end on a small SynthCXR set with a saved tiny model (random weights)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from gloria.data.synth import SynthConfig, generate
from support.eval_cli import run_command, write_model_dir


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth_eval")
    generate(out, 60, seed=0, config=SynthConfig(size=64), progress=False)
    return out


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch

    from gloria.config import tiny_config
    from gloria.model import GLoRIA

    torch.manual_seed(0)
    return write_model_dir(GLoRIA(tiny_config()).eval(), tmp_path_factory.mktemp("model"))


def _csv(root: Path) -> Path:
    return root / "CheXpert-v1.0" / "chexpert_5x200.csv"


def test_zero_shot_command_writes_metrics_scores_and_figures(
    synth_root: Path, model_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "zs"
    argv = ["zero-shot", "--model", str(model_dir), "--data", str(_csv(synth_root)), "--out", str(out)]
    argv += [
        "--cache",
        str(tmp_path / "cache"),
        "--n-boot",
        "50",
        "--ensemble",
        "pairs",
        "--calibrate",
        "platt",
    ]
    assert run_command("zero_shot", argv) == 0
    rows = pd.read_csv(_csv(synth_root))
    scores = pd.read_csv(out / "scores.csv")
    assert len(scores) == len(rows) and list(scores.columns[2:]) == [
        "Atelectasis",
        "Cardiomegaly",
        "Consolidation",
        "Edema",
        "Pleural Effusion",
    ]
    assert ((scores.iloc[:, 2:] > 0) & (scores.iloc[:, 2:] < 1)).all().all()  # pairs give probabilities
    res = json.loads((out / "results.json").read_text())
    assert 0.0 <= res["zero_shot"]["accuracy"]["value"] <= 1.0
    assert res["settings"]["negative_prompts"]["Edema"] == ["no edema"]
    assert set(res["calibration"]) >= {"ece_softmax_of_scores", "ece_calibrated"}
    n_test = sum(sum(r) for r in res["zero_shot"]["confusion_matrix"])
    assert n_test == len(rows) - max(1, int(0.2 * len(rows)))
    assert (out / "figures" / "zero_shot_confusion.png").is_file()


def test_zero_shot_legacy_skips_prompts_too_long_for_it(
    synth_root: Path, model_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The tiny model has 32 word slots: --legacy scores the prompts of at most 31 characters, names the
    others; a class with no fitting prompt stops the command with its name."""
    long = "moderate interstitial pulmonary edema present"
    prompts = {"Atelectasis": ["atelectasis"], "Cardiomegaly": ["cardiomegaly"],
               "Consolidation": ["consolidation"], "Edema": ["mild edema", long],
               "Pleural Effusion": ["small effusion"]}  # fmt: skip
    (tmp_path / "prompts.yaml").write_text(json.dumps(prompts))
    out = tmp_path / "zs"
    argv = ["zero-shot", "--model", str(model_dir), "--data", str(_csv(synth_root)), "--out", str(out),
            "--cache", str(tmp_path / "cache"), "--n-boot", "20", "--legacy",
            "--prompts", str(tmp_path / "prompts.yaml")]  # fmt: skip
    with caplog.at_level(logging.WARNING):
        assert run_command("zero_shot", argv) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["settings"]["legacy_prompts_replaced"] == {"Edema": {"skipped": [long], "added": []}}
    assert long in caplog.text and long in (out / "report.md").read_text()
    default = ["zero-shot", "--model", str(model_dir), "--data", str(_csv(synth_root)), "--out", str(out),
               "--cache", str(tmp_path / "cache"), "--legacy"]  # fmt: skip
    with pytest.raises(ValueError, match="no prompt of class 'Atelectasis' fits"):
        run_command("zero_shot", default)


def test_retrieve_command(synth_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "rt"
    argv = ["retrieve", "--model", "preset:tiny", "--data", str(_csv(synth_root)), "--out", str(out)]
    argv += ["--cache", str(tmp_path / "cache"), "--ks", "1", "5", "1000", "--chunk-size", "7"]
    assert run_command("retrieve", argv) == 0
    res = json.loads((out / "results.json").read_text())["retrieval"]
    assert len(res) == 6
    for row in res:
        assert set(row["precision_at_k"]) == {"1", "5"}  # K=1000 > candidates is dropped
        assert all(0.0 <= v <= 1.0 for v in row["precision_at_k"].values())


def test_attend_command_maps_in_original_pixels(synth_root: Path, model_dir: Path, tmp_path: Path) -> None:
    import cv2

    image = next((synth_root / "CheXpert-v1.0" / "train").rglob("*.jpg"))
    wide = tmp_path / "wide.png"  # landscape, so padding and crop both matter
    cv2.imwrite(str(wide), cv2.resize(cv2.imread(str(image), cv2.IMREAD_GRAYSCALE), (150, 96)))
    png, maps = tmp_path / "map.png", tmp_path / "maps.npz"
    argv = ["attend", str(wide), "--model", str(model_dir), "--text", "small left pleural effusion"]
    assert run_command("attend", [*argv, "--out", str(png), "--save-maps", str(maps)]) == 0
    assert png.read_bytes()[:4] == b"\x89PNG"
    with np.load(maps) as data:
        assert data["maps"].shape == (5, 96, 150)
        assert list(data["titles"]) == ["phrase (two_stage)", "small", "left", "pleural", "effusion"]
        phrase = data["maps"][0]
        # landscape: padded top/bottom (kept), centre crop cuts columns at the sides (NaN)
        assert np.isnan(phrase[48, 0]) and np.isfinite(phrase[48, 75]) and np.isfinite(phrase[0, 75])
        inside = np.isfinite(phrase)  # the phrase map is the mean of the word maps
        np.testing.assert_allclose(
            data["maps"][1:, inside].mean(axis=0), phrase[inside], rtol=1e-4, atol=1e-7
        )


def test_attend_evaluate_and_embed_commands(
    synth_root: Path, model_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    out = tmp_path / "gr"
    argv = ["attend", "--model", str(model_dir), "--evaluate", str(synth_root), "--out", str(out)]
    assert run_command("attend", [*argv, "--max-cases", "10"]) == 0
    summary = json.loads((out / "results.json").read_text())["grounding"]
    assert set(summary) == {
        "two_stage",
        "two_stage_no_cls",
        "first_stage",
        "cosine",
        "random",
        "prior_class",
        "prior_class_side_level",
    }
    assert all(row["n"] == 5 for row in summary.values())
    assert (out / "figures" / "example_0.png").is_file()

    emb = tmp_path / "emb.npz"
    folder = synth_root / "CheXpert-v1.0" / "valid"
    texts = tmp_path / "texts.csv"
    texts.write_text("text\nsmall left pleural effusion\nheart size is normal\n")
    argv = ["embed", "--model", str(model_dir), "--images", str(folder), "--out", str(emb)]
    argv += ["--texts", str(texts), "--cache", str(tmp_path / "cache"), "--no-progress"]
    with caplog.at_level(logging.INFO, logger="gloria.cli.embed"):
        assert run_command("embed", argv) == 0
        assert run_command("embed", argv) == 0
    n = len(list(folder.rglob("*.jpg")))
    assert f"{n} images ({n} from cache)" in caplog.text
    with np.load(emb) as data:
        assert data["embeddings"].shape == (n, 32) and data["text_embeddings"].shape == (2, 32)


def test_rsna_grounding_cases_are_box_masks(synth_root: Path) -> None:
    from gloria.tasks.grounding import rsna_grounding_cases
    from gloria.tasks.metrics import box_to_mask

    root = synth_root / "rsna_pneumonia"
    labels = pd.read_csv(root / "stage_2_train_labels.csv")
    positives = labels[labels["Target"] == 1]
    cases = rsna_grounding_cases(root)
    assert len(cases) == positives["patientId"].nunique()
    case = cases[0]
    pid = case.image_path.stem
    expected = np.zeros_like(case.mask)
    for x, y, w, h in positives[positives["patientId"] == pid][["x", "y", "width", "height"]].to_numpy():
        expected |= box_to_mask((x, y, w, h), *case.mask.shape)
    np.testing.assert_array_equal(case.mask, expected)
    assert case.label == "Lung Opacity" and case.finding_words == ["opacity", "pneumonia"]
