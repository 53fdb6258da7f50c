"""No patient leak: every study of every 5x200 patient leaves CheXpert pretraining (train and valid)."""

from __future__ import annotations

import json

import pandas as pd

from gloria.data.chexpert import patient_id, read_chexpert_csv, split_by_patient, study_key
from gloria.data.chexpert_5x200 import build_5x200
from gloria.data.prepare import prepare_chexpert, write_prepared
from support.dataset_fixtures import chexpert_5x200_rows, chexpert_row, real_metadata, write_chexpert


def test_other_studies_of_drawn_patients_leave_training(tmp_path):
    rows = chexpert_5x200_rows(3)
    # a second study of patients 1..3 (drawn or not), and 6 unrelated patients
    rows += [chexpert_row(p, 2, 1, labels={"No Finding": 1.0}) for p in (1, 2, 3)]
    rows += [chexpert_row(500 + i, 1, 1, labels={"No Finding": 1.0}) for i in range(6)]
    root = write_chexpert(tmp_path, rows, images=False)
    frame = read_chexpert_csv(root / "train.csv")
    drawn = build_5x200(frame, n=2, seed=0)
    drawn.frame.to_csv(tmp_path / "5x200.csv", index=False)
    prepared = prepare_chexpert(
        root, mode="patient", seed=0, reports=None, exclude_5x200=tmp_path / "5x200.csv", valid_fraction=0.3
    )
    kept = prepared.frame
    assert not set(kept["patient_id"]) & drawn.patients
    expected = sum(patient_id(r[0]) in drawn.patients for r in rows)  # every row of a drawn patient
    assert len(kept) == len(rows) - expected
    summary = write_prepared(prepared, tmp_path / "out")
    assert summary["dropped"]["5x200_patients"] == expected
    assert summary["excluded_5x200_patients"] == len(drawn.patients) == 10
    assert (
        json.loads((tmp_path / "out" / "chexpert_summary.json").read_text())["dropped"] == summary["dropped"]
    )


def test_no_5x200_patient_left_on_real_chexpert_train():
    """The real train.csv (torchxrayvision's copy, read in place): the study-level exclusion alone leaves
    other studies of the drawn patients in; the patient-level one leaves none, in train or valid."""
    frame = read_chexpert_csv(real_metadata("chexpert_train.csv.gz"))
    drawn = build_5x200(frame, seed=6)
    patients = drawn.patients
    by_study = split_by_patient(frame, seed=0, exclude_studies=drawn.studies)
    leaked = by_study[by_study["patient_id"].isin(patients)]
    assert len(leaked) > 0 and not set(leaked["Path"].map(study_key)) & drawn.studies
    split = split_by_patient(frame, seed=0, exclude_studies=drawn.studies, exclude_patients=patients)
    assert not set(split["patient_id"]) & patients
    for name in ("train", "valid"):
        assert not set(split.loc[split["split"] == name, "patient_id"]) & patients
    all_patients = pd.Series([patient_id(p) for p in frame["Path"]])
    assert split.attrs["excluded_rows"] == int(all_patients.isin(patients).sum())
    assert len(split) == len(frame) - split.attrs["excluded_rows"]
