"""Optimised shards of image-report pairs (issue 16 item 5), written once with litdata (Lightning's streaming
data library) and read from a local folder or an object-store URL (``s3://...``, litdata's cache).

Each item holds the image decoded once and resized so its longer side is ``imsize`` (uint8, the image
cache's rule: ``ImagePreprocessor`` on it gives the same tensor as on the source file), the report's cleaned
sentences, the record's id and patient, and its position. One folder per split under the shards root
(``train/``, ``valid/``, ``test/``) plus ``gloria_shards.json`` (imsize, counts). The order inside a split is
the records' order, so position ``i`` is record ``i`` of the CSV path: ``SeededSampler`` draws the same
permutation and the same per-access seeds, shards it across ranks and nodes, and the loader's position goes
into the checkpoint as for the CSV path (``ResumableLoader``).

litdata is optional (``pip install 'gloria-cxr[shards]'``); it is imported only where shards are used.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from gloria.data.cache import resize_longer_side
from gloria.data.images import read_image
from gloria.data.records import ImageReportRecord
from gloria.data.reports import report_sentences

log = logging.getLogger(__name__)

MANIFEST = "gloria_shards.json"
SPLITS = ("train", "valid", "test")
SENTENCE_SEP = "\n"  # cleaned sentences never hold a newline


def _litdata() -> Any:
    try:
        import litdata
    except ModuleNotFoundError as err:
        raise ModuleNotFoundError(
            "shards need litdata: pip install 'gloria-cxr[shards]' (or pip install litdata)"
        ) from err
    return litdata


def _is_remote(root: str) -> bool:
    return "://" in root


@dataclass(frozen=True)
class ShardItem:
    """One decoded shard item: uint8 image [H, W] (longer side imsize), cleaned sentences, ids."""

    image: np.ndarray
    sentences: list[str]
    id: str
    patient_id: str
    position: int


def _encode(position: int, *, records: Sequence[ImageReportRecord], imsize: int) -> dict[str, Any]:
    """litdata worker: record ``position`` -> the stored fields."""
    record = records[position]
    try:
        image = resize_longer_side(read_image(record.path), imsize)
    except (FileNotFoundError, ValueError, OSError) as err:
        raise ValueError(f"{record.path}: cannot be written to the shards ({err})") from err
    # texts as UTF-8 bytes: litdata would store a string naming an existing file as that file's content
    return {
        "position": position,
        "image": np.ascontiguousarray(image, dtype=np.uint8),
        "sentences": SENTENCE_SEP.join(report_sentences(record.report)).encode("utf-8"),
        "id": str(record.path).encode("utf-8"),
        "patient_id": record.patient_id.encode("utf-8"),
    }


REPORT_COLUMNS = ("report", "Report Impression")  # what `gloria prepare` tables call the report text


def records_from_table(frame: Any) -> dict[str, list[ImageReportRecord]]:
    """A ``gloria prepare`` split table (``path``, ``split``, a report column, ``patient_id``) -> the usable
    image-report records of each split, in the table's order (the order training reads its split CSVs)."""
    from gloria.training.datasets import usable_reports

    column = next((c for c in REPORT_COLUMNS if c in frame.columns), None)
    if column is None or "path" not in frame.columns:
        raise ValueError(f"--shards needs a table with 'path' and a report column {list(REPORT_COLUMNS)}")
    out: dict[str, list[ImageReportRecord]] = {}
    for name in SPLITS:
        part = frame[frame["split"] == name]
        patients = part["patient_id"] if "patient_id" in part.columns else part["path"]
        records = [
            ImageReportRecord(path=Path(str(p)), report=str(r), split=name, patient_id=str(q))
            for p, r, q in zip(part["path"], part[column].fillna(""), patients)
        ]
        kept, dropped = usable_reports(records)
        if dropped:
            log.warning("shards %s: %d reports without a sentence of two words left out", name, dropped)
        out[name] = kept
    return out


def write_shards(
    splits: Mapping[str, Sequence[ImageReportRecord]],
    out_dir: str | Path,
    *,
    imsize: int,
    num_workers: int = 1,
    chunk_bytes: str = "64MB",
) -> dict[str, Any]:
    """Write ``<out_dir>/<split>/`` chunks for each non-empty split and the manifest; returns the manifest.

    Records whose report has no usable sentence must be dropped before (``usable_reports``): every item
    needs one. Raises ``FileExistsError`` when ``out_dir`` already holds shards.
    """
    litdata = _litdata()
    out = Path(out_dir)
    if (out / MANIFEST).exists():
        raise FileExistsError(f"{out} already holds shards ({MANIFEST}); remove it or choose another folder")
    counts: dict[str, int] = {}
    for name, records in splits.items():
        if name not in SPLITS:
            raise ValueError(f"unknown split {name!r}; shards hold {list(SPLITS)}")
        records = list(records)
        if not records:
            continue
        for record in records:
            if not report_sentences(record.report):
                raise ValueError(f"{record.path}: report has no sentence of two words (drop it first)")
        litdata.optimize(
            fn=partial(_encode, records=records, imsize=imsize),
            inputs=list(range(len(records))),
            output_dir=str(out / name),
            chunk_bytes=chunk_bytes,
            num_workers=max(1, min(num_workers, len(records))),
            reorder_files=False,
            keep_data_ordered=True,
            mode="overwrite",
            verbose=False,
            start_method="fork" if os.name == "posix" else None,
        )
        counts[name] = len(records)
        _check_order(out / name, len(records))
        log.info("shards %s: %d items", out / name, len(records))
    manifest = {"format": 1, "imsize": imsize, "counts": counts}
    tmp = out / f".{MANIFEST}.tmp"
    tmp.write_text(json.dumps(manifest, indent=2) + "\n")
    os.replace(tmp, out / MANIFEST)
    return manifest


def _check_order(split_dir: Path, count: int) -> None:
    """The written order is the records' order (position i at index i), checked at both ends."""
    dataset = ShardDataset.open(str(split_dir))
    if len(dataset) != count:
        raise RuntimeError(f"{split_dir}: wrote {len(dataset)} items for {count} records")
    for index in {0, count // 2, count - 1}:
        dataset.item(index)  # raises when the position differs


def read_manifest(root: str) -> dict[str, Any]:
    """The shards root's manifest (local folders only; a remote root is trusted as it is)."""
    if _is_remote(root):
        return {}
    path = Path(root).expanduser() / MANIFEST
    if not path.is_file():
        hint = "write shards with `gloria prepare ... --shards DIR`"
        raise FileNotFoundError(f"data.shards: {path} not found ({hint})")
    data: dict[str, Any] = json.loads(path.read_text())
    return data


class ShardDataset:
    """Random access to one split's shards: ``item(i)`` -> :class:`ShardItem` (position ``i``).

    The litdata reader is opened lazily, so a copy sent to a DataLoader worker opens its own.
    """

    def __init__(self, split_dir: str, length: int) -> None:
        self.split_dir = split_dir
        self.length = length
        self._stream: Any = None

    @classmethod
    def open(cls, split_dir: str) -> ShardDataset:
        stream = _litdata().StreamingDataset(split_dir)
        dataset = cls(split_dir, len(stream))
        dataset._stream = stream
        return dataset

    def __len__(self) -> int:
        return self.length

    def __getstate__(self) -> dict[str, Any]:
        return {"split_dir": self.split_dir, "length": self.length, "_stream": None}

    def item(self, index: int) -> ShardItem:
        if self._stream is None:
            self._stream = _litdata().StreamingDataset(self.split_dir)
        raw = self._stream[int(index)]
        if int(raw["position"]) != index:
            where = f"{self.split_dir}: item {index}"
            raise RuntimeError(f"{where} holds position {raw['position']} (shards written out of order)")
        return ShardItem(
            image=np.asarray(raw["image"], dtype=np.uint8),
            sentences=bytes(raw["sentences"]).decode("utf-8").split(SENTENCE_SEP),
            id=bytes(raw["id"]).decode("utf-8"),
            patient_id=bytes(raw["patient_id"]).decode("utf-8"),
            position=index,
        )
