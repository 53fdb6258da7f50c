"""MIMIC-CXR report sectioning and loader; a user's own image-report CSV; seeded patient splits."""

from __future__ import annotations

import pandas as pd
import pytest

from gloria.data.csv_reports import ReportColumns, read_report_csv, report_records
from gloria.data.mimic import parse_sections, read_mimic, report_text
from gloria.data.splits import assign_patient_splits, ids_checksum, leaked_ids, split_ids
from support.dataset_fixtures import MIMIC_REPORT, write_mimic, write_user_csv


def test_sections_of_a_realistic_report():
    sections = parse_sections(MIMIC_REPORT)
    assert list(sections) == [
        "PREAMBLE", "EXAMINATION", "INDICATION", "TECHNIQUE", "COMPARISON", "FINDINGS", "IMPRESSION",
    ]  # fmt: skip
    assert sections["PREAMBLE"] == "FINAL REPORT"
    assert sections["INDICATION"] == "___F with cough // eval for pneumonia"
    assert sections["FINDINGS"] == (
        "There is no focal consolidation, pleural effusion or pneumothorax. Heart size is normal."
    )
    assert report_text(sections) == "No acute cardiopulmonary process."
    assert report_text(sections, include_findings=True).startswith("There is no focal")
    assert report_text(sections, include_findings=True).endswith("No acute cardiopulmonary process.")
    assert report_text(parse_sections("FINAL REPORT\n CONCLUSION: Clear lungs.")) == "Clear lungs."
    assert report_text(parse_sections("FINDINGS: Clear lungs.\n")) == ""
    assert parse_sections("IMPRESSION: a.\nIMPRESSION: b.")["IMPRESSION"] == "a. b."


def test_read_mimic_layout_views_and_dropped_counts(tmp_path):
    studies = [
        {"subject": 10000032, "study": 50414267, "split": "train", "views": ["PA", "LATERAL"],
         "report": MIMIC_REPORT, "labels": {"No Finding": 1.0}},
        {"subject": 10000032, "study": 53189527, "split": "train", "views": ["AP"],
         "report": "FINAL REPORT\n FINDINGS: Small effusion.\n IMPRESSION:\n\n"},
        {"subject": 11000011, "study": 51029426, "split": "validate", "views": ["AP"], "report": None},
        {"subject": 12000012, "study": 52029426, "split": "test", "views": ["PA", "AP"],
         "report": "IMPRESSION: Pneumonia.", "labels": {"Pneumonia": 1.0}},
    ]  # fmt: skip
    root = write_mimic(tmp_path, studies)
    table = read_mimic(root)
    assert table.dropped == {"view": 1, "missing_report": 1, "empty_report": 1}
    frame = table.frame
    assert list(frame["split"]) == ["train", "test", "test"]
    assert list(frame["view"]) == ["PA", "PA", "AP"]
    assert frame["path"].iloc[0].startswith(str(root / "files/p10/p10000032/s50414267/"))
    assert all(pd.io.common.file_exists(p) for p in frame["path"])
    assert frame["Pneumonia"].iloc[1] == 1.0 and frame["No Finding"].iloc[0] == 1.0
    with_findings = read_mimic(root, include_findings=True)
    assert with_findings.dropped["empty_report"] == 0
    assert "Small effusion." in set(with_findings.frame["report"])
    (root / "mimic-cxr-2.0.0-split.csv").write_text("dicom_id,study_id\nx,1\n")
    with pytest.raises(ValueError, match=r"split\.csv: missing column\(s\) \['split'\]"):
        read_mimic(root)


def test_user_csv_roles_labels_and_empty_reports(tmp_path):
    root = write_user_csv(tmp_path, 6, empty_every=3)
    cols = ReportColumns(path="image", report="text", patient="patient", labels=("label",))
    table = read_report_csv(root / "reports.csv", cols)
    assert table.dropped["empty_report"] == 2
    assert list(table.frame["source_path"]) == [
        "images/img1.jpg",
        "images/img2.jpg",
        "images/img4.jpg",
        "images/img5.jpg",
    ]
    assert table.frame["report"].iloc[0] == "Small effusion 1. No pneumothorax."
    records = report_records(table.frame, labels=("label",))
    assert records[0].path == root / "images/img1.jpg" and records[0].labels == {"label": 1.0}
    frame = pd.read_csv(root / "reports.csv")
    frame["split"] = ["Training", "Validation", "test", "val", "train", "TEST"]
    frame.to_csv(root / "split.csv", index=False)
    roles = ReportColumns(path="image", report="text", split="split")
    with_split = read_report_csv(root / "split.csv", roles)
    assert list(with_split.frame["split"]) == ["valid", "test", "train", "test"]
    frame.loc[4, "split"] = "holdout"
    frame.to_csv(root / "split.csv", index=False)
    with pytest.raises(ValueError, match=r"split\.csv: row 6 split 'holdout'"):
        read_report_csv(root / "split.csv", roles)
    with pytest.raises(ValueError, match=r"reports\.csv: missing column\(s\) \['caption'\]"):
        read_report_csv(root / "reports.csv", ReportColumns(path="image", report="caption"))


def plain_split(ids, fractions, seed):
    """The splits.py rule written as a loop."""
    import numpy as np

    unique = sorted({str(i) for i in ids})
    order = np.random.default_rng(seed).permutation(len(unique))
    names = list(fractions)
    sizes = [round(fractions[n] * len(unique)) for n in names[1:]]
    sizes = [len(unique) - sum(sizes), *sizes]
    out, k = {}, 0
    for name, size in zip(names, sizes):
        for _ in range(size):
            out[unique[order[k]]] = name
            k += 1
    return out


def test_patient_splits_and_checksums():
    ids = [f"p{i}" for i in range(101)]
    fractions = {"train": 0.7, "valid": 0.15, "test": 0.15}
    got = split_ids(ids, fractions, seed=4)
    assert got == plain_split(ids, fractions, 4)
    assert pd.Series(got).value_counts().to_dict() == {"train": 71, "valid": 15, "test": 15}
    frame = pd.DataFrame({"patient": [f"p{i // 3}" for i in range(90)]})
    frame["split"] = assign_patient_splits(frame, "patient", seed=0)
    assert leaked_ids(frame, "patient", "split") == []
    frame.loc[0, "split"] = "test" if frame.loc[1, "split"] != "test" else "valid"
    assert leaked_ids(frame, "patient", "split") == ["p0"]
    assert ids_checksum(["b", "a", "a"]) == ids_checksum(["a", "b"]) != ids_checksum(["a"])
    with pytest.raises(ValueError, match="sum to"):
        split_ids(ids, {"train": 0.5, "test": 0.2})


def test_sections_of_real_openi_reports():
    """The 3,955 Indiana University reports (torchxrayvision's NLMCXR_reports.tgz, read in place): lay each
    report's XML sections out as MIMIC-style free text and cut it back into the same sections."""
    import tarfile
    import xml.etree.ElementTree as ET  # a file shipped in an installed package, not user input

    from gloria.data.csv_reports import normalise_report
    from support.dataset_fixtures import real_metadata

    total = no_impression = 0
    with tarfile.open(real_metadata("NLMCXR_reports.tgz")) as archive:
        for member in archive:
            if not member.name.endswith(".xml"):
                continue
            handle = archive.extractfile(member)
            assert handle is not None
            xml_root = ET.fromstring(handle.read())
            sections = {a.get("Label"): a.text or "" for a in xml_root.iter("AbstractText")}
            text = "FINAL REPORT\n" + "".join(f" {title}: {body}\n\n" for title, body in sections.items())
            got = parse_sections(text)
            assert got == {"PREAMBLE": "FINAL REPORT"} | {k: normalise_report(v) for k, v in sections.items()}
            total += 1
            no_impression += report_text(got) == ""
    assert (total, no_impression) == (3955, 34)


def test_prepare_mimic_official_and_patient_split(tmp_path):
    import argparse
    import json

    from gloria.cli import prepare

    studies = [
        {"subject": 10000000 + i, "study": 50000000 + i, "split": ["train", "validate", "test"][i % 3],
         "views": ["PA"], "report": MIMIC_REPORT}
        for i in range(12)
    ]  # fmt: skip
    root = write_mimic(tmp_path, studies)
    for mode in ("release", "patient"):
        parser = argparse.ArgumentParser()
        prepare.register(parser.add_subparsers())
        args = parser.parse_args(
            ["prepare", "mimic", "--root", str(root), "--split", mode, "--out", str(tmp_path / mode)]
        )
        assert args.func(args) == 0
        summary = json.loads((tmp_path / mode / "mimic_summary.json").read_text())
        counts = {name: info["rows"] for name, info in summary["splits"].items()}
        assert sum(counts.values()) == 12
        if mode == "release":
            assert counts == {"train": 4, "valid": 4, "test": 4}
    train = pd.read_csv(tmp_path / "release" / "mimic_train.csv")
    assert set(train["report"]) == {"No acute cardiopulmonary process."}
