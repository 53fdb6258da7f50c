"""Image-report CSVs: a user's own file (image path + report text, labels optional) and the release's
reports file roles (``Path``, ``Frontal/Lateral``, ``Split``, ``Report Impression``).

Reports are whitespace-normalised here; the training captions come from ``gloria.data.reports`` (the same
cleaning and sentence sampling as the CheXpert reports). Empty reports are dropped and counted.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from gloria.data.records import ImageReportRecord

log = logging.getLogger(__name__)

_SPACES = re.compile(r"\s+")


@dataclass(frozen=True)
class ReportColumns:
    """Which CSV column plays which role; ``None`` means the file has no such column."""

    path: str = "Path"
    report: str = "Report Impression"
    split: str | None = None
    patient: str | None = None
    view: str | None = None
    labels: tuple[str, ...] = ()


RELEASE_REPORT_COLUMNS = ReportColumns(
    path="Path", report="Report Impression", split="Split", view="Frontal/Lateral"
)


@dataclass
class ReportTable:
    """Rows kept and rows dropped by reason.

    ``frame`` columns: ``path``, ``source_path``, ``report``, ``split``, ``patient_id``, ``view``, labels.
    """

    frame: pd.DataFrame
    dropped: dict[str, int] = field(default_factory=dict)


def normalise_report(text: object) -> str:
    """Collapse whitespace; NaN/None -> empty string."""
    if text is None or (isinstance(text, float) and text != text):
        return ""
    return _SPACES.sub(" ", str(text)).strip()


SPLIT_ALIASES = {
    "train": "train", "training": "train",
    "valid": "valid", "val": "valid", "validate": "valid", "validation": "valid",
    "test": "test", "testing": "test",
}  # fmt: skip


def _split_names(values: pd.Series, source: str | Path) -> pd.Series:
    """Split values mapped to train/valid/test; ValueError names the file, row and value otherwise."""
    names = values.astype(str).str.strip().str.lower().map(SPLIT_ALIASES)
    if names.isna().any():
        row = int(names.isna().to_numpy().nonzero()[0][0])
        raise ValueError(
            f"{source}: row {row + 2} split {values.iloc[row]!r} is not one of {sorted(set(SPLIT_ALIASES))}"
        )
    return names


def require_columns(frame: pd.DataFrame, columns: Sequence[str], source: str | Path) -> None:
    """Raise ValueError naming the file and every missing column."""
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{source}: missing column(s) {missing}; found {list(frame.columns)}")


def read_report_csv(
    csv_path: str | Path,
    columns: ReportColumns = ReportColumns(),
    *,
    image_root: str | Path | None = None,
    frontal_only: bool = False,
) -> ReportTable:
    """Read an image-report CSV into a normalised table.

    Relative image paths are joined to ``image_root`` (default: the CSV's folder). Rows with an empty report
    are dropped and counted under ``"empty_report"``; with ``frontal_only`` rows whose view is not frontal
    (CheXpert ``Frontal``, or MIMIC ``PA``/``AP``) are dropped under ``"non_frontal"``.
    """
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise FileNotFoundError(f"report CSV not found: {csv_path}")
    frame = pd.read_csv(csv_path, dtype=str, keep_default_na=False)
    wanted = [columns.path, columns.report, *columns.labels]
    wanted += [c for c in (columns.split, columns.patient, columns.view) if c is not None]
    require_columns(frame, wanted, csv_path)
    root = Path(image_root) if image_root is not None else csv_path.parent

    out = pd.DataFrame(
        {
            "path": [str(root / p) if not Path(p).is_absolute() else p for p in frame[columns.path]],
            "source_path": frame[columns.path],
            "report": [normalise_report(t) for t in frame[columns.report]],
            "split": _split_names(frame[columns.split], csv_path) if columns.split else "train",
            "patient_id": frame[columns.patient].astype(str) if columns.patient else frame[columns.path],
            "view": frame[columns.view].astype(str) if columns.view else "",
        }
    )
    for label in columns.labels:
        out[label] = pd.to_numeric(frame[label].replace("", None), errors="raise")
    dropped: dict[str, int] = {}
    empty = out["report"] == ""
    dropped["empty_report"] = int(empty.sum())
    out = out[~empty]
    if frontal_only and columns.view:
        frontal = out["view"].str.strip().str.upper().isin(["FRONTAL", "PA", "AP"])
        dropped["non_frontal"] = int((~frontal).sum())
        out = out[frontal]
    if any(dropped.values()):
        log.info("%s: dropped %s", csv_path, dropped)
    return ReportTable(frame=out.reset_index(drop=True), dropped=dropped)


def report_records(frame: pd.DataFrame, labels: Sequence[str] = ()) -> list[ImageReportRecord]:
    """Records from a table produced by :func:`read_report_csv` (or a prepared split CSV)."""
    require_columns(frame, ["path", "report", "split", "patient_id"], "report table")
    views = frame["view"] if "view" in frame.columns else pd.Series([""] * len(frame), index=frame.index)
    studies = frame["study_id"] if "study_id" in frame.columns else views.map(lambda _: "")
    return [
        ImageReportRecord(
            path=Path(str(row_path)),
            report=str(report),
            split=str(split),
            patient_id=str(patient),
            study_id=str(study),
            view=str(view),
            labels={name: float(frame.at[index, name]) for name in labels},  # type: ignore[arg-type]
        )
        for index, row_path, report, split, patient, study, view in zip(
            frame.index, frame["path"], frame["report"], frame["split"], frame["patient_id"], studies, views
        )
    ]
