"""Data checks before training: empty or unparseable reports, missing or corrupt images, duplicate ids,
patient leakage between splits, non-frontal views. Errors make ``gloria validate-data`` exit non-zero.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pandas as pd

from gloria.data.images import check_raster_file, is_dicom, read_image
from gloria.data.reports import report_sentences
from gloria.data.splits import leaked_ids

log = logging.getLogger(__name__)

Severity = Literal["error", "warning"]
FRONTAL_VIEWS = frozenset({"FRONTAL", "PA", "AP"})
SHOWN = 5  # items listed per issue


@dataclass(frozen=True)
class Issue:
    """One kind of problem, how bad, and the offending items (paths, ids or row numbers)."""

    kind: str
    severity: Severity
    items: tuple[str, ...]

    def message(self) -> str:
        more = f" (+{len(self.items) - SHOWN} more)" if len(self.items) > SHOWN else ""
        return f"{self.severity}: {self.kind}: {len(self.items)}, e.g. {list(self.items[:SHOWN])}{more}"


@dataclass
class ValidationReport:
    rows: int
    issues: list[Issue] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(issue.severity == "error" for issue in self.issues)

    def to_dict(self) -> dict[str, object]:
        return {
            "rows": self.rows,
            "ok": self.ok,
            "issues": [
                {
                    "kind": i.kind,
                    "severity": i.severity,
                    "count": len(i.items),
                    "examples": list(i.items[:20]),
                }
                for i in self.issues
            ],
        }


@dataclass(frozen=True)
class Columns:
    """Column roles; a role whose column is absent from the frame is skipped."""

    path: str = "path"
    report: str = "report"
    id: str = "path"
    patient: str = "patient_id"
    split: str = "split"
    view: str = "view"


SOURCE_COLUMN = "_source"  # optional: the file each row came from (several CSVs validated together)
LINE_COLUMN = "_line"  # optional: the row's line number in that file


def _rows(frame: pd.DataFrame, mask: pd.Series) -> tuple[str, ...]:
    """``file line N`` (or ``row N``: header line 1, first data row 2) of the rows where ``mask`` holds."""
    positions = mask.to_numpy().nonzero()[0]
    if {SOURCE_COLUMN, LINE_COLUMN} <= set(frame.columns):
        return tuple(f"{frame[SOURCE_COLUMN].iloc[i]} line {frame[LINE_COLUMN].iloc[i]}" for i in positions)
    return tuple(f"row {i + 2}" for i in positions)


def check_reports(frame: pd.DataFrame, column: str) -> list[Issue]:
    """Empty reports, and reports from which no training sentence can be cut (``report_sentences``)."""
    text = frame[column].fillna("").astype(str)
    empty = text.str.strip() == ""
    unparseable = ~empty & pd.Series([not report_sentences(t) for t in text], index=frame.index)
    return [
        Issue(kind, "error", _rows(frame, mask))
        for kind, mask in (("empty report", empty), ("unparseable report", unparseable))
        if mask.any()
    ]


def _image_problem(path: str, decode: bool) -> tuple[str, str] | None:
    """(kind, item) of what is wrong with one image file, or None. Every failure is caught: one bad file
    (too many pixels, a decoder error) is reported and the check goes on."""
    file = Path(path)
    if not file.is_file():
        return "missing", path
    try:
        if file.stat().st_size == 0:
            return "corrupt", f"{path} (empty file)"
        if decode:
            read_image(file)
        elif not is_dicom(file):
            check_raster_file(file)  # cheap: header and tail only (truncated JPEG, too many pixels)
    except Exception as err:  # reported per file, the check continues
        text = str(err) or type(err).__name__
        return "corrupt", text if path in text else f"{path} ({text})"
    return None


def check_images(paths: Sequence[str], *, decode: bool = False, workers: int = 4) -> list[Issue]:
    """Missing files and files that cannot be decoded: empty, truncated JPEGs and images over the pixel
    limit always (header and tail read), any decoding failure with ``decode``."""
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        problems = list(pool.map(lambda p: _image_problem(p, decode), paths))
    out = []
    for kind in ("missing", "corrupt"):
        items = tuple(
            item for problem in problems if problem is not None for k, item in [problem] if k == kind
        )
        if items:
            out.append(Issue(f"{kind} image", "error", items))
    return out


def check_duplicates(frame: pd.DataFrame, column: str) -> list[Issue]:
    dup = frame[column].astype(str)
    items = tuple(sorted(set(dup[dup.duplicated(keep=False)])))
    return [Issue(f"duplicate {column}", "error", items)] if items else []


def check_leakage(frame: pd.DataFrame, patient: str, split: str) -> list[Issue]:
    items = tuple(leaked_ids(frame, patient, split))
    return [Issue("patient in several splits", "error", items)] if items else []


def check_views(frame: pd.DataFrame, column: str) -> list[Issue]:
    view = frame[column].fillna("").astype(str).str.strip().str.upper()
    lateral = ~view.isin(FRONTAL_VIEWS) & (view != "")
    return [Issue("non-frontal view", "warning", _rows(frame, lateral))] if lateral.any() else []


def validate_frame(
    frame: pd.DataFrame, columns: Columns = Columns(), *, decode: bool = False, workers: int = 4
) -> ValidationReport:
    """Run every check whose columns exist in ``frame``; log each issue."""
    report = ValidationReport(rows=len(frame))
    has = set(frame.columns)
    if columns.report in has:
        report.issues += check_reports(frame, columns.report)
    if columns.path in has:
        report.issues += check_images(list(frame[columns.path].astype(str)), decode=decode, workers=workers)
    if columns.id in has:
        report.issues += check_duplicates(frame, columns.id)
    if {columns.patient, columns.split} <= has:
        report.issues += check_leakage(frame, columns.patient, columns.split)
    if columns.view in has:
        report.issues += check_views(frame, columns.view)
    for issue in report.issues:
        (log.error if issue.severity == "error" else log.warning)("%s", issue.message())
    return report
