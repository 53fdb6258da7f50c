"""PadChest (``PADCHEST_chest_x_ray_images_labels_160K_01.02.19.csv``): one row per image with its patient,
folder and projection, and a 0/1 column per label (from the ``Labels`` list) seen on enough images.
"""

from __future__ import annotations

import ast
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

from gloria.data.csv_reports import require_columns

COLUMNS: tuple[str, ...] = ("ImageID", "ImageDir", "PatientID", "Labels", "Projection")


def parse_labels(cell: object, *, where: str) -> list[str]:
    """``"['normal', 'kyphosis']"`` -> ``["kyphosis", "normal"]`` (blank: []); ValueError naming ``where``."""
    if not isinstance(cell, str) or not cell.strip():
        return []
    try:
        value = ast.literal_eval(cell)
    except (ValueError, SyntaxError) as err:
        raise ValueError(f"{where}: Labels {cell[:60]!r} is not a list of strings") from err
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{where}: Labels {cell[:60]!r} is not a list of strings")
    return sorted({v.strip() for v in value if v.strip()})


def read_padchest(csv_path: str | Path, *, min_count: int = 50) -> tuple[pd.DataFrame, list[str]]:
    """(frame, label columns): ImageID, ImageDir, PatientID, Projection, ``n_labels`` and one 0/1 column for
    every label on at least ``min_count`` images (images with no label list are dropped and counted)."""
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise FileNotFoundError(f"PadChest labels CSV not found: {csv_path}")
    frame = pd.read_csv(csv_path, usecols=list(COLUMNS), dtype={"ImageID": str, "PatientID": str})
    require_columns(frame, COLUMNS, csv_path)
    labelled = frame["Labels"].notna()
    frame = frame[labelled].reset_index(drop=True)
    seen: dict[str, list[str]] = {}  # label lists repeat (e.g. "['normal']"): parse each text once
    parsed = []
    for image_id, cell in zip(frame["ImageID"], frame["Labels"]):
        if cell not in seen:
            seen[cell] = parse_labels(cell, where=f"{csv_path}: image {image_id}")
        parsed.append(seen[cell])
    counts = Counter(label for labels in parsed for label in labels)
    chosen = sorted(label for label, n in counts.items() if n >= min_count)
    out = frame[["ImageID", "ImageDir", "PatientID", "Projection"]].copy()
    out["n_labels"] = [len(x) for x in parsed]
    column = {label: k for k, label in enumerate(chosen)}
    hits = np.zeros((len(out), len(chosen)), dtype=np.int64)
    pairs = [(i, column[x]) for i, labels in enumerate(parsed) for x in labels if x in column]
    if pairs:
        rows, cols = zip(*pairs)
        hits[list(rows), list(cols)] = 1
    out = pd.concat([out, pd.DataFrame(hits, columns=chosen, index=out.index)], axis=1)
    out.attrs["dropped_unlabelled"] = int((~labelled).sum())
    return out, chosen
