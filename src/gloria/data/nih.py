"""NIH ChestX-ray14 (``Data_Entry_2017*.csv``, ``BBox_List_2017.csv``): 14 findings per image as 0/1 columns,
splits by patient (seeded) or the official ``train_val_list.txt`` / ``test_list.txt``, and the 984 boxes as a
phrase-box table (``gloria.data.phrase_boxes``).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from gloria.data.csv_reports import require_columns
from gloria.data.splits import DEFAULT_FRACTIONS, split_ids

log = logging.getLogger(__name__)

NIH_FINDINGS: tuple[str, ...] = (
    "Atelectasis",
    "Cardiomegaly",
    "Effusion",
    "Infiltration",
    "Mass",
    "Nodule",
    "Pneumonia",
    "Pneumothorax",
    "Consolidation",
    "Edema",
    "Emphysema",
    "Fibrosis",
    "Pleural_Thickening",
    "Hernia",
)
ENTRY_COLUMNS: tuple[str, ...] = ("Image Index", "Finding Labels", "Patient ID")
NIH_SIZE = 1024  # the released PNGs (boxes are in their pixels)
OFFICIAL_LISTS = ("train_val_list.txt", "test_list.txt")


def find_entries(root: str | Path) -> Path:
    """``Data_Entry_2017.csv`` or ``Data_Entry_2017_v2020.csv`` (also ``.gz``) in ``root``."""
    found = sorted(Path(root).glob("Data_Entry_2017*.csv*"))
    if not found:
        raise FileNotFoundError(f"no Data_Entry_2017*.csv in {root}")
    return found[-1]


def read_entries(csv_path: str | Path) -> pd.DataFrame:
    """Image Index, Patient ID and one 0/1 column per finding (``No Finding`` too) from ``Finding Labels``
    (``|``-separated). ValueError names the file and row of an unknown finding."""
    csv_path = Path(csv_path)
    frame = pd.read_csv(csv_path, dtype={"Image Index": str, "Finding Labels": str})
    require_columns(frame, ENTRY_COLUMNS, csv_path)
    parts = frame["Finding Labels"].fillna("").str.split("|")
    known = {*NIH_FINDINGS, "No Finding"}
    for row, labels in enumerate(parts):
        unknown = [x for x in labels if x not in known]
        if unknown:
            raise ValueError(f"{csv_path}: row {row + 2}: unknown finding(s) {unknown}")
    out = frame[["Image Index", "Patient ID"]].copy()
    out["Patient ID"] = out["Patient ID"].astype(str)
    for name in (*NIH_FINDINGS, "No Finding"):
        out[name] = [int(name in labels) for labels in parts]
    if "View Position" in frame.columns:
        out["view"] = frame["View Position"]
    return out


def official_split(entries: pd.DataFrame, root: str | Path, *, seed: int = 0) -> pd.Series:
    """``test`` for the images of ``test_list.txt``; the rest of ``train_val_list.txt`` split by patient into
    train / valid (7:1, seeded). ValueError when an image is in neither list or in both."""
    root = Path(root)
    train_val, test = (
        {line.strip() for line in (root / f).read_text().splitlines() if line.strip()} for f in OFFICIAL_LISTS
    )
    both = train_val & test
    if both:
        raise ValueError(f"{len(both)} images are in both official lists, e.g. {sorted(both)[:3]}")
    names = set(entries["Image Index"])
    orphans = names - train_val - test
    if orphans:
        raise ValueError(f"{len(orphans)} images are in no official list, e.g. {sorted(orphans)[:3]}")
    is_test = entries["Image Index"].isin(test)
    mapping = split_ids(entries.loc[~is_test, "Patient ID"], {"train": 7 / 8, "valid": 1 / 8}, seed=seed)
    return pd.Series(
        np.where(is_test, "test", entries["Patient ID"].map(mapping).fillna("test")),
        index=entries.index,
        name="split",
    )


def patient_split(entries: pd.DataFrame, *, seed: int = 0) -> pd.Series:
    """Seeded train/valid/test (``DEFAULT_FRACTIONS``) by patient."""
    mapping = split_ids(entries["Patient ID"], DEFAULT_FRACTIONS, seed=seed)
    return entries["Patient ID"].map(mapping).rename("split")


def image_paths(root: str | Path, names: pd.Series) -> list[str]:
    """Where each PNG is: the release spreads them over ``images_001/images/`` ... ``images_012/images/``;
    a name not found anywhere is expected in ``<root>/images/``."""
    root = Path(root)
    found = {p.name: p for p in root.glob("images*/**/*.png")} if root.is_dir() else {}
    return [str(found.get(n, root / "images" / n)) for n in names]


def read_boxes(csv_path: str | Path, entries: pd.DataFrame | None = None) -> pd.DataFrame:
    """``BBox_List_2017.csv`` -> a phrase-box frame (category = finding, label_text its lower-case name,
    x, y, w, h in the 1024 px PNG); ``Patient ID`` from ``entries`` when given."""
    csv_path = Path(csv_path)
    raw = pd.read_csv(csv_path, dtype={"Image Index": str})
    raw.columns = [str(c).strip() for c in raw.columns]
    require_columns(raw, ("Image Index", "Finding Label", "Bbox [x", "y", "w", "h]"), csv_path)
    frame = pd.DataFrame(
        {
            "dicom_id": raw["Image Index"],
            "category": raw["Finding Label"],
            "label_text": raw["Finding Label"].str.lower().str.replace("_", " "),
            "x": raw["Bbox [x"].astype(float),
            "y": raw["y"].astype(float),
            "w": raw["w"].astype(float),
            "h": raw["h]"].astype(float),
            "image_width": NIH_SIZE,
            "image_height": NIH_SIZE,
        }
    )
    if entries is not None:
        frame["patient_id"] = frame["dicom_id"].map(dict(zip(entries["Image Index"], entries["Patient ID"])))
    return frame
