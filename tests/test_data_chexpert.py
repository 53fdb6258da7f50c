"""CheXpert loader: labels by name, uncertain policies, 5x200 selection (fixture and the real train.csv)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from gloria.data.chexpert import (
    COMPETITION_TASKS,
    FIVE_BY_200_OTHERS,
    apply_uncertain_policy,
    image_path,
    labelled_records,
    read_chexpert_csv,
    select_5x200_candidates,
    split_by_patient,
    study_key,
)
from gloria.data.chexpert_5x200 import build_5x200, paths_checksum, read_5x200_csv
from support.dataset_fixtures import (
    chexpert_5x200_rows,
    chexpert_row,
    real_metadata,
    write_chexpert,
    write_reports_csv,
)


def loop_candidates(frame: pd.DataFrame) -> list[tuple[int, str]]:
    """The datasets.md rule, row by row."""
    out = []
    for task in COMPETITION_TASKS:
        for index, row in frame.iterrows():
            if row["Frontal/Lateral"] != "Frontal":
                continue
            value = {c: 0.0 if pd.isna(row[c]) else float(row[c]) for c in FIVE_BY_200_OTHERS}
            if value[task] == 1.0 and all(value[c] == 0.0 for c in FIVE_BY_200_OTHERS if c != task):
                out.append((int(index), task))
    return out


def test_read_checks_columns_and_values(tmp_path):
    root = write_chexpert(tmp_path, [chexpert_row(1, 1, 1, labels={"Edema": -1.0})], images=False)
    frame = read_chexpert_csv(root / "train.csv")
    assert frame["Edema"].iloc[0] == -1.0 and math.isnan(frame["Cardiomegaly"].iloc[0])
    text = (root / "train.csv").read_text().replace("Pleural Effusion", "Effusion")
    (root / "bad.csv").write_text(text)
    with pytest.raises(ValueError, match=r"bad\.csv.*Pleural Effusion"):
        read_chexpert_csv(root / "bad.csv")
    (root / "bad2.csv").write_text((root / "train.csv").read_text().replace("-1.0", "2.0"))
    with pytest.raises(ValueError, match=r"bad2\.csv: row 2 column 'Edema'"):
        read_chexpert_csv(root / "bad2.csv")
    with pytest.raises(FileNotFoundError, match=r"nope\.csv"):
        read_chexpert_csv(root / "nope.csv")


def test_uncertain_policies():
    frame = pd.DataFrame({t: [-1.0, np.nan, 1.0] for t in COMPETITION_TASKS})
    release = apply_uncertain_policy(frame, "release")
    assert release.iloc[0].to_dict() == {
        "Atelectasis": 1.0, "Cardiomegaly": 0.0, "Consolidation": 0.0, "Edema": 1.0, "Pleural Effusion": 1.0,
    }  # fmt: skip
    assert (release.iloc[1] == 0.0).all() and (release.iloc[2] == 1.0).all()
    assert (apply_uncertain_policy(frame, "zeros").iloc[0] == 0.0).all()
    assert (apply_uncertain_policy(frame, "ones").iloc[0] == 1.0).all()
    assert apply_uncertain_policy(frame, "ignore").iloc[0].isna().all()
    with pytest.raises(ValueError, match="'maybe'"):
        apply_uncertain_policy(frame, "maybe")  # type: ignore[arg-type]


def test_paths_resolve_against_root(tmp_path):
    root = tmp_path / "CheXpert-v1.0-small"
    got = image_path(root, "CheXpert-v1.0-small/train/patient00001/study1/view1_frontal.jpg")
    assert got == root / "train/patient00001/study1/view1_frontal.jpg"
    assert study_key("CheXpert-v1.0/train/patient00007/study3/view2_lateral.jpg") == "patient00007/study3"


def test_5x200_candidates_match_loop_on_fixture(tmp_path):
    rows = chexpert_5x200_rows(3)
    rows.append(chexpert_row(90, 1, 1, labels={"Edema": 1.0, "Cardiomegaly": 1.0}))  # two tasks: excluded
    rows.append(chexpert_row(91, 1, 1, labels={"Edema": 1.0, "No Finding": 1.0}))  # No Finding ignored
    rows.append(chexpert_row(92, 1, 1, labels={"Edema": 1.0, "Support Devices": -1.0}))  # -1 excludes
    frame = read_chexpert_csv(write_chexpert(tmp_path, rows, images=False) / "train.csv")
    got = select_5x200_candidates(frame)
    assert list(zip(got.index, got["task"])) == loop_candidates(frame)
    assert got["task"].value_counts().to_dict() == {t: 3 for t in COMPETITION_TASKS} | {"Edema": 4}


def test_build_5x200_seeded_and_training_split_excludes_studies(tmp_path):
    rows = chexpert_5x200_rows(6)
    root = write_chexpert(tmp_path, rows, images=False)
    frame = read_chexpert_csv(root / "train.csv")
    reports = pd.read_csv(write_reports_csv(tmp_path / "master.csv", rows))
    first = build_5x200(frame, reports, n=4, seed=6)
    again = build_5x200(frame, reports, n=4, seed=6)
    other = build_5x200(frame, reports, n=4, seed=7)
    assert first.paths_sha256 == again.paths_sha256 != other.paths_sha256
    assert list(first.frame["task"]) == [t for t in COMPETITION_TASKS for _ in range(4)]
    assert first.frame["Report Impression"].str.startswith("Finding number").all()
    # the release's stream: one legacy RandomState(6) consumed task after task by pandas sample
    rng = np.random.RandomState(6)
    cands = select_5x200_candidates(frame)
    expected = [
        p for t in COMPETITION_TASKS for p in cands[cands.task == t].sample(n=4, random_state=rng)["Path"]
    ]
    assert list(first.frame["Path"]) == expected
    split = split_by_patient(frame, valid_fraction=0.25, seed=0, exclude_studies=first.studies)
    assert not set(split["Path"].map(study_key)) & first.studies  # lateral views of drawn studies gone too
    assert len(split) == len(frame) - 2 * 20
    assert split.groupby("patient_id")["split"].nunique().max() == 1
    with pytest.raises(ValueError, match="fewer than n=7"):
        build_5x200(frame, reports, n=7)
    # round trip through our CSV and the release's layout (task columns instead of a task column)
    first.frame.to_csv(tmp_path / "ours.csv", index=False)
    assert read_5x200_csv(tmp_path / "ours.csv").paths_sha256 == first.paths_sha256
    first.frame.drop(columns="task").to_csv(tmp_path / "release.csv", index=False)
    assert list(read_5x200_csv(tmp_path / "release.csv").frame["task"]) == list(first.frame["task"])
    assert paths_checksum(first.frame["Path"]) == first.paths_sha256


def test_5x200_on_real_chexpert_labels():
    """torchxrayvision's chexpert_train.csv.gz: the real 223,414 rows (its label columns are in another
    order and its paths start with CheXpert-v1.0-small; we select by column name)."""
    frame = read_chexpert_csv(real_metadata("chexpert_train.csv.gz"))
    assert len(frame) == 223414
    got = select_5x200_candidates(frame)
    counts = got["task"].value_counts().to_dict()
    assert counts == {
        "Atelectasis": 1087,
        "Cardiomegaly": 1034,
        "Consolidation": 537,
        "Edema": 2257,
        "Pleural Effusion": 2425,
    }
    assert not got.index.duplicated().any()
    assert (got["Frontal/Lateral"] == "Frontal").all()
    drawn = build_5x200(frame, seed=6)
    assert len(drawn.frame) == 1000 and drawn.frame["Path"].is_unique


def test_labelled_records_apply_policy(tmp_path):
    rows = [chexpert_row(1, 1, 1, labels={"Edema": -1.0, "Cardiomegaly": -1.0, "Atelectasis": 1.0})]
    root = write_chexpert(tmp_path, rows, images=False)
    frame = split_by_patient(read_chexpert_csv(root / "train.csv"), valid_fraction=0.5)
    frame["path"] = [str(image_path(root, p)) for p in frame["Path"]]
    (record,) = labelled_records(frame, policy="release")
    assert record.labels == {
        "Atelectasis": 1.0,
        "Cardiomegaly": 0.0,
        "Consolidation": 0.0,
        "Edema": 1.0,
        "Pleural Effusion": 0.0,
    }
    assert record.patient_id == "patient00001" and record.view == "Frontal"
    assert record.path == root / "train/patient00001/study1/view1_frontal.jpg"
    assert math.isnan(labelled_records(frame, policy="ignore")[0].labels["Edema"])
