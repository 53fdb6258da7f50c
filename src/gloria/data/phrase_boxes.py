"""Phrase-box tables in the MS-CXR format (``MS_CXR_Local_Alignment_v1.0.0.csv``): one row per box, with
dicom_id, category, label_text, x, y, w, h (pixels, top-left corner), image_width, image_height and the
image ``path``; every box source (RSNA, NIH, VinDr, SynthCXR) is written in it. An optional ``mask_rle``
column (SIIM's run-length format over image_width x image_height) gives a mask instead of a box, and an
optional ``split`` column marks the training rows (they fit the image-blind priors).
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

MS_CXR_COLUMNS: tuple[str, ...] = (
    "dicom_id",
    "category",
    "label_text",
    "x",
    "y",
    "w",
    "h",
    "image_width",
    "image_height",
)
BOX_COLUMNS: tuple[str, ...] = ("x", "y", "w", "h")
TABLE_COLUMNS: tuple[str, ...] = (*MS_CXR_COLUMNS, "path")


def read_phrase_boxes(csv_path: str | Path) -> pd.DataFrame:
    """Read and check a phrase-box CSV: every MS-CXR column and ``path``; a box (x, y, w, h) inside its
    image (w, h > 0) unless the row has a ``mask_rle``. Errors name the file, row and value."""
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise FileNotFoundError(f"phrase-box CSV not found: {csv_path}")
    frame = pd.read_csv(csv_path, dtype={"dicom_id": str, "category": str, "label_text": str, "path": str})
    missing = [c for c in TABLE_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"{csv_path}: missing column(s) {missing}; have {list(frame.columns)}")
    if frame.empty:
        raise ValueError(f"{csv_path}: no rows")
    has_mask = (
        frame["mask_rle"].notna() & (frame["mask_rle"].astype(str).str.strip() != "")
        if "mask_rle" in frame.columns
        else pd.Series(False, index=frame.index)
    )
    for col in (*BOX_COLUMNS, "image_width", "image_height"):
        values = pd.to_numeric(frame[col], errors="coerce")
        need = ~has_mask if col in BOX_COLUMNS else pd.Series(True, index=frame.index)
        bad = values.isna() & need
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise ValueError(
                f"{csv_path}: row {row + 2} column {col!r}: {frame[col].iloc[row]!r} is not a number"
            )
        frame[col] = values
    for col in ("label_text", "category", "path"):
        empty = frame[col].isna() | (frame[col].astype(str).str.strip() == "")
        if empty.any():
            raise ValueError(f"{csv_path}: row {int(np.flatnonzero(empty.to_numpy())[0]) + 2}: empty {col!r}")
    boxes = frame[~has_mask]
    outside = (
        (boxes["w"] <= 0)
        | (boxes["h"] <= 0)
        | (boxes["x"] < 0)
        | (boxes["y"] < 0)
        | (boxes["x"] + boxes["w"] > boxes["image_width"] + 1e-6)
        | (boxes["y"] + boxes["h"] > boxes["image_height"] + 1e-6)
    )
    if outside.any():
        i = boxes.index[outside.to_numpy()][0]
        r = frame.loc[i]
        raise ValueError(
            f"{csv_path}: row {int(i) + 2}: box (x={r['x']}, y={r['y']}, w={r['w']}, h={r['h']}) is not "
            f"inside the {int(r['image_width'])} x {int(r['image_height'])} image"
        )
    return frame


def boxes_in_range(frame: pd.DataFrame) -> bool:
    """Whether every box of a phrase-box frame has positive size and lies inside its image."""
    return bool(
        ((frame["w"] > 0) & (frame["h"] > 0) & (frame["x"] >= 0) & (frame["y"] >= 0)).all()
        and (frame["x"] + frame["w"] <= frame["image_width"] + 1e-6).all()
        and (frame["y"] + frame["h"] <= frame["image_height"] + 1e-6).all()
    )


def write_csv_atomic(frame: pd.DataFrame, path: str | Path, columns: Sequence[str] | None = None) -> Path:
    """Write ``frame`` (``columns`` first, in order) to ``path`` through a temporary file and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if columns is not None:
        frame = frame[[*columns, *[c for c in frame.columns if c not in columns]]]
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", newline="") as handle:
            frame.to_csv(handle, index=False)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
