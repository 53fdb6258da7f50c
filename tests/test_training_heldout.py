"""No evaluation image or patient reaches the training split of any documented pretraining route."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from gloria.data.chexpert import patient_id
from gloria.data.synth import SynthConfig, generate
from gloria.demo import evaluate, training
from gloria.demo.settings import demo_settings
from gloria.training.experiment import experiment_from_dict, load_experiment
from gloria.training.sources import load_split_records

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))
PRETRAIN = [p for p in CONFIGS if load_experiment(p).task == "pretrain"]
# routes whose data holds no image of an evaluation set, with the reason
NO_EVALUATION_SET = {"mimic_pretrain": "MIMIC-CXR; the 5x200 zero-shot set is drawn from CheXpert"}
EVAL_CSV = "CheXpert-v1.0/chexpert_5x200.csv"


@pytest.fixture(scope="module")
def synth_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """160 SynthCXR images at 64 px with a 15-image 5x200-style set (3 per class)."""
    out = tmp_path_factory.mktemp("synth_heldout")
    generate(out, 160, seed=0, config=SynthConfig(size=64, zero_shot_per_class=3), progress=False)
    return out


def _train_patients(records: list) -> set[str]:
    return {patient_id(r.path.as_posix()) for r in records}


def _eval_patients(root: Path) -> tuple[set[str], set[str]]:
    paths = pd.read_csv(root / EVAL_CSV)["Path"].astype(str)
    return set(paths), {patient_id(p) for p in paths}


def test_the_synthetic_evaluation_set_is_drawn_from_the_training_split(synth_set: Path) -> None:
    """Without the exclusion the test below would be empty: the 5x200 rows sit in the train split."""
    reports = pd.read_csv(synth_set / "CheXpert-v1.0" / "master_updated.csv")
    train = reports[reports["Split"] == "train"]
    paths, patients = _eval_patients(synth_set)
    assert paths and paths <= set(train["Path"])
    assert patients <= {patient_id(p) for p in train["Path"]}


@pytest.mark.parametrize("path", PRETRAIN, ids=[p.stem for p in PRETRAIN])
def test_pretraining_config_trains_on_no_evaluation_patient(path: Path, synth_set: Path) -> None:
    cfg = load_experiment(path)
    if path.stem in NO_EVALUATION_SET:
        assert cfg.data.exclude_csv == (), NO_EVALUATION_SET[path.stem]
        return
    # every other pretraining route reads a CheXpert-layout tree: run it on the SynthCXR one
    assert cfg.data.train_csv == "master_updated.csv", f"{path.name}: a new route; add it to this test"
    cfg = cfg.replace([f"data.root={synth_set / 'CheXpert-v1.0'}"])
    split = load_split_records(cfg.data, seed=cfg.seed)
    paths, patients = _eval_patients(synth_set)
    trained = {r.path.relative_to(synth_set).as_posix() for r in split.train + split.valid}
    assert not trained & paths
    assert not _train_patients(split.train + split.valid) & patients
    assert split.info["excluded_patients_of"] == [str(synth_set / EVAL_CSV)]


def test_the_demo_route_trains_on_no_evaluation_patient(synth_set: Path, tmp_path: Path) -> None:
    data = evaluate.read_zero_shot_set(synth_set)
    rel = [p.relative_to(synth_set).as_posix() for p in data.paths]
    csv, _ = training.pretraining_csv(synth_set, rel, tmp_path / "pretrain.csv")
    cfg = training.pretrain_config(demo_settings("smoke"), synth_set, csv, seed=0)
    split = load_split_records(cfg.data, seed=0)
    _, patients = _eval_patients(synth_set)
    assert not _train_patients(split.train + split.valid) & patients


def _write(path: Path, rows: list[dict[str, str]]) -> None:
    pd.DataFrame(rows).to_csv(path, index=False)


def _route(root: Path, **data: object) -> dict:
    base = {"source": "image_report", "root": str(root), "train_csv": "reports.csv", "image_root": "..",
            "split_column": "Split"}  # fmt: skip
    return {"task": "pretrain", "model": {"preset": "tiny"}, "data": {**base, **data}}


def test_every_image_of_an_evaluation_patient_leaves_every_split(tmp_path: Path) -> None:
    root = tmp_path / "CheXpert-v1.0"
    root.mkdir()
    rows = [
        ("train/patient00001/study1/view1_frontal.jpg", "train"),  # in the evaluation set
        ("train/patient00001/study2/view1_frontal.jpg", "train"),  # same patient, other study
        ("train/patient00001/study3/view1_frontal.jpg", "valid"),
        ("train/patient00002/study1/view1_frontal.jpg", "train"),
        ("train/patient00003/study1/view1_frontal.jpg", "valid"),
    ]
    _write(root / "reports.csv", [{"Path": f"CheXpert-v1.0/{p}", "Split": s, "Report Impression": "Edema."}
                                  for p, s in rows])  # fmt: skip
    _write(root / "chexpert_5x200.csv", [{"Path": f"CheXpert-v1.0/{rows[0][0]}", "task": "Edema"}])
    kept = load_split_records(experiment_from_dict(_route(root)).data, seed=0)
    assert {r.patient_id for r in kept.train} == {"CheXpert-v1.0/train/patient00002/study1/view1_frontal.jpg"}
    assert len(kept.valid) == 1 and "patient00003" in str(kept.valid[0].path)
    everything = load_split_records(experiment_from_dict(_route(root, exclude_csv=[])).data, seed=0)
    assert (len(everything.train), len(everything.valid)) == (3, 2)
    with pytest.raises(FileNotFoundError, match=r"other\.csv"):
        load_split_records(experiment_from_dict(_route(root, exclude_csv=["other.csv"])).data, seed=0)
