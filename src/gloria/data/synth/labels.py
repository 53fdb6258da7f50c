"""SynthCXR labels: the 14 CheXpert observations derived from the report's mentions (1 / 0 / -1 / blank).

Aggregation follows the CheXpert labeler's precedence: a positive mention wins over an uncertain one, which
wins over a negation; an observation never mentioned stays blank. No Finding is 1 when no pathology is
positive or uncertain (Support Devices does not count) and blank otherwise.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from gloria.constants import CHEXPERT_COMPETITION_TASKS, CHEXPERT_TASKS

CHEXPERT_LABELS: tuple[str, ...] = tuple(CHEXPERT_TASKS)
COMPETITION_TASKS: tuple[str, ...] = tuple(CHEXPERT_COMPETITION_TASKS)

# finding kind of the generator -> the CheXpert observation it is labelled as
KIND_LABEL: dict[str, str] = {
    "cardiomegaly": "Cardiomegaly",
    "effusion": "Pleural Effusion",
    "consolidation": "Consolidation",
    "atelectasis": "Atelectasis",
    "edema": "Edema",
    "pneumothorax": "Pneumothorax",
    "opacity": "Lung Opacity",
    "nodule": "Lung Lesion",
    "device": "Support Devices",
}


@dataclass(frozen=True)
class Span:
    """Characters [start, end) of the full report text. ``role``: "finding" (names an observation: label
    and value set), "location" / "severity" (describe finding ``finding``), "hedge" / "negation" (the cue
    words that make a mention uncertain or negative). ``section``: "findings" or "impression". ``finding``
    indexes the image's findings (None for a mention of an absent finding)."""

    start: int
    end: int
    role: str
    section: str
    label: str | None = None
    value: float | None = None
    finding: int | None = None


def labels_from_spans(spans: Iterable[Span]) -> dict[str, float | None]:
    """CheXpert label row {observation: 1.0 / 0.0 / -1.0 / None} from the report's labelled spans."""
    values: dict[str, set[float]] = {}
    for span in spans:
        if span.role != "finding" or span.label is None or span.value is None:
            continue
        if span.label not in CHEXPERT_LABELS or span.label == "No Finding":
            raise ValueError(f"labels_from_spans: unknown observation {span.label!r}")
        values.setdefault(span.label, set()).add(span.value)
    row: dict[str, float | None] = {}
    for label in CHEXPERT_LABELS[1:]:
        seen = values.get(label)
        if not seen:
            row[label] = None
        elif 1.0 in seen:
            row[label] = 1.0
        elif -1.0 in seen:
            row[label] = -1.0
        else:
            row[label] = 0.0
    pathologies = [label for label in CHEXPERT_LABELS[1:] if label != "Support Devices"]
    abnormal = any(row[label] in (1.0, -1.0) for label in pathologies)
    row["No Finding"] = None if abnormal else 1.0
    return {label: row[label] for label in CHEXPERT_LABELS}
