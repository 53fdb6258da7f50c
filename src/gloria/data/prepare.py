"""``gloria prepare``: build each source's split table (one row per image, ``path`` and ``split`` columns),
check its images exist, and write one CSV per split plus a JSON summary with counts and id checksums.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pandas as pd

from gloria.data import chexpert, mimic, rsna, siim
from gloria.data.chexpert_5x200 import RELEASE_SEED, build_5x200, read_5x200_csv
from gloria.data.csv_reports import ReportColumns, read_report_csv
from gloria.data.splits import assign_patient_splits, ids_checksum, split_ids

log = logging.getLogger(__name__)

SplitMode = Literal["release", "patient"]
FIVE_BY_200_CSV = "chexpert_5x200.csv"
REPORT_ROLES = ReportColumns(path="Path", report="Report Impression")  # the release's reports file


@dataclass
class Prepared:
    """A split table: ``frame`` has ``path`` and ``split``; ``id_col`` names the source's id column."""

    name: str
    frame: pd.DataFrame
    id_col: str
    label_cols: tuple[str, ...] = ()
    dropped: dict[str, int] = field(default_factory=dict)
    extra: dict[str, object] = field(default_factory=dict)


def missing_images(paths: Sequence[str]) -> list[str]:
    return [p for p in paths if not Path(p).is_file()]


def check_images(prepared: Prepared, *, allow_missing: bool) -> int:
    """Count missing images; FileNotFoundError listing the first few unless ``allow_missing``."""
    missing = missing_images(list(prepared.frame["path"].astype(str)))
    if missing:
        total = len(prepared.frame)
        text = f"{len(missing)} of {total} {prepared.name} images are missing, first: {missing[:5]}"
        if not allow_missing:
            raise FileNotFoundError(f"{text}; pass --allow-missing-images to write the splits anyway")
        log.warning("%s (kept: --allow-missing-images)", text)
    return len(missing)


def summarise(prepared: Prepared) -> dict[str, object]:
    frame = prepared.frame
    splits: dict[str, object] = {}
    for name, part in frame.groupby("split", sort=False):
        labels = {c: int((pd.to_numeric(part[c], errors="coerce") == 1).sum()) for c in prepared.label_cols}
        splits[str(name)] = {
            "rows": len(part),
            "positives": labels,
            "ids_sha256": ids_checksum(part[prepared.id_col]),
        }
    return {
        "dataset": prepared.name,
        "id_column": prepared.id_col,
        "splits": splits,
        "dropped": prepared.dropped,
        **prepared.extra,
    }


def write_prepared(prepared: Prepared, out: str | Path) -> dict[str, object]:
    """``<out>/<name>_<split>.csv`` per split and ``<out>/<name>_summary.json``; returns the summary."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for name, part in prepared.frame.groupby("split", sort=False):
        part.to_csv(out / f"{prepared.name}_{name}.csv", index=False)
    summary = summarise(prepared)
    (out / f"{prepared.name}_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    for name, info in summary["splits"].items():  # type: ignore[attr-defined]
        log.info("%s %s: %s", prepared.name, name, info)
    return summary


def prepare_chexpert(
    root: Path,
    *,
    mode: SplitMode,
    seed: int,
    reports: Path | None,
    exclude_5x200: Path | None,
    valid_fraction: float = 0.1,
    frontal: bool = False,
) -> Prepared:
    """train.csv split by patient into train/valid, Stanford's valid.csv as test.

    Every row of every patient of the 5x200 set (``exclude_5x200``) leaves train and valid, not only the
    drawn studies: other studies of the same patients would leak into the zero-shot number. The summary
    says how many rows left (``dropped["5x200_patients"]``).

    With ``reports``, rows without a report are dropped (``no_report``); ``frontal`` drops lateral views.
    """
    if mode == "release":
        raise ValueError(
            "CheXpert: the release's split (5,000 rows dropped by label) overlaps train and validation; "
            "use --split patient"
        )
    train = chexpert.read_chexpert_csv(root / "train.csv")
    drawn = read_5x200_csv(exclude_5x200) if exclude_5x200 else None
    studies = drawn.studies if drawn else set()
    patients = drawn.patients if drawn else set()
    frame = chexpert.split_by_patient(
        train, valid_fraction=valid_fraction, seed=seed, exclude_studies=studies, exclude_patients=patients
    )
    excluded_rows = int(frame.attrs.get("excluded_rows", 0))
    if (root / "valid.csv").is_file():
        test = chexpert.read_chexpert_csv(root / "valid.csv")
        test["patient_id"] = [chexpert.patient_id(p) for p in test["Path"]]
        frame = pd.concat([frame, test.assign(split="test")], ignore_index=True)
    frame["path"] = [str(chexpert.image_path(root, p)) for p in frame["Path"]]
    frame["view"] = frame["Frontal/Lateral"]
    dropped: dict[str, int] = {"5x200_patients": excluded_rows}
    if frontal:
        kept = chexpert.frontal_only(frame)
        dropped["non_frontal"] = len(frame) - len(kept)
        frame = kept
    if reports is not None:
        table = read_report_csv(reports, REPORT_ROLES)
        texts = dict(zip(table.frame["source_path"], table.frame["report"]))
        frame = frame.assign(report=frame["Path"].map(texts).fillna(""))
        dropped["no_report"] = int((frame["report"] == "").sum())
        frame = frame[frame["report"] != ""]
    return Prepared(
        "chexpert",
        frame,
        "Path",
        chexpert.CHEXPERT_LABELS,
        dropped=dropped,
        extra={
            "excluded_5x200_studies": len(studies),
            "excluded_5x200_patients": len(patients),
            "seed": seed,
        },
    )


def prepare_chexpert_5x200(root: Path, *, seed: int, reports: Path | None, n: int = 200) -> Prepared:
    train = chexpert.read_chexpert_csv(root / "train.csv")
    report_frame = None
    if reports is not None:
        report_frame = read_report_csv(reports, REPORT_ROLES).frame.rename(
            columns={"source_path": "Path", "report": "Report Impression"}
        )
    drawn = build_5x200(train, report_frame, n=n, seed=seed)
    frame = drawn.frame.assign(path=[str(chexpert.image_path(root, p)) for p in drawn.frame["Path"]])
    return Prepared(
        "chexpert_5x200",
        frame.assign(split="test"),
        "Path",
        chexpert.COMPETITION_TASKS,
        extra={"seed": seed, "paths_sha256": drawn.paths_sha256, "n_per_task": n},
    )


def prepare_mimic(
    root: Path, *, mode: SplitMode, seed: int, reports_root: Path | None, include_findings: bool
) -> Prepared:
    table = mimic.read_mimic(root, reports_root=reports_root, include_findings=include_findings)
    frame = table.frame
    if mode == "patient":
        frame["split"] = assign_patient_splits(frame, "patient_id", seed=seed)
    labels = tuple(c for c in chexpert.CHEXPERT_LABELS if c in frame.columns)
    return Prepared("mimic", frame, "dicom_id", labels, dropped=table.dropped, extra={"seed": seed})


def prepare_rsna(root: Path, *, mode: SplitMode, seed: int) -> Prepared:
    labels = rsna.read_rsna_labels(root / "stage_2_train_labels.csv")
    frame = rsna.group_by_patient(labels)
    frame["split"] = rsna.release_split(frame) if mode == "release" else rsna.patient_split(frame, seed=seed)
    frame["patient_id"] = frame["patientId"]
    frame["path"] = [str(rsna.image_path(root, p)) for p in frame["patientId"]]
    return Prepared("rsna", frame, "patientId", ("Target",), extra={"seed": seed})


def prepare_siim(root: Path, *, mode: SplitMode, seed: int, balance: bool = True) -> Prepared:
    frame = siim.group_by_image(siim.read_siim_rle(root / "train-rle.csv"))
    if mode == "release":
        frame["split"] = siim.release_split(frame)
    else:
        frame["split"] = frame["ImageId"].map(split_ids(frame["ImageId"], seed=seed))
    dropped: dict[str, int] = {}
    if balance:
        train = frame[frame["split"] == "train"]
        kept = siim.balance_negatives(train, seed=seed)
        dropped["train_negatives_not_drawn"] = len(train) - len(kept)
        frame = pd.concat([kept, frame[frame["split"] != "train"]])
    found = siim.find_dicoms(root) if (root / siim.IMAGE_DIR).is_dir() else {}
    default = root / siim.IMAGE_DIR
    frame["path"] = [str(found.get(i, default / f"{i}.dcm")) for i in frame["ImageId"]]
    shapes = [siim.dicom_shape(found[i]) if i in found else (siim.SIIM_SIZE,) * 2 for i in frame["ImageId"]]
    frame["height"] = [h for h, _ in shapes]
    frame["width"] = [w for _, w in shapes]
    frame["patient_id"] = frame["ImageId"]
    return Prepared("siim", frame, "ImageId", ("positive",), dropped=dropped, extra={"seed": seed})


def prepare_csv(
    csv_path: Path,
    columns: ReportColumns,
    *,
    mode: SplitMode,
    seed: int,
    image_root: Path | None = None,
    frontal: bool = False,
) -> Prepared:
    table = read_report_csv(csv_path, columns, image_root=image_root, frontal_only=frontal)
    frame = table.frame
    if mode == "patient" or columns.split is None:
        frame["split"] = assign_patient_splits(frame, "patient_id", seed=seed)
    return Prepared("csv", frame, "source_path", columns.labels, dropped=table.dropped, extra={"seed": seed})


__all__ = ["FIVE_BY_200_CSV", "RELEASE_SEED", "Prepared", "check_images", "write_prepared"]
