"""SynthCXR in the shapes of the field's benchmarks, so each runs offline end to end: multi-label and binary
(RSNA-like pneumonia, SIIM-like pneumothorax) zero-shot sets, and phrase-box / box / mask grounding sets in
the MS-CXR CSV format (``gloria.data.phrase_boxes``), each with a manifest.

Images of SynthCXR's training split keep ``split=train`` (zero-shot leaves them out; grounding fits its
image-blind priors on them); the held-out patients are cut in half, seeded, into ``valid`` (thresholds) and
``test``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from gloria.data.chexpert import CHEXPERT_LABELS
from gloria.data.manifest import table_manifest, write_json_atomic
from gloria.data.phrase_boxes import MS_CXR_COLUMNS, write_csv_atomic
from gloria.data.splits import split_ids

log = logging.getLogger(__name__)

GROUND_TRUTH = "synthcxr_ground_truth.jsonl"
RSNA_PHRASE = "lung opacity concerning for pneumonia"
SIIM_PHRASE = "pneumothorax"
FILES = {
    "multilabel": "synth_multilabel.csv",
    "rsna_binary": "synth_rsna_binary.csv",
    "siim_binary": "synth_siim_binary.csv",
    "phrase_boxes": "synth_ms_cxr.csv",
    "rsna_boxes": "synth_rsna_boxes.csv",
    "siim_masks": "synth_siim_masks.csv",
}
MANIFEST = "synth_benchmarks.json"


def read_records(root: str | Path) -> list[dict[str, Any]]:
    path = Path(root) / GROUND_TRUTH
    if not path.is_file():
        raise FileNotFoundError(f"SynthCXR ground truth not found: {path} (generate with `gloria synth`)")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def record_splits(records: Sequence[dict[str, Any]], seed: int = 0) -> list[str]:
    """``train`` for SynthCXR's training images; held-out patients halved into ``valid`` / ``test``."""
    held = [str(r["patient"]) for r in records if r["split"] != "train"]
    if not held:
        raise ValueError("SynthCXR set has no held-out (non-train) images to evaluate on")
    mapping = split_ids(held, {"test": 0.5, "valid": 0.5}, seed=seed)
    return ["train" if r["split"] == "train" else mapping[str(r["patient"])] for r in records]


def _label(value: object) -> float | None:
    return None if value is None else float(value)  # type: ignore[arg-type]


def _bbox(mask: np.ndarray) -> tuple[int, int, int, int]:
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    return int(cols[0]), int(rows[0]), int(cols[-1] - cols[0] + 1), int(rows[-1] - rows[0] + 1)


def _dicom_id(path: str) -> str:
    return Path(path).with_suffix("").as_posix().replace("/", "_")


def build_tables(root: str | Path, *, seed: int = 0) -> dict[str, pd.DataFrame]:
    """The six tables (keys of :data:`FILES`) of a generated SynthCXR folder, paths relative to it."""
    from gloria.tasks.grounding import synth_grounding_cases

    base = Path(root)
    records = read_records(base)
    splits = record_splits(records, seed)
    multilabel = pd.DataFrame(
        [
            {
                "path": r["chexpert_path"],
                "split": s,
                **{c: _label(r["labels"].get(c)) for c in CHEXPERT_LABELS},
            }
            for r, s in zip(records, splits)
        ]
    )
    rsna = pd.DataFrame(
        [
            {"path": r["rsna_path"], "split": s, "Pneumonia": int(bool(r["rsna_boxes"]))}
            for r, s in zip(records, splits)
        ]
    )
    siim = pd.DataFrame(
        [
            {
                "path": r["siim_path"],
                "split": s,
                "Pneumothorax": int(any(x.strip() != "-1" for x in r["siim_rles"])),
            }
            for r, s in zip(records, splits)
        ]
    )
    split_of = {r["chexpert_path"]: s for r, s in zip(records, splits)}
    phrase_rows = []
    for case in synth_grounding_cases(base):
        rel = case.image_path.relative_to(base).as_posix()
        x, y, w, h = _bbox(case.mask)
        H, W = case.mask.shape
        phrase_rows.append(
            {
                "dicom_id": _dicom_id(rel),
                "category": case.label,
                "label_text": case.text,
                "x": x,
                "y": y,
                "w": w,
                "h": h,
                "image_width": W,
                "image_height": H,
                "path": rel,
                "split": split_of[rel],
            }
        )
    box_rows, mask_rows = [], []
    for r, s in zip(records, splits):
        size = int(r.get("dicom_size") or r["size"])
        for x, y, w, h in r["rsna_boxes"]:
            box_rows.append(
                {
                    "dicom_id": r["rsna_patient_id"],
                    "category": "Pneumonia",
                    "label_text": RSNA_PHRASE,
                    "x": x,
                    "y": y,
                    "w": w,
                    "h": h,
                    "image_width": size,
                    "image_height": size,
                    "path": r["rsna_path"],
                    "split": s,
                }
            )
        for rle in r["siim_rles"]:
            if rle.strip() == "-1":
                continue
            mask_rows.append(
                {
                    "dicom_id": r["siim_image_id"],
                    "category": "Pneumothorax",
                    "label_text": SIIM_PHRASE,
                    "x": None,
                    "y": None,
                    "w": None,
                    "h": None,
                    "image_width": size,
                    "image_height": size,
                    "path": r["siim_path"],
                    "split": s,
                    "mask_rle": rle.strip(),
                }
            )
    columns = [*MS_CXR_COLUMNS, "path", "split"]
    return {
        "multilabel": multilabel,
        "rsna_binary": rsna,
        "siim_binary": siim,
        "phrase_boxes": pd.DataFrame(phrase_rows, columns=columns),
        "rsna_boxes": pd.DataFrame(box_rows, columns=columns),
        "siim_masks": pd.DataFrame(mask_rows, columns=[*columns, "mask_rle"]),
    }


def write_synth_benchmarks(root: str | Path, *, seed: int = 0) -> dict[str, Any]:
    """Write the six tables into ``root`` (beside the images their paths are relative to) and a manifest
    ``synth_benchmarks.json`` (rows, file and id sha256 of each); returns the manifest."""
    base = Path(root)
    tables = build_tables(base, seed=seed)
    manifest: dict[str, Any] = {"root": str(base), "seed": seed, "tables": {}}
    for name, frame in tables.items():
        path = write_csv_atomic(frame, base / FILES[name])
        info = table_manifest(path, "path")
        info["splits"] = {str(k): int(v) for k, v in frame["split"].value_counts().sort_index().items()}
        manifest["tables"][name] = info
        log.info("wrote %s: %s", path, info["splits"])
    write_json_atomic(manifest, base / MANIFEST)
    return manifest
