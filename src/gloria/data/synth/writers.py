"""SynthCXR files in the real data sets' formats: CheXpert tree and CSVs, the reports CSV, the 5x200 set,
RSNA ``stage_2_train_labels.csv`` + DICOMs, SIIM ``train-rle.csv`` + nested DICOMs, ground truth JSON lines.
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd

from gloria.data.synth.case import Case
from gloria.data.synth.config import SynthConfig
from gloria.data.synth.dicom_writer import write_dicom
from gloria.data.synth.labels import CHEXPERT_LABELS, COMPETITION_TASKS
from gloria.data.synth.records import CHEXPERT_DIR, RSNA_DIR, SIIM_DIR

log = logging.getLogger(__name__)

GROUND_TRUTH_FILE = "synthcxr_ground_truth.jsonl"
REPORTS_FILE = f"{CHEXPERT_DIR}/master_updated.csv"
ZERO_SHOT_FILE = f"{CHEXPERT_DIR}/chexpert_5x200.csv"
RSNA_LABELS_FILE = f"{RSNA_DIR}/stage_2_train_labels.csv"
RSNA_CLASS_FILE = f"{RSNA_DIR}/stage_2_detailed_class_info.csv"
SIIM_RLE_FILE = f"{SIIM_DIR}/train-rle.csv"
CHEXPERT_META = ("Path", "Sex", "Age", "Frontal/Lateral", "AP/PA")


@dataclass(frozen=True)
class DicomTarget:
    """Where one DICOM of a case goes and the identifiers and encoding it is written with."""

    path: Path
    sop_uid: str
    study_uid: str
    series_uid: str
    patient_id: str
    bits_stored: int
    photometric: str


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file, so an interrupted run leaves no partial file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def case_paths(record: dict[str, Any]) -> list[str]:
    """Per-image files of a record, relative to the output folder."""
    return [record["chexpert_path"], record["rsna_path"], record["siim_path"]]


def write_case_files(
    case: Case, record: dict[str, Any], out: Path, cfg: SynthConfig, only_missing: bool = True
) -> int:
    """Write the JPEG and the two DICOMs of ``case`` (skipping existing files); returns files written."""
    written = 0
    jpeg_path = out / record["chexpert_path"]
    if not (only_missing and jpeg_path.exists()):
        ok, buf = cv2.imencode(".jpg", case.image, [cv2.IMWRITE_JPEG_QUALITY, cfg.jpeg_quality])
        if not ok:
            raise ValueError(f"JPEG encoding failed for {jpeg_path}")
        atomic_write_bytes(jpeg_path, buf.tobytes())
        written += 1
    dsize = cfg.output_dicom_size
    pixels = case.image
    if dsize != cfg.size:
        pixels = np.asarray(
            cv2.resize(case.image, (dsize, dsize), interpolation=cv2.INTER_LINEAR), dtype=np.uint8
        )
    ids = case.ids
    rsna = DicomTarget(
        out / record["rsna_path"],
        sop_uid=_uid_from_uuid(ids.rsna_patient_id, "4"),
        study_uid=_uid_from_uuid(ids.rsna_patient_id, "2"),
        series_uid=_uid_from_uuid(ids.rsna_patient_id, "3"),
        patient_id=ids.rsna_patient_id,
        bits_stored=8,
        photometric="MONOCHROME2",
    )
    siim = DicomTarget(
        out / record["siim_path"],
        sop_uid=ids.siim_image_id,
        study_uid=ids.siim_study_uid,
        series_uid=ids.siim_series_uid,
        patient_id=ids.siim_image_id,
        bits_stored=ids.siim_bits_stored,
        photometric=ids.siim_photometric,
    )
    for target in (rsna, siim):
        if only_missing and target.path.exists():
            continue
        tmp = target.path.with_name(target.path.name + ".tmp")
        write_dicom(
            tmp,
            pixels,
            sop_uid=target.sop_uid,
            study_uid=target.study_uid,
            series_uid=target.series_uid,
            patient_id=target.patient_id,
            sex=ids.sex,
            age=ids.age,
            view=ids.ap_pa,
            bits_stored=target.bits_stored,
            photometric=target.photometric,
        )
        os.replace(tmp, target.path)
        written += 1
    return written


def _uid_from_uuid(patient_id: str, kind: str) -> str:
    """A DICOM UID (2.25.<uuid as integer> form) derived from the RSNA patientId."""
    value = uuid.UUID(patient_id).int ^ int(kind)
    return f"2.25.{value}"


def _label_cell(value: float | None) -> float:
    return float("nan") if value is None else float(value)


def chexpert_frame(records: Sequence[dict[str, Any]]) -> pd.DataFrame:
    rows = []
    for r in records:
        row: dict[str, Any] = {
            "Path": r["chexpert_path"],
            "Sex": r["sex"],
            "Age": r["age"],
            "Frontal/Lateral": "Frontal",
            "AP/PA": r["ap_pa"],
        }
        row.update({label: _label_cell(r["labels"][label]) for label in CHEXPERT_LABELS})
        rows.append(row)
    return pd.DataFrame(rows, columns=[*CHEXPERT_META, *CHEXPERT_LABELS])


def select_5x200(train: pd.DataFrame, impressions: dict[str, str], per_class: int, seed: int) -> pd.DataFrame:
    """The 5x200-style zero-shot rows: per competition task, frontal rows with the task 1 and the 12 other
    observations 0 (blank counts as 0, any -1 excludes), ``per_class`` drawn with a seeded generator."""
    frontal = train[train["Frontal/Lateral"] == "Frontal"]
    others = [label for label in CHEXPERT_LABELS if label != "No Finding"]
    rng = np.random.default_rng([seed, 5200])
    parts = []
    for task in COMPETITION_TASKS:
        rest = [label for label in others if label != task]
        filled = frontal[[task, *rest]].fillna(0.0)
        keep = (filled[task] == 1.0) & (filled[rest] == 0.0).all(axis=1)
        candidates = frontal[keep]
        take = min(per_class, len(candidates))
        if take < per_class:
            log.warning("5x200 set: only %d eligible rows for %s (wanted %d)", take, task, per_class)
        chosen = (
            np.sort(rng.choice(len(candidates), size=take, replace=False))
            if take
            else np.array([], dtype=int)
        )
        parts.append(candidates.iloc[chosen])
    out = pd.concat(parts).fillna({label: 0.0 for label in CHEXPERT_LABELS})
    out["Report Impression"] = [impressions[p] for p in out["Path"]]
    return out.reset_index(drop=True)


def _write_csv(frame: pd.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, frame.to_csv(index=False, lineterminator="\n").encode("utf-8"))


def write_tables(records: Sequence[dict[str, Any]], out: Path, seed: int, cfg: SynthConfig) -> dict[str, int]:
    """Every CSV and the ground-truth JSON lines from the records (sorted by index); returns row counts."""
    records = sorted(records, key=lambda r: r["index"])
    counts: dict[str, int] = {}
    chexpert = chexpert_frame(records)
    splits = np.array([r["split"] for r in records])
    for split in ("train", "valid"):
        part = chexpert[splits == split]
        _write_csv(part, out / CHEXPERT_DIR / f"{split}.csv")
        counts[f"chexpert_{split}"] = len(part)
    reports = pd.DataFrame(
        {
            "Path": [r["chexpert_path"] for r in records],
            "Frontal/Lateral": "Frontal",
            "Split": [r["split"] for r in records],
            "Report Impression": [r["impression"] for r in records],
            "Report": [r["report"] for r in records],
        }
    )
    _write_csv(reports, out / REPORTS_FILE)
    per_class = cfg.zero_shot_per_class or max(1, min(200, len(records) // 20))
    impressions = {r["chexpert_path"]: r["impression"] for r in records}
    zero_shot = select_5x200(chexpert[splits == "train"], impressions, per_class, seed)
    _write_csv(zero_shot, out / ZERO_SHOT_FILE)
    counts["zero_shot"] = len(zero_shot)
    rsna_rows: list[dict[str, Any]] = []
    class_rows: list[dict[str, str]] = []
    for r in records:
        pid = r["rsna_patient_id"]
        if r["rsna_boxes"]:
            rsna_rows += [
                {
                    "patientId": pid,
                    "x": float(x),
                    "y": float(y),
                    "width": float(w),
                    "height": float(h),
                    "Target": 1,
                }
                for x, y, w, h in r["rsna_boxes"]
            ]
            class_rows.append({"patientId": pid, "class": "Lung Opacity"})
        else:
            nan = float("nan")
            rsna_rows.append({"patientId": pid, "x": nan, "y": nan, "width": nan, "height": nan, "Target": 0})
            abnormal = r["labels"]["No Finding"] is None
            class_rows.append(
                {"patientId": pid, "class": "No Lung Opacity / Not Normal" if abnormal else "Normal"}
            )
    _write_csv(
        pd.DataFrame(rsna_rows, columns=["patientId", "x", "y", "width", "height", "Target"]),
        out / RSNA_LABELS_FILE,
    )
    _write_csv(pd.DataFrame(class_rows, columns=["patientId", "class"]), out / RSNA_CLASS_FILE)
    counts["rsna_rows"] = len(rsna_rows)
    # SIIM: header and values with the leading space of the Kaggle file
    lines = ["ImageId, EncodedPixels"] + [
        f"{r['siim_image_id']}, {rle}" for r in records for rle in r["siim_rles"]
    ]
    atomic_write_bytes(out / SIIM_RLE_FILE, ("\n".join(lines) + "\n").encode("utf-8"))
    counts["siim_rows"] = len(lines) - 1
    text = "".join(json.dumps(r, sort_keys=True) + "\n" for r in records)
    atomic_write_bytes(out / GROUND_TRUTH_FILE, text.encode("utf-8"))
    counts["images"] = len(records)
    return counts
