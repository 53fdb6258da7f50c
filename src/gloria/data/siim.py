"""SIIM-ACR Pneumothorax (``train-rle.csv``, ``dicom-images-train/``): RLE rows united per image, DICOMs found
by walking the tree, image-level 70/15/15 split (the release split rows), balanced training negatives.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt
import pandas as pd

from gloria.data.records import SegmentationRecord
from gloria.data.rle import EMPTY_RLE, rle_decode_union

log = logging.getLogger(__name__)

IMAGE_DIR = "dicom-images-train"
SIIM_SIZE = 1024
RLE_SEPARATOR = "|"  # joins several regions of one image in a prepared CSV cell


def read_siim_rle(csv_path: str | Path) -> pd.DataFrame:
    """Read ``train-rle.csv`` (plain or ``.gz``) -> columns ``ImageId``, ``EncodedPixels`` (stripped).

    The real header is ``ImageId, EncodedPixels`` (leading space) and negatives are `` -1``; both spellings
    are accepted. ValueError names the file and the missing column or the row of an empty value.
    """
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise FileNotFoundError(f"SIIM RLE file not found: {csv_path}")
    frame = pd.read_csv(csv_path, dtype=str, keep_default_na=False)
    frame.columns = [str(c).strip() for c in frame.columns]
    missing = [c for c in ("ImageId", "EncodedPixels") if c not in frame.columns]
    if missing:
        raise ValueError(f"{csv_path}: missing column(s) {missing}; found {list(frame.columns)}")
    frame["ImageId"] = frame["ImageId"].str.strip()
    frame["EncodedPixels"] = frame["EncodedPixels"].str.strip()
    empty = (frame["EncodedPixels"] == "") | (frame["ImageId"] == "")
    if empty.any():
        row = int(np.flatnonzero(empty.to_numpy())[0])
        raise ValueError(f"{csv_path}: row {row + 2} has an empty ImageId or EncodedPixels")
    return frame[["ImageId", "EncodedPixels"]]


def group_by_image(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per image in first-appearance order: ``ImageId``, ``rles`` (regions joined by ``|``, ``-1``
    when none), ``positive`` (0/1), ``n_regions``."""
    regions: dict[str, list[str]] = {}
    for image_id, rle in rows[["ImageId", "EncodedPixels"]].itertuples(index=False):
        kept = regions.setdefault(str(image_id), [])
        if rle != EMPTY_RLE:
            kept.append(str(rle))
    out: list[dict[str, Any]] = [
        {
            "ImageId": key,
            "rles": RLE_SEPARATOR.join(value) if value else EMPTY_RLE,
            "positive": int(bool(value)),
            "n_regions": len(value),
        }
        for key, value in regions.items()
    ]
    return pd.DataFrame(out, columns=["ImageId", "rles", "positive", "n_regions"])


def split_rles(cell: str) -> tuple[str, ...]:
    """The region RLEs of a ``rles`` cell (empty tuple for a negative image)."""
    text = str(cell).strip()
    return () if text in ("", EMPTY_RLE) else tuple(text.split(RLE_SEPARATOR))


def find_dicoms(root: str | Path) -> dict[str, Path]:
    """``{ImageId: path}`` of every ``*.dcm`` under ``<root>/dicom-images-train`` (nested folders walked)."""
    base = Path(root) / IMAGE_DIR
    if not base.is_dir():
        raise FileNotFoundError(f"SIIM image folder not found: {base}")
    found: dict[str, Path] = {}
    for folder, _dirs, files in os.walk(base):
        for name in files:
            if name.endswith(".dcm"):
                found[name[: -len(".dcm")]] = Path(folder) / name
    return found


def _two_way(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    try:
        from sklearn.model_selection import train_test_split
    except ImportError as err:  # pragma: no cover - the train extra provides it
        raise RuntimeError("the release split needs scikit-learn: pip install 'gloria-cxr[train]'") from err
    train, held_out = train_test_split(frame, test_size=0.30, random_state=0)
    test, valid = train_test_split(held_out, test_size=0.5, random_state=0)
    return train, valid, test


def release_split(images: pd.DataFrame) -> pd.Series:
    """70/15/15 with ``train_test_split(random_state=0)`` (then 0.5 of the rest: test, valid) over *images*.

    The release applied the same calls to RLE *rows*, so an image with several rows could fall into two
    splits (see :func:`release_row_split_leaks`); splitting the grouped frame avoids that.
    """
    train, valid, test = _two_way(images)
    split = pd.Series("", index=images.index, name="split")
    split[train.index], split[valid.index], split[test.index] = "train", "valid", "test"
    return split


def release_row_split_leaks(rows: pd.DataFrame) -> int:
    """How many images the release's row-level split puts in more than one split (its defect)."""
    train, valid, test = _two_way(rows)
    labelled = pd.concat([train.assign(s="train"), valid.assign(s="valid"), test.assign(s="test")])
    per_image = labelled.groupby("ImageId")["s"].nunique()
    return int((per_image > 1).sum())


def balance_negatives(train: pd.DataFrame, *, seed: int = 0) -> pd.DataFrame:
    """All positives plus as many negatives as positives (seeded draw), in the original row order."""
    positives = train[train["positive"] == 1]
    negatives = train[train["positive"] == 0]
    n = min(len(positives), len(negatives))
    drawn = negatives.sample(n=n, random_state=np.random.RandomState(seed))
    return train.loc[sorted([*positives.index, *drawn.index])]


def dicom_shape(path: str | Path) -> tuple[int, int]:
    """(Rows, Columns) of a DICOM from its header only (the grid its RLE refers to)."""
    import pydicom

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        return int(ds.Rows), int(ds.Columns)
    except (OSError, AttributeError, pydicom.errors.InvalidDicomError) as err:
        raise ValueError(f"cannot read the DICOM header of {path}: {err}") from err


def load_mask(
    rles: tuple[str, ...], size: int | None = None, *, height: int = SIIM_SIZE, width: int = SIIM_SIZE
) -> npt.NDArray[np.uint8]:
    """Union mask uint8 {0, 1} [height, width] (SIIM: 1024 x 1024), or [size, size] resized with nearest
    and re-binarised."""
    mask = rle_decode_union(rles, height, width)
    if size is None or (size == height and size == width):
        return mask
    resized = cv2.resize(mask, (size, size), interpolation=cv2.INTER_NEAREST)
    return (np.asarray(resized) > 0).astype(np.uint8)


def segmentation_records(frame: pd.DataFrame, dicoms: dict[str, Path]) -> list[SegmentationRecord]:
    """Records from a grouped frame with ``split``; ValueError lists ImageIds without a DICOM.

    The mask grid is the frame's ``height``/``width`` columns (written by ``gloria prepare siim``), else
    each DICOM's Rows/Columns.
    """
    missing = [i for i in frame["ImageId"] if i not in dicoms]
    if missing:
        raise ValueError(f"{len(missing)} SIIM images have no DICOM, first: {missing[:5]}")
    if {"height", "width"} <= set(frame.columns):
        heights, widths = frame["height"], frame["width"]
    else:  # the RLE refers to each DICOM's own grid: read it from the header (no pixel decoding)
        shapes = [dicom_shape(dicoms[image_id]) for image_id in frame["ImageId"]]
        heights = pd.Series([h for h, _ in shapes], index=frame.index)
        widths = pd.Series([w for _, w in shapes], index=frame.index)
    return [
        SegmentationRecord(
            path=dicoms[image_id],
            image_id=image_id,
            rles=split_rles(rles),
            split=split,
            height=int(h),
            width=int(w),
        )
        for image_id, rles, split, h, w in zip(
            frame["ImageId"], frame["rles"], frame["split"], heights, widths
        )
    ]
