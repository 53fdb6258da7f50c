"""SynthCXR files read back like the real data sets: CheXpert, reports CSV, 5x200, RSNA, SIIM."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pydicom
import pytest

from gloria.data.rle import rle_decode, rle_decode_union
from gloria.data.synth import make_case
from gloria.data.synth.labels import CHEXPERT_LABELS, COMPETITION_TASKS
from support.synth import small_config, synth_set  # noqa: F401  (session fixture)

CHEXPERT_COLUMNS = ["Path", "Sex", "Age", "Frontal/Lateral", "AP/PA", *CHEXPERT_LABELS]


def _records(root: Path) -> list[dict]:
    lines = (root / "synthcxr_ground_truth.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def test_chexpert_csvs_and_tree(synth_set: Path) -> None:  # noqa: F811
    train = pd.read_csv(synth_set / "CheXpert-v1.0" / "train.csv")
    valid = pd.read_csv(synth_set / "CheXpert-v1.0" / "valid.csv")
    assert list(train.columns) == CHEXPERT_COLUMNS and list(valid.columns) == CHEXPERT_COLUMNS
    assert len(train) + len(valid) == 40
    both = pd.concat([train, valid])
    values = set(
        np.unique(
            both[list(CHEXPERT_LABELS)].to_numpy(dtype=float)[~both[list(CHEXPERT_LABELS)].isna().to_numpy()]
        )
    )
    assert values <= {1.0, 0.0, -1.0} and {1.0, 0.0, -1.0} <= values
    assert both[list(CHEXPERT_LABELS)].isna().any().any()  # blanks exist
    for path in both["Path"]:
        assert path.startswith(("CheXpert-v1.0/train/patient", "CheXpert-v1.0/valid/patient"))
        assert path.endswith("/study1/view1_frontal.jpg")
        image = cv2.imread(str(synth_set / path), cv2.IMREAD_UNCHANGED)
        assert image is not None and image.shape == (128, 128) and image.dtype == np.uint8
    assert all(p.split("/")[1] == "valid" for p in valid["Path"])


def test_reports_csv_has_release_roles_and_sections(synth_set: Path) -> None:  # noqa: F811
    reports = pd.read_csv(synth_set / "CheXpert-v1.0" / "master_updated.csv")
    assert list(reports.columns) == ["Path", "Frontal/Lateral", "Split", "Report Impression", "Report"]
    assert set(reports["Split"]) <= {"train", "valid"}
    for impression, report in zip(reports["Report Impression"], reports["Report"]):
        assert "FINDINGS: " in report and "\n\nIMPRESSION: " in report
        assert report.endswith(impression)


def test_zero_shot_set_follows_the_5x200_rule(tmp_path: Path) -> None:
    from gloria.data.synth import SynthConfig, generate

    generate(tmp_path, 120, seed=4, config=SynthConfig(size=128, zero_shot_per_class=4), progress=False)
    zs = pd.read_csv(tmp_path / "CheXpert-v1.0" / "chexpert_5x200.csv")
    train = pd.read_csv(tmp_path / "CheXpert-v1.0" / "train.csv")
    assert list(zs.columns) == [*CHEXPERT_COLUMNS, "Report Impression"]
    assert set(zs["Path"]) <= set(train["Path"])
    assert zs[list(CHEXPERT_LABELS)].notna().all().all()
    others = [label for label in CHEXPERT_LABELS if label != "No Finding"]
    tasks_in_order = []
    for _, row in zs.iterrows():
        positive = [t for t in COMPETITION_TASKS if row[t] == 1.0]
        assert len(positive) == 1
        assert all(row[label] == 0.0 for label in others if label != positive[0])
        tasks_in_order.append(COMPETITION_TASKS.index(positive[0]))
    assert tasks_in_order == sorted(tasks_in_order)
    assert len(zs) >= 12 and max(np.bincount(tasks_in_order)) == 4
    impressions = pd.read_csv(tmp_path / "CheXpert-v1.0" / "master_updated.csv").set_index("Path")
    assert list(zs["Report Impression"]) == [impressions.loc[p, "Report Impression"] for p in zs["Path"]]


def test_rsna_labels_and_dicoms(synth_set: Path) -> None:  # noqa: F811
    root = synth_set / "rsna_pneumonia"
    labels = pd.read_csv(root / "stage_2_train_labels.csv")
    assert list(labels.columns) == ["patientId", "x", "y", "width", "height", "Target"]
    negatives = labels[labels["Target"] == 0]
    assert negatives[["x", "y", "width", "height"]].isna().all().all()
    positives = labels[labels["Target"] == 1]
    assert positives[["x", "y", "width", "height"]].notna().all().all()
    assert labels["patientId"].nunique() == 40
    assert (labels.groupby("patientId").size() > 1).any()  # several boxes for one patient
    for record in _records(synth_set)[:10]:
        ds = pydicom.dcmread(synth_set / record["rsna_path"])
        assert ds.PhotometricInterpretation == "MONOCHROME2" and ds.BitsStored == 8
        assert ds.Rows == ds.Columns == 128
        assert ds.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
        image = make_case(7, record["index"], small_config()).image
        np.testing.assert_array_equal(ds.pixel_array, image)
        rows = labels[labels["patientId"] == record["rsna_patient_id"]]
        boxes = [
            [int(r.x), int(r.y), int(r.width), int(r.height)] for r in rows.itertuples() if r.Target == 1
        ]
        assert boxes == record["rsna_boxes"]


def test_siim_csv_quirks_and_dicoms(synth_set: Path) -> None:  # noqa: F811
    root = synth_set / "siim_pneumothorax"
    text = (root / "train-rle.csv").read_text()
    assert text.startswith("ImageId, EncodedPixels\n")
    table = pd.read_csv(root / "train-rle.csv")
    assert list(table.columns) == ["ImageId", " EncodedPixels"]
    assert (table[" EncodedPixels"] == " -1").any()
    assert table.groupby("ImageId").size().max() > 1  # several regions -> several rows
    found = {p.stem: p for p in (root / "dicom-images-train").rglob("*.dcm")}
    assert set(found) == set(table["ImageId"])
    assert all(len(p.relative_to(root / "dicom-images-train").parts) == 3 for p in found.values())
    photometric, bits = set(), set()
    for record in _records(synth_set):
        ds = pydicom.dcmread(found[record["siim_image_id"]])
        photometric.add(ds.PhotometricInterpretation)
        bits.add(int(ds.BitsStored))
        top = (1 << int(ds.BitsStored)) - 1
        assert ds.WindowWidth == top + 1
        stored = ds.pixel_array.astype(np.float64)
        display = top - stored if ds.PhotometricInterpretation == "MONOCHROME1" else stored
        image = make_case(7, record["index"], small_config()).image
        np.testing.assert_allclose(display * 255.0 / top, image, atol=0.51)
        rles = table.loc[table["ImageId"] == record["siim_image_id"], " EncodedPixels"].tolist()
        union = rle_decode_union(rles, int(ds.Rows), int(ds.Columns))
        truth = np.zeros((128, 128), dtype=np.uint8)
        for finding in record["findings"]:
            if finding["kind"] == "pneumothorax":
                truth |= rle_decode(finding["mask_rle"], 128, 128)
        np.testing.assert_array_equal(union, truth)
    assert photometric == {"MONOCHROME1", "MONOCHROME2"}
    assert {12, 16} <= bits


@pytest.mark.parametrize("dicom_size", [256])
def test_upscaled_dicoms_scale_masks_and_boxes(tmp_path: Path, dicom_size: int) -> None:
    from gloria.data.synth import generate

    cfg = small_config(dicom_size=dicom_size, prevalence={"pneumothorax": 1.0, "opacity": 1.0})
    generate(tmp_path, 3, seed=2, config=cfg, progress=False)
    for record in _records(tmp_path):
        ds = pydicom.dcmread(tmp_path / record["siim_path"])
        assert ds.Rows == dicom_size
        for x, y, w, h in record["rsna_boxes"]:
            assert x >= 0 and y >= 0 and x + w <= dicom_size and y + h <= dicom_size and w > 0 and h > 0
        big = rle_decode_union(record["siim_rles"], dicom_size, dicom_size)
        small = np.zeros((128, 128), dtype=np.uint8)
        for finding in record["findings"]:
            if finding["kind"] == "pneumothorax":
                small |= rle_decode(finding["mask_rle"], 128, 128)
        np.testing.assert_array_equal(big[::2, ::2], small)
