"""SynthCXR labels agree with the report text: negations 0, hedges -1, positives 1, unmentioned blank."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest

from gloria.data.synth import SynthConfig, make_case
from gloria.data.synth.labels import CHEXPERT_LABELS, KIND_LABEL, Span, labels_from_spans
from support.synth import small_config, synth_set  # noqa: F401  (session fixture)

NEGATION_CUES = re.compile(r"\b(no|there is no|no evidence of)\b|\bnormal\b|within normal limits", re.I)
HEDGE_CUES = re.compile(r"\b(possible|cannot exclude|questionable|probable|may represent|borderline)\b", re.I)
KEYWORDS = {
    "Pleural Effusion": "effusion",
    "Pneumothorax": "pneumothora",
    "Consolidation": "consolidation",
    "Edema": "edema",
    "Atelectasis": "atelectasis",
    "Pneumonia": "pneumonia",
    "Cardiomegaly": "cardiomegaly",
    "Fracture": "fracture",
    "Lung Lesion": "nodule",
    "Support Devices": "tube",
}


def clause_before(text: str, span: Span) -> str:
    """The text of the span's sentence from its start up to the span's end."""
    start = max(text.rfind(". ", 0, span.start) + 2, text.rfind(": ", 0, span.start) + 2, 0)
    return text[start : span.end]


def value_from_text(text: str, span: Span) -> float:
    clause = clause_before(text, span)
    if NEGATION_CUES.search(clause):
        return 0.0
    if HEDGE_CUES.search(clause):
        return -1.0
    return 1.0


def labels_from_text(text: str, spans: tuple[Span, ...]) -> dict[str, float | None]:
    """Independent derivation: the value of each labelled mention read from its clause's cue words."""
    seen: dict[str, set[float]] = {}
    for span in spans:
        if span.role == "finding":
            assert span.label is not None
            seen.setdefault(span.label, set()).add(value_from_text(text, span))
    row: dict[str, float | None] = {}
    for label in CHEXPERT_LABELS[1:]:
        values = seen.get(label, set())
        row[label] = 1.0 if 1.0 in values else -1.0 if -1.0 in values else 0.0 if values else None
    sick = any(row[k] in (1.0, -1.0) for k in CHEXPERT_LABELS[1:] if k != "Support Devices")
    row["No Finding"] = None if sick else 1.0
    return row


@pytest.mark.parametrize(
    "cfg", [SynthConfig(size=96), small_config(size=96, uncertain_rate=0.4, hedge_absent_rate=0.5)]
)
def test_labels_match_cue_words_in_the_text(cfg: SynthConfig) -> None:
    seen_values: set[float] = set()
    for index in range(80):
        case = make_case(9, index, cfg)
        text = case.report.text
        assert labels_from_text(text, case.report.spans) == case.labels, text
        for span in case.report.spans:
            assert text[span.start : span.end].strip() == text[span.start : span.end] != ""
        seen_values |= {v for v in case.labels.values() if v is not None}
        for label, value in case.labels.items():
            if value is None and label in KEYWORDS:
                assert KEYWORDS[label] not in text.lower(), (label, text)
    assert seen_values == {1.0, 0.0, -1.0}


def test_every_finding_is_named_in_findings_and_impression() -> None:
    cfg = small_config(size=96)
    for index in range(40):
        case = make_case(1, index, cfg)
        for j, finding in enumerate(case.findings):
            named = [s for s in case.report.spans if s.finding == j and s.role == "finding"]
            assert {s.section for s in named} == {"findings", "impression"}
            expected = -1.0 if finding.plan.hedged else 1.0
            assert any(s.label == KIND_LABEL[finding.kind] and s.value == expected for s in named)
            if finding.plan.hedged:
                assert case.labels[KIND_LABEL[finding.kind]] == -1.0
            else:
                assert case.labels[KIND_LABEL[finding.kind]] == 1.0
        impression = case.report.text[case.report.impression_start :]
        assert impression == case.report.impression and case.report.text.endswith(impression)


def test_no_finding_rule() -> None:
    spans = (
        Span(0, 1, "finding", "findings", "Support Devices", 1.0),
        Span(2, 3, "finding", "findings", "Edema", 0.0),
    )
    row = labels_from_spans(spans)
    assert row["No Finding"] == 1.0 and row["Edema"] == 0.0 and row["Cardiomegaly"] is None
    row = labels_from_spans((*spans, Span(4, 5, "finding", "findings", "Edema", -1.0)))
    assert row["No Finding"] is None and row["Edema"] == -1.0
    row = labels_from_spans(
        (Span(4, 5, "finding", "findings", "Edema", -1.0), Span(6, 7, "finding", "impression", "Edema", 1.0))
    )
    assert row["Edema"] == 1.0
    with pytest.raises(ValueError, match="unknown observation"):
        labels_from_spans((Span(0, 1, "finding", "findings", "Broken Heart", 1.0),))


def test_csv_labels_equal_ground_truth(synth_set: Path) -> None:  # noqa: F811
    records = [json.loads(x) for x in (synth_set / "synthcxr_ground_truth.jsonl").read_text().splitlines()]
    table = pd.concat(
        [pd.read_csv(synth_set / "CheXpert-v1.0" / f) for f in ("train.csv", "valid.csv")]
    ).set_index("Path")
    for record in records:
        row = table.loc[record["chexpert_path"]]
        for label in CHEXPERT_LABELS:
            value = record["labels"][label]
            assert (pd.isna(row[label]) and value is None) or row[label] == value
        for span in record["spans"]:
            assert record["report"][span["start"] : span["end"]] == span["text"]


def test_report_noise_and_vocabulary() -> None:
    cfg = SynthConfig(size=96, typo_rate=0.3, deid_rate=1.0)
    texts = [make_case(2, i, cfg).report.text for i in range(30)]
    assert any("XXXX" in t for t in texts)
    words = set(re.findall(r"[a-z-]+", " ".join(texts).lower()))
    # some of the release's prompt vocabulary and some words its prompts never use
    assert {"atelectasis", "pleural", "effusion", "cardiomegaly", "consolidation", "edema"} <= words
    assert words & {"plate-like", "discoid", "bronchograms", "kerley", "opacification", "meniscus", "lingula"}
