"""Records per split for an experiment's ``data`` section, on top of the dataset loaders; the seeded
``train_pct`` subsample (recorded: count, seed, checksum of the kept ids).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pandas as pd

from gloria.data import chexpert, rsna, siim
from gloria.data.chexpert_5x200 import evaluation_patients, without_patients
from gloria.data.csv_reports import ReportColumns, read_report_csv, report_records
from gloria.data.records import (
    ImageReportRecord,
    LabelledImageRecord,
    SegmentationRecord,
)
from gloria.data.splits import assign_patient_splits, ids_checksum
from gloria.training.experiment import DataSection

log = logging.getLogger(__name__)

SPLIT_ALIASES = {"train": "train", "valid": "valid", "validate": "valid", "val": "valid", "test": "test"}
RecordT = TypeVar("RecordT")


@dataclass
class SplitRecords:
    """Records of each split plus what was done to them (for the results JSON)."""

    train: list[Any]
    valid: list[Any]
    test: list[Any]
    info: dict[str, Any] = field(default_factory=dict)


def resolve(root: str, path: str) -> Path:
    """``path`` relative to ``root`` unless absolute."""
    p = Path(path).expanduser()
    return p if p.is_absolute() or not root else Path(root).expanduser() / p


def subsample(records: Sequence[RecordT], pct: float, seed: int) -> tuple[list[RecordT], list[int]]:
    """Keep ``max(1, round(pct * n))`` records drawn without replacement by ``default_rng(seed)``, in
    their original order; also returns the kept positions."""
    if not 0.0 < pct <= 1.0:
        raise ValueError(f"train_pct must be in (0, 1], got {pct}")
    n = len(records)
    if pct >= 1.0 or n == 0:
        return list(records), list(range(n))
    keep = max(1, round(pct * n))
    chosen = sorted(np.random.default_rng(seed).choice(n, size=keep, replace=False).tolist())
    return [records[i] for i in chosen], chosen


def _normalise_splits(frame: pd.DataFrame, column: str, source: object) -> pd.DataFrame:
    values = frame["split"].astype(str).str.strip().str.lower()
    unknown = sorted(set(values) - set(SPLIT_ALIASES))
    if unknown:
        raise ValueError(f"{source}: column {column!r} has unknown split value(s) {unknown}")
    return frame.assign(split=values.map(SPLIT_ALIASES))


def _patient_split(frame: pd.DataFrame, cfg: DataSection, held_out: Sequence[str]) -> pd.Series:
    """Split rows by ``patient_id`` into train plus the ``held_out`` splits (valid/test fractions)."""
    if not held_out:
        return pd.Series("train", index=frame.index, name="split")
    wanted = {"valid": cfg.valid_fraction, "test": cfg.test_fraction}
    fractions = {"train": 1.0 - sum(wanted[n] for n in held_out), **{n: wanted[n] for n in held_out}}
    if fractions["train"] <= 0:
        raise ValueError(f"data.valid_fraction + data.test_fraction leave no training rows: {fractions}")
    return assign_patient_splits(frame, "patient_id", fractions, seed=cfg.split_seed)


def _by_split(records: Sequence[RecordT], splits: Sequence[str]) -> dict[str, list[RecordT]]:
    out: dict[str, list[RecordT]] = {"train": [], "valid": [], "test": []}
    for record, split in zip(records, splits):
        out[split].append(record)
    return out


def _image_report(cfg: DataSection) -> dict[str, list[ImageReportRecord]]:
    columns = ReportColumns(
        path=cfg.path_column, report=cfg.report_column, split=cfg.split_column, patient=cfg.patient_column
    )
    image_root = resolve(cfg.root, cfg.image_root) if cfg.image_root else None

    def read(name: str) -> pd.DataFrame:
        path = resolve(cfg.root, name)
        return read_report_csv(path, columns, image_root=image_root, frontal_only=cfg.frontal_only).frame

    frame = read(cfg.train_csv)
    if cfg.split_column:
        frame = _normalise_splits(frame, cfg.split_column, resolve(cfg.root, cfg.train_csv))
    else:
        held_out = [n for n, p in (("valid", cfg.valid_csv), ("test", cfg.test_csv)) if not p]
        frame = frame.assign(split=_patient_split(frame, cfg, held_out).to_numpy())
        for name, path in (("valid", cfg.valid_csv), ("test", cfg.test_csv)):
            if path:
                frame = pd.concat([frame, read(path).assign(split=name)], ignore_index=True)
    frame = _without_evaluation_patients(frame, cfg)
    return _by_split(report_records(frame), list(frame["split"]))


DEFAULT_EXCLUDE_CSV = "chexpert_5x200.csv"


def exclusion_csvs(cfg: DataSection) -> list[Path]:
    """The evaluation CSVs whose patients leave training: ``data.exclude_csv`` (relative to ``root``), or
    by default ``<root>/chexpert_5x200.csv`` when it exists."""
    if cfg.exclude_csv is not None:
        return [resolve(cfg.root, name) for name in cfg.exclude_csv]
    default = resolve(cfg.root, DEFAULT_EXCLUDE_CSV)
    return [default] if cfg.root and default.is_file() else []


def _without_evaluation_patients(frame: pd.DataFrame, cfg: DataSection) -> pd.DataFrame:
    """``frame`` without the rows of any patient of the evaluation CSVs (matched on the CSV's ``Path``)."""
    for csv_path in exclusion_csvs(cfg):
        patients = evaluation_patients(csv_path)
        kept = without_patients(frame, "source_path", patients)
        log.info(
            "%s: %d rows of its %d patients removed from every split (%d rows kept)",
            csv_path,
            len(frame) - len(kept),
            len(patients),
            len(kept),
        )
        frame = kept
    return frame


def _chexpert(cfg: DataSection) -> dict[str, list[LabelledImageRecord]]:
    def read(name: str) -> pd.DataFrame:
        frame = chexpert.read_chexpert_csv(resolve(cfg.root, name))
        return chexpert.frontal_only(frame) if cfg.frontal_only else frame

    train = read(cfg.train_csv)
    train = train.assign(patient_id=[chexpert.patient_id(str(p)) for p in train["Path"]])
    held_out = [n for n, p in (("valid", cfg.valid_csv), ("test", cfg.test_csv)) if not p]
    parts = [train.assign(split=_patient_split(train, cfg, held_out).to_numpy())]
    for name, path in (("valid", cfg.valid_csv), ("test", cfg.test_csv)):
        if path:
            parts.append(read(path).assign(split=name))
    frame = pd.concat(parts, ignore_index=True)
    targets = chexpert.apply_uncertain_policy(frame, cfg.uncertain, cfg.classes)
    records = [
        LabelledImageRecord(
            path=chexpert.image_path(cfg.root, str(path)),
            labels={c: float(targets.loc[i, c]) for c in cfg.classes},
            split=str(split),
            patient_id=chexpert.patient_id(str(path)),
            view=str(view),
        )
        for i, path, split, view in zip(frame.index, frame["Path"], frame["split"], frame["Frontal/Lateral"])
    ]
    return _by_split(records, list(frame["split"]))


RSNA_CLASS = "Pneumonia"


def _rsna(cfg: DataSection) -> dict[str, list[LabelledImageRecord]]:
    labels_csv = resolve(cfg.root, cfg.train_csv or "stage_2_train_labels.csv")
    patients = rsna.group_by_patient(rsna.read_rsna_labels(labels_csv))
    patients["split"] = rsna.patient_split(patients, seed=cfg.split_seed).to_numpy()
    name = cfg.classes[0] if cfg.classes else RSNA_CLASS
    records = [
        LabelledImageRecord(
            path=r.path, labels={name: float(r.target)}, split=r.split, patient_id=r.patient_id
        )
        for r in rsna.detection_records(patients, cfg.root)
    ]
    return _by_split(records, [r.split for r in records])


def _siim(cfg: DataSection) -> dict[str, list[SegmentationRecord]]:
    rows = siim.read_siim_rle(resolve(cfg.root, cfg.train_csv or "train-rle.csv"))
    images = siim.group_by_image(rows)
    images["split"] = siim.release_split(images).to_numpy()
    if cfg.balance_train:
        train = siim.balance_negatives(images[images["split"] == "train"], seed=cfg.split_seed)
        images = pd.concat([train, images[images["split"] != "train"]])
    records = siim.segmentation_records(images, siim.find_dicoms(cfg.root))
    return _by_split(records, [r.split for r in records])


def _portable_id(path_or_index: object, root: str) -> str:
    """A record's id for the subsample checksum: its path relative to ``data.root`` (so the same data in
    another folder or on another machine gives the same checksum), or its index."""
    if not isinstance(path_or_index, Path) or not root:
        return str(path_or_index)
    return os.path.relpath(os.path.abspath(path_or_index), os.path.abspath(Path(root).expanduser()))


def load_split_records(cfg: DataSection, *, seed: int) -> SplitRecords:
    """Records of train/valid/test for ``cfg.source``, train subsampled to ``cfg.train_pct`` with ``seed``.

    Missing files raise FileNotFoundError naming them; an empty train or valid split raises ValueError.
    """
    if cfg.root and not Path(cfg.root).expanduser().exists():
        raise FileNotFoundError(f"data.root does not exist: {cfg.root}")
    loaders: dict[str, Callable[[DataSection], dict[str, list[Any]]]] = {
        "image_report": _image_report,
        "chexpert": _chexpert,
        "rsna": _rsna,
        "siim": _siim,
    }
    splits = loaders[cfg.source](cfg)
    for name in ("train", "valid"):
        if not splits[name]:
            raise ValueError(f"data source {cfg.source!r} under {cfg.root!r} has no {name!r} rows")
    full_train = len(splits["train"])
    train, kept = subsample(splits["train"], cfg.train_pct, seed)
    ids = [_portable_id(getattr(r, "path", i), cfg.root) for i, r in zip(kept, train)]
    info: dict[str, Any] = {
        "source": cfg.source,
        "train_pct": cfg.train_pct,
        "train_pct_seed": seed,
        "train_rows_total": full_train,
        "train_rows": len(train),
        "valid_rows": len(splits["valid"]),
        "test_rows": len(splits["test"]),
        "train_ids_sha256": ids_checksum(ids),
    }
    if cfg.source == "image_report":
        info["excluded_patients_of"] = [str(p) for p in exclusion_csvs(cfg)]
    log.info(
        "data %s: train %d/%d, valid %d, test %d",
        cfg.source,
        len(train),
        full_train,
        len(splits["valid"]),
        len(splits["test"]),
    )
    return SplitRecords(train=train, valid=splits["valid"], test=splits["test"], info=info)
