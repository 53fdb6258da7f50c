"""MIMIC-CXR(-JPG): metadata, official split and CheXpert-label CSVs joined per image; free-text reports
``sNNNNNNNN.txt`` cut into sections; the impression (optionally with the findings) kept, empty ones counted.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from gloria.data.chexpert import CHEXPERT_LABELS
from gloria.data.csv_reports import normalise_report, require_columns

log = logging.getLogger(__name__)

METADATA_CSV = "mimic-cxr-2.0.0-metadata.csv"
SPLIT_CSV = "mimic-cxr-2.0.0-split.csv"
CHEXPERT_CSV = "mimic-cxr-2.0.0-chexpert.csv"
FRONTAL_VIEWS: tuple[str, ...] = ("PA", "AP")
SPLIT_NAMES = {"train": "train", "validate": "valid", "test": "test"}
PREAMBLE = "PREAMBLE"
IMPRESSION_TITLES: tuple[str, ...] = ("IMPRESSION", "CONCLUSION", "FINDINGS AND IMPRESSION")
FINDINGS_TITLES: tuple[str, ...] = ("FINDINGS", "FINDINGS AND IMPRESSION")

# A section title: upper-case words at the start of a line, then a colon ("IMPRESSION:", "WET READ:").
_TITLE = re.compile(r"^[ \t]*([A-Z][A-Z0-9 &/(),\-]*[A-Z)])[ \t]*:", re.MULTILINE)


def parse_sections(text: str) -> dict[str, str]:
    """Sections of a free-text report: ``{TITLE: body}`` with whitespace collapsed, text before the first
    title under ``"PREAMBLE"`` (e.g. ``FINAL REPORT``). A repeated title's bodies are joined by a space."""
    sections: dict[str, str] = {}
    matches = list(_TITLE.finditer(text))
    head = normalise_report(text[: matches[0].start()] if matches else text)
    if head:
        sections[PREAMBLE] = head
    for i, match in enumerate(matches):
        end = matches[i + 1].start() if i + 1 < len(matches) else len(text)
        title = " ".join(match.group(1).split())
        body = normalise_report(text[match.end() : end])
        sections[title] = f"{sections[title]} {body}".strip() if title in sections else body
    return sections


def report_text(sections: dict[str, str], *, include_findings: bool = False) -> str:
    """The impression (IMPRESSION, else CONCLUSION, else FINDINGS AND IMPRESSION); ``include_findings``
    puts FINDINGS before it. Empty string when none of those has text."""
    impression = next((sections[t] for t in IMPRESSION_TITLES if sections.get(t)), "")
    if not include_findings:
        return impression
    findings = next((sections[t] for t in FINDINGS_TITLES if sections.get(t)), "")
    if findings == impression:
        return impression
    return " ".join(part for part in (findings, impression) if part)


def study_folder(subject_id: int | str, study_id: int | str) -> Path:
    """``files/p1x/p1xxxxxxx/sNNNNNNNN`` (relative) for a subject and study."""
    subject = str(int(subject_id))
    return Path("files") / f"p{subject[:2]}" / f"p{subject}" / f"s{int(study_id)}"


@dataclass
class MimicTable:
    """Images kept (``frame``) and how many were dropped, by reason."""

    frame: pd.DataFrame
    dropped: dict[str, int] = field(default_factory=dict)


def _read(path: Path, columns: tuple[str, ...]) -> pd.DataFrame:
    if not path.is_file():
        raise FileNotFoundError(f"MIMIC-CXR file not found: {path}")
    frame = pd.read_csv(path)
    require_columns(frame, columns, path)
    return frame


def read_mimic(
    root: str | Path,
    *,
    reports_root: str | Path | None = None,
    include_findings: bool = False,
    views: tuple[str, ...] = FRONTAL_VIEWS,
) -> MimicTable:
    """Join metadata, split and (when present) CheXpert labels; attach each study's report.

    Images are ``<root>/files/p1x/p1xxxxxxx/sNNNNNNNN/<dicom_id>.jpg``; reports
    ``<reports_root>/files/.../sNNNNNNNN.txt`` (default ``root``). Views outside ``views`` are dropped
    (``"view"``), and images whose report is missing or has no impression text (``"missing_report"``,
    ``"empty_report"``). Output columns: ``path``, ``report``, ``split`` (train/valid/test),
    ``patient_id``, ``study_id``, ``dicom_id``, ``view`` and the 14 labels when the label file exists.
    """
    root = Path(root)
    text_root = Path(reports_root) if reports_root is not None else root
    meta = _read(root / METADATA_CSV, ("dicom_id", "subject_id", "study_id", "ViewPosition"))
    split = _read(root / SPLIT_CSV, ("dicom_id", "split"))
    unknown = sorted(set(split["split"]) - set(SPLIT_NAMES))
    if unknown:
        raise ValueError(f"{root / SPLIT_CSV}: unknown split value(s) {unknown}")
    frame = meta.merge(split[["dicom_id", "split"]], on="dicom_id", how="inner", validate="one_to_one")
    if len(frame) < len(meta):
        log.warning("%d images of %s have no split", len(meta) - len(frame), METADATA_CSV)
    if (root / CHEXPERT_CSV).is_file():
        labels = _read(root / CHEXPERT_CSV, ("subject_id", "study_id", *CHEXPERT_LABELS))
        frame = frame.merge(labels, on=["subject_id", "study_id"], how="left")
    dropped: dict[str, int] = {}
    view = frame["ViewPosition"].fillna("").astype(str).str.strip()
    dropped["view"] = int((~view.isin(views)).sum())
    frame = frame[view.isin(views)].copy()

    cache: dict[tuple[int, int], str | None] = {}
    reports: list[str | None] = []
    for subject, study in frame[["subject_id", "study_id"]].itertuples(index=False):
        key = (int(subject), int(study))
        if key not in cache:
            txt = text_root / study_folder(subject, study).with_suffix(".txt")
            if txt.is_file():
                raw = txt.read_text(encoding="utf-8", errors="replace")
                cache[key] = report_text(parse_sections(raw), include_findings=include_findings)
            else:
                cache[key] = None
        reports.append(cache[key])
    frame["report"] = reports
    dropped["missing_report"] = int(frame["report"].isna().sum())
    dropped["empty_report"] = int((frame["report"] == "").sum())
    frame = frame[frame["report"].fillna("") != ""]
    log.info("MIMIC-CXR: %d images kept, dropped %s", len(frame), dropped)

    out = pd.DataFrame(
        {
            "path": [
                str(root / study_folder(s, t) / f"{d}.jpg")
                for s, t, d in frame[["subject_id", "study_id", "dicom_id"]].itertuples(index=False)
            ],
            "report": frame["report"],
            "split": frame["split"].map(SPLIT_NAMES),
            "patient_id": frame["subject_id"].astype(int).astype(str),
            "study_id": frame["study_id"].astype(int).astype(str),
            "dicom_id": frame["dicom_id"].astype(str),
            "view": frame["ViewPosition"].astype(str),
        }
    )
    for label in CHEXPERT_LABELS:
        if label in frame.columns:
            out[label] = frame[label].astype(float)
    return MimicTable(frame=out.reset_index(drop=True), dropped=dropped)
