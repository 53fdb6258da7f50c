"""RSNA loader: grouping by sorted patientId, boxes kept, the release split on the real labels file."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from gloria.data.records import boxes_from_json
from gloria.data.rsna import (
    detection_records,
    group_by_patient,
    patient_split,
    read_rsna_labels,
    release_split,
)
from support.dataset_fixtures import real_metadata, rsna_patient_id, write_rsna

# The release split of the real stage-2 labels (26,684 patients): sha256 of each split's sorted patient ids.
PINNED_RELEASE_SPLIT_SHA256 = {
    "train": "fdea2323542c4f7d18037fade8faa8c4610d30600401db8b601f7b5559e64e4c",
    "valid": "6279287fa3e3d1e3099bc878440f5f2deb158ae6e58e3c93960f616fd39884f0",
    "test": "00eda73bce215e4b1dfd37b4eb6f7ea42e5753b33c64fbbb6f7587279129d598",
}


def test_group_sorted_with_boxes(tmp_path):
    root = write_rsna(tmp_path, 7, images=False)
    grouped = group_by_patient(read_rsna_labels(root / "stage_2_train_labels.csv"))
    assert list(grouped["patientId"]) == sorted(rsna_patient_id(i) for i in range(7))
    assert list(grouped["Target"]) == [1 if i % 3 == 0 else 0 for i in range(7)]
    assert boxes_from_json(grouped["boxes"].iloc[3]) == ((13.0, 20.0, 30.0, 40.0), (5.0, 6.0, 7.0, 8.0))
    assert grouped["boxes"].iloc[1] == "[]"
    grouped["split"] = patient_split(grouped, seed=1)
    records = detection_records(grouped, root)
    assert records[3].target == 1 and len(records[3].boxes) == 2
    assert records[0].path == root / "stage_2_train_images" / f"{rsna_patient_id(0)}.dcm"


def test_bad_files(tmp_path):
    root = write_rsna(tmp_path, 3, images=False)
    text = (root / "stage_2_train_labels.csv").read_text()
    (root / "a.csv").write_text(text.replace("Target", "Label"))
    with pytest.raises(ValueError, match=r"a\.csv: missing column\(s\) \['Target'\]"):
        read_rsna_labels(root / "a.csv")
    (root / "b.csv").write_text(text.replace(",,,,0", ",,,,1", 1))
    with pytest.raises(ValueError, match="row 2 has Target 1 but an empty box"):
        group_by_patient(read_rsna_labels(root / "b.csv"))


def test_release_split_on_real_labels():
    labels = read_rsna_labels(real_metadata("kaggle_stage_2_train_labels.csv.zip"))
    grouped = group_by_patient(labels)
    assert len(labels) == 30227 and len(grouped) == 26684
    assert grouped["patientId"].is_monotonic_increasing
    assert int(grouped["Target"].sum()) == 6012
    split = release_split(grouped)
    assert split.value_counts().to_dict() == {"train": 18678, "test": 4003, "valid": 4003}
    # Which patients, from the definition: scikit-learn's shuffle split draws one RandomState(0) permutation;
    # its first ceil(0.3 n) rows are held out, the rest train; the held-out rows, in that order, are split
    # again with RandomState(0): first ceil(n/2) valid (the second return value), the rest test.
    ids = grouped["patientId"].to_numpy()
    perm = np.random.RandomState(0).permutation(len(ids))
    n_held = int(np.ceil(0.30 * len(ids)))
    held = perm[:n_held]
    perm2 = np.random.RandomState(0).permutation(n_held)
    n_valid = int(np.ceil(0.5 * n_held))
    expected = {"train": perm[n_held:], "valid": held[perm2[:n_valid]], "test": held[perm2[n_valid:]]}
    for name, rows in expected.items():
        assert sorted(ids[rows]) == sorted(grouped.loc[split == name, "patientId"]), name
    # Pinned: sha256 of the sorted patient ids of each split (newline-joined), and two patients by name.
    digests = {
        name: hashlib.sha256("\n".join(sorted(grouped.loc[split == name, "patientId"])).encode()).hexdigest()
        for name in ("train", "valid", "test")
    }
    assert digests == PINNED_RELEASE_SPLIT_SHA256
    by_id = dict(zip(grouped["patientId"], split))
    assert by_id["0004cfab-14fd-4e49-80ba-63a80b6bddd6"] == "train"
    assert by_id["0022995a-45eb-4cfa-9a59-cd15f5196c64"] == "test"
    ours = patient_split(grouped, seed=0)
    assert ours.value_counts().to_dict() == {"train": 18678, "test": 4003, "valid": 4003}
    assert (ours != split).any()
