"""VinDr-CXR (``train.csv``: image_id, class_name, class_id, rad_id, x_min, y_min, x_max, y_max): the boxes of
every radiologist as a phrase-box table (``gloria.data.phrase_boxes``) with ``rad_id`` kept, and a 0/1 label
per image and class (positive when any radiologist drew the class).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from gloria.data.csv_reports import require_columns

COLUMNS: tuple[str, ...] = (
    "image_id",
    "class_name",
    "class_id",
    "rad_id",
    "x_min",
    "y_min",
    "x_max",
    "y_max",
)
NO_FINDING = "No finding"


def read_vindr(csv_path: str | Path) -> pd.DataFrame:
    """Read ``train.csv``; a box row (not ``No finding``) needs x_min < x_max, y_min < y_max, all >= 0.
    ValueError names the file and row."""
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise FileNotFoundError(f"VinDr-CXR train.csv not found: {csv_path}")
    frame = pd.read_csv(csv_path, dtype={"image_id": str, "class_name": str, "rad_id": str})
    require_columns(frame, COLUMNS, csv_path)
    boxed = frame["class_name"] != NO_FINDING
    coords = frame[["x_min", "y_min", "x_max", "y_max"]]
    bad = boxed & (
        coords.isna().any(axis=1)
        | (frame["x_min"] >= frame["x_max"])
        | (frame["y_min"] >= frame["y_max"])
        | (coords < 0).any(axis=1)
    )
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise ValueError(f"{csv_path}: row {row + 2}: box {coords.iloc[row].tolist()} is not a valid box")
    return frame


def box_table(frame: pd.DataFrame, shapes: dict[str, tuple[int, int]] | None = None) -> pd.DataFrame:
    """The box rows as a phrase-box frame (label_text = lower-case class name); image_width / image_height
    from ``shapes`` ({image_id: (height, width)}, e.g. the DICOM headers), NaN when unknown."""
    boxes = frame[frame["class_name"] != NO_FINDING]
    shapes = shapes or {}
    return pd.DataFrame(
        {
            "dicom_id": boxes["image_id"],
            "category": boxes["class_name"],
            "label_text": boxes["class_name"].str.lower(),
            "x": boxes["x_min"],
            "y": boxes["y_min"],
            "w": boxes["x_max"] - boxes["x_min"],
            "h": boxes["y_max"] - boxes["y_min"],
            "image_width": [shapes.get(i, (np.nan, np.nan))[1] for i in boxes["image_id"]],
            "image_height": [shapes.get(i, (np.nan, np.nan))[0] for i in boxes["image_id"]],
            "rad_id": boxes["rad_id"],
        }
    ).reset_index(drop=True)


def image_labels(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per image (sorted): ``image_id`` and a 0/1 column per class (any radiologist)."""
    classes = sorted(set(frame["class_name"]) - {NO_FINDING})
    hits = pd.crosstab(frame["image_id"], frame["class_name"]).reindex(columns=classes, fill_value=0)
    return (hits > 0).astype(int).reset_index()
