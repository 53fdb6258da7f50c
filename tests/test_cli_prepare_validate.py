"""``gloria prepare`` and ``gloria validate-data`` end to end on real-format fixtures."""

from __future__ import annotations

import argparse
import json
import os

import pandas as pd
import pytest

from gloria.cli import prepare, validate_data
from gloria.data.rle import rle_encode
from gloria.data.splits import ids_checksum
from support.dataset_fixtures import (
    chexpert_5x200_rows,
    chexpert_row,
    write_chexpert,
    write_reports_csv,
    write_rsna,
    write_siim,
    write_user_csv,
)


def run_cli(module, argv: list[str]) -> int:
    """Parse with only this command registered (the full table needs every part installed)."""
    parser = argparse.ArgumentParser()
    module.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return int(args.func(args))


def test_rsna_release_split_files(tmp_path):
    root = write_rsna(tmp_path / "rsna", 20)
    argv = ["prepare", "rsna", "--root", str(root), "--out", str(tmp_path / "out"), "--split", "release"]
    assert run_cli(prepare, argv) == 0
    summary = json.loads((tmp_path / "out" / "rsna_summary.json").read_text())
    frames = {s: pd.read_csv(tmp_path / "out" / f"rsna_{s}.csv") for s in ("train", "valid", "test")}
    assert {s: len(f) for s, f in frames.items()} == {"train": 14, "valid": 3, "test": 3}
    for name, frame in frames.items():
        assert "patientId" in frame.columns
        assert summary["splits"][name]["rows"] == len(frame)
        assert summary["splits"][name]["ids_sha256"] == ids_checksum(frame["patientId"])
        assert summary["splits"][name]["positives"]["Target"] == int(frame["Target"].sum())
    assert summary["missing_images"] == 0
    out = str(tmp_path / "out")
    csvs = [os.path.join(out, f"rsna_{s}.csv") for s in ("train", "valid", "test")]
    assert (
        run_cli(validate_data, ["validate-data", *csvs, "--decode"]) == 0
    )  # 12-bit MONOCHROME1 DICOMs decode


def test_missing_images_stop_unless_allowed(tmp_path, caplog):
    root = write_rsna(tmp_path / "rsna", 6)
    for i in (1, 4):
        next((root / "stage_2_train_images").glob(f"0000000{i}-*.dcm")).unlink()
    with pytest.raises(FileNotFoundError, match=r"2 of 6 rsna images are missing, first: \[.*00000001-"):
        run_cli(prepare, ["prepare", "rsna", "--root", str(root)])
    assert not (root / "rsna_summary.json").exists()
    assert run_cli(prepare, ["prepare", "rsna", "--root", str(root), "--allow-missing-images"]) == 0
    assert json.loads((root / "rsna_summary.json").read_text())["missing_images"] == 2


def test_chexpert_5x200_then_training_split(tmp_path):
    rows = chexpert_5x200_rows(4) + [
        chexpert_row(200 + i, 1, 1, labels={"No Finding": 1.0}) for i in range(10)
    ]
    valid_rows = [chexpert_row(900, 1, 1, split="valid")]
    root = write_chexpert(tmp_path, rows, valid_rows=valid_rows)
    reports = write_reports_csv(tmp_path / "master_updated.csv", rows + valid_rows)
    assert run_cli(prepare, ["prepare", "chexpert5x200", "--root", str(root), "--n", "2",
                             "--reports", str(reports)]) == 0  # fmt: skip
    drawn = pd.read_csv(root / "chexpert_5x200.csv")
    assert len(drawn) == 10 and drawn["Report Impression"].notna().all()
    summary = json.loads((root / "chexpert_5x200_summary.json").read_text())
    assert summary["seed"] == 6 and len(summary["paths_sha256"]) == 64
    assert run_cli(prepare, ["prepare", "chexpert", "--root", str(root), "--reports", str(reports)]) == 0
    train = pd.read_csv(root / "chexpert_train.csv")
    valid = pd.read_csv(root / "chexpert_valid.csv")
    test = pd.read_csv(root / "chexpert_test.csv")
    assert len(test) == 1
    drawn_studies = {p.rsplit("/", 1)[0] for p in drawn["Path"]}
    for frame in (train, valid):
        assert not {p.rsplit("/", 1)[0] for p in frame["Path"]} & drawn_studies
    assert len(train) + len(valid) == len(rows) - 2 * 10
    assert not set(train["patient_id"]) & set(valid["patient_id"])
    assert run_cli(prepare, ["prepare", "chexpert", "--root", str(root), "--frontal-only"]) == 0
    summary = json.loads((root / "chexpert_summary.json").read_text())
    assert summary["dropped"] == {"5x200_patients": 20, "non_frontal": 10}  # 10 drawn x 2 views; laterals
    assert summary["splits"]["test"]["rows"] == 1
    with pytest.raises(ValueError, match="use --split patient"):
        run_cli(prepare, ["prepare", "chexpert", "--root", str(root), "--split", "release"])


def test_siim_balanced_and_csv_with_validation_errors(tmp_path, caplog):
    import numpy as np

    mask = np.zeros((1024, 1024), np.uint8)
    mask[5:9, 5:9] = 1
    regions = [[rle_encode(mask)] if i % 4 == 0 else [] for i in range(20)]
    root = write_siim(tmp_path / "siim", regions)
    assert run_cli(prepare, ["prepare", "siim", "--root", str(root)]) == 0
    train = pd.read_csv(root / "siim_train.csv")
    assert int(train["positive"].sum()) * 2 == len(train)
    assert all(p.endswith(".dcm") and os.path.isfile(p) for p in train["path"])

    user = write_user_csv(tmp_path / "user", 24, empty_every=5)
    argv = ["prepare", "csv", "--root", str(user), "--path-col", "image", "--report-col", "text",
            "--patient-col", "patient", "--label-cols", "label"]  # fmt: skip
    assert run_cli(prepare, argv) == 0
    summary = json.loads((user / "csv_summary.json").read_text())
    assert summary["dropped"] == {"empty_report": 5}
    parts = [user / f"csv_{s}.csv" for s in ("train", "valid", "test")]
    assert sum(len(pd.read_csv(p)) for p in parts) == 19
    assert run_cli(validate_data, ["validate-data", *map(str, parts)]) == 0
    # break it: an empty report, a missing image, a patient in two splits
    first = pd.read_csv(parts[0])
    first.loc[0, "report"] = ""
    first.loc[1, "path"] = str(user / "images" / "gone.jpg")
    first.to_csv(parts[0], index=False)
    other = pd.read_csv(parts[1])
    other.loc[0, "patient_id"] = first.loc[2, "patient_id"]
    other.to_csv(parts[1], index=False)
    report_path = tmp_path / "report.json"
    code = run_cli(validate_data, ["validate-data", *map(str, parts), "--json", str(report_path)])
    assert code == 1
    kinds = {i["kind"]: i for i in json.loads(report_path.read_text())["issues"]}
    assert set(kinds) == {"empty report", "missing image", "patient in several splits"}
    assert kinds["empty report"]["examples"] == [f"{parts[0]} line 2"]
    assert kinds["missing image"]["examples"] == [str(user / "images" / "gone.jpg")]
    caplog.set_level("INFO")
    assert run_cli(validate_data, ["validate-data", str(parts[0]), "--path-col", "image"]) == 1
    assert "missing column: 1" in caplog.text and f"{parts[0]}: path column 'image'" in caplog.text
