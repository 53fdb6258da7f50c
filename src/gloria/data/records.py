"""Typed records that the real-data loaders produce (one image each), and a map-style dataset over them.

Loaders build pandas frames (what ``gloria prepare`` writes as CSV) and turn rows into these records; the
training part wraps them with image reading and transforms.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Generic, TypeVar

from torch.utils.data import Dataset

Box = tuple[float, float, float, float]  # x, y, width, height in original pixels (RSNA convention)

SPLITS: tuple[str, ...] = ("train", "valid", "test")


@dataclass(frozen=True)
class ImageReportRecord:
    """One image with its report text (CheXpert reports CSV, MIMIC-CXR, a user's own CSV)."""

    path: Path
    report: str
    split: str
    patient_id: str
    study_id: str = ""
    view: str = ""
    labels: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class LabelledImageRecord:
    """One image with multi-label targets (CheXpert labels after the uncertain policy; NaN = ignore)."""

    path: Path
    labels: Mapping[str, float]
    split: str
    patient_id: str
    view: str = ""


@dataclass(frozen=True)
class SegmentationRecord:
    """One SIIM image with its run-length encoded regions (empty tuple: no pneumothorax).

    ``height`` x ``width`` is the pixel grid the RLE refers to (the image's; 1024 x 1024 in SIIM).
    """

    path: Path
    image_id: str
    rles: tuple[str, ...]
    split: str
    height: int = 1024
    width: int = 1024

    @property
    def positive(self) -> bool:
        return len(self.rles) > 0


@dataclass(frozen=True)
class DetectionRecord:
    """One RSNA patient image: ``target`` is 1 when any box exists; boxes as (x, y, width, height)."""

    path: Path
    patient_id: str
    boxes: tuple[Box, ...]
    target: int
    split: str


def boxes_to_json(boxes: Sequence[Box]) -> str:
    """Serialise boxes for a CSV cell: ``[[x, y, w, h], ...]`` (``[]`` when none)."""
    return json.dumps([[float(v) for v in box] for box in boxes])


def boxes_from_json(text: str, *, where: str = "boxes") -> tuple[Box, ...]:
    """Parse a ``boxes`` CSV cell written by :func:`boxes_to_json`; ``where`` names the cell in errors."""
    try:
        raw = json.loads(text) if text else []
    except json.JSONDecodeError as err:
        raise ValueError(f"{where}: cannot parse boxes {text!r}: {err}") from err
    out: list[Box] = []
    for item in raw:
        if not isinstance(item, list) or len(item) != 4:
            raise ValueError(f"{where}: a box must be [x, y, width, height], got {item!r}")
        x, y, w, h = (float(v) for v in item)
        out.append((x, y, w, h))
    return tuple(out)


R = TypeVar("R")
T = TypeVar("T")


class RecordDataset(Dataset[T], Generic[R, T]):
    """Map-style dataset over a list of records; ``transform`` turns a record into a training item."""

    def __init__(self, records: Sequence[R], transform: Callable[[R], T]) -> None:
        self.records = list(records)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> T:
        return self.transform(self.records[index])
