"""RSNA Pneumonia Detection (``stage_2_train_labels.csv``): one row per patient (sorted by patientId),
Target = any box, boxes kept for grounding; the release's scikit-learn split and our seeded one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from gloria.data.csv_reports import require_columns
from gloria.data.records import DetectionRecord, boxes_from_json, boxes_to_json
from gloria.data.splits import split_ids

LABEL_COLUMNS: tuple[str, ...] = ("patientId", "x", "y", "width", "height", "Target")
IMAGE_DIR = "stage_2_train_images"


def read_rsna_labels(csv_path: str | Path) -> pd.DataFrame:
    """Read ``stage_2_train_labels.csv`` (plain, ``.gz`` or ``.zip``); ValueError names missing columns."""
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise FileNotFoundError(f"RSNA labels file not found: {csv_path}")
    frame = pd.read_csv(csv_path, dtype={"patientId": str})
    require_columns(frame, LABEL_COLUMNS, csv_path)
    bad = ~frame["Target"].isin([0, 1])
    if bad.any():
        row = int(bad.to_numpy().nonzero()[0][0])
        raise ValueError(f"{csv_path}: row {row + 2} Target {frame['Target'].iloc[row]!r} is not 0 or 1")
    return frame


def group_by_patient(labels: pd.DataFrame) -> pd.DataFrame:
    """One row per patient, sorted by patientId: ``patientId``, ``Target`` (1 if any box), ``boxes`` (JSON).

    Rows with Target 0 carry no box (NaN); a Target 1 row with a missing coordinate raises ValueError.
    """
    require_columns(labels, LABEL_COLUMNS, "RSNA labels")
    coords = labels[["x", "y", "width", "height"]]
    incomplete = (labels["Target"] == 1) & coords.isna().any(axis=1)
    if incomplete.any():
        row = int(incomplete.to_numpy().nonzero()[0][0])
        raise ValueError(f"RSNA labels: row {row + 2} has Target 1 but an empty box coordinate")
    targets: dict[str, int] = {}
    boxes: dict[str, list[tuple[float, float, float, float]]] = {}
    columns = ("patientId", "Target", "x", "y", "width", "height")
    for pid, target, x, y, w, h in labels[list(columns)].itertuples(index=False):
        key = str(pid)
        targets[key] = max(targets.get(key, 0), int(target))
        patient_boxes = boxes.setdefault(key, [])
        if int(target) == 1:
            patient_boxes.append((float(x), float(y), float(w), float(h)))
    rows: list[dict[str, Any]] = [
        {"patientId": key, "Target": targets[key], "boxes": boxes_to_json(boxes[key])}
        for key in sorted(targets)
    ]
    return pd.DataFrame(rows, columns=["patientId", "Target", "boxes"])


def release_split(patients: pd.DataFrame) -> pd.Series:
    """The release's split of the grouped frame: ``train_test_split(test_size=0.30, random_state=0)``, then
    the held-out part ``test_size=0.5, random_state=0`` (first part test, second valid).

    On the real 26,684 patients: 18,678 train / 4,003 test / 4,003 valid.
    """
    try:
        from sklearn.model_selection import train_test_split
    except ImportError as err:  # pragma: no cover - the train extra provides it
        raise RuntimeError("the release split needs scikit-learn: pip install 'gloria-cxr[train]'") from err
    train, held_out = train_test_split(patients, test_size=0.30, random_state=0)
    test, valid = train_test_split(held_out, test_size=0.5, random_state=0)
    split = pd.Series("", index=patients.index, name="split")
    split[train.index] = "train"
    split[test.index] = "test"
    split[valid.index] = "valid"
    return split


def patient_split(patients: pd.DataFrame, *, seed: int = 0) -> pd.Series:
    """Seeded 70/15/15 split by ``patientId`` (one image per patient in RSNA)."""
    mapping = split_ids(patients["patientId"], seed=seed)
    return patients["patientId"].map(mapping).rename("split")


def image_path(root: str | Path, patient: str) -> Path:
    """``<root>/stage_2_train_images/<patientId>.dcm``."""
    return Path(root) / IMAGE_DIR / f"{patient}.dcm"


def detection_records(frame: pd.DataFrame, root: str | Path) -> list[DetectionRecord]:
    """Records from a grouped frame with a ``split`` column (e.g. a prepared split CSV)."""
    require_columns(frame, ("patientId", "Target", "boxes", "split"), "RSNA frame")
    return [
        DetectionRecord(
            path=image_path(root, str(pid)),
            patient_id=str(pid),
            boxes=boxes_from_json(str(boxes), where=f"patientId {pid}"),
            target=int(target),
            split=str(split),
        )
        for pid, target, boxes, split in frame[["patientId", "Target", "boxes", "split"]].itertuples(
            index=False
        )
    ]
