"""SynthCXR reports agree with their pictures: every side word names the side the finding is drawn on, and
no word is doubled ("Airspace airspace consolidation")."""

from __future__ import annotations

import re

import numpy as np
import pytest

from gloria.data.synth import SynthConfig
from gloria.data.synth.case import Case, make_case

SIDE_WORDS = {"right": "right", "left": "left", "bilateral": "bilateral", "bibasilar": "bilateral"}
PREVALENCE = {"cardiomegaly": 0.3, "effusion": 0.4, "consolidation": 0.5, "atelectasis": 0.4, "edema": 0.3,
              "pneumothorax": 0.4, "opacity": 0.4, "nodule": 0.3, "device": 0.6}  # fmt: skip


@pytest.fixture(scope="module")
def cases() -> list[Case]:
    """200 cases at 128 px (at 64 px a tiny effusion's second side can be under a pixel)."""
    cfg = SynthConfig(size=128, prevalence=PREVALENCE, typo_rate=0.05)
    return [make_case(3, i, cfg) for i in range(200)]


def drawn_side(case: Case, j: int) -> str:
    """The side finding ``j`` is drawn on, from its mask (the patient's right is u < 0, image left): a lung
    finding's sides are those with a drawn pixel; a device's, the side of most of its pixels (a line's tip
    reaches the midline)."""
    finding = case.findings[j]
    u = case.frame.u[finding.mask]
    right, left = int((u < 0).sum()), int((u >= 0).sum())
    if finding.plan.kind == "device":
        return "right" if right > left else "left"
    return "bilateral" if right and left else ("right" if right else "left")


def sentences(text: str) -> list[tuple[int, int]]:
    """(start, end) of each sentence of ``text`` (split after a period)."""
    out, start = [], 0
    for m in re.finditer(r"\.(\s+|$)", text):
        out.append((start, m.end()))
        start = m.end()
    return out + ([(start, len(text))] if start < len(text) else [])


def test_every_side_word_names_the_drawn_side(cases: list[Case]) -> None:
    checked = {"device": 0, "lung": 0}
    for case in cases:
        text = case.report.text
        for start, end in sentences(text):
            tokens = re.findall(r"[a-z]+", text[start:end].lower())
            words = [SIDE_WORDS[w] for w in tokens if w in SIDE_WORDS]
            spans = case.report.spans
            owners = {s.finding for s in spans if start <= s.start < end and s.finding is not None}
            if not words:
                continue
            assert len(owners) == 1, f"case {case.index}: side words {words} in {text[start:end]!r}"
            j = owners.pop()
            side = drawn_side(case, j)
            assert set(words) == {side}, (
                f"case {case.index}: {text[start:end]!r} says {words}, "
                f"{case.findings[j].plan.kind} drawn on the {side}"
            )
            checked["device" if case.findings[j].plan.kind == "device" else "lung"] += 1
    assert checked["device"] > 20 and checked["lung"] > 100, checked


def test_central_lines_are_drawn_on_both_sides_and_reported_so(cases: list[Case]) -> None:
    sides = [
        (f.plan.attrs["side"], drawn_side(c, j))
        for c in cases
        for j, f in enumerate(c.findings)
        if f.plan.attrs.get("device") == "central_line"
    ]
    assert {s for s, _ in sides} == {"right", "left"}
    assert all(planned == drawn for planned, drawn in sides)


def test_no_word_is_doubled(cases: list[Case]) -> None:
    for case in cases:
        doubled = re.findall(r"\b(\w+)[ ,-]+\1\b", case.report.text, flags=re.IGNORECASE)
        assert not doubled, f"case {case.index}: doubled {doubled} in {case.report.text!r}"


def test_the_severity_airspace_is_not_repeated_by_the_noun() -> None:
    """The case the check above was written for: consolidation graded 2 draws "airspace" as its
    severity; the noun then drops its own "airspace"."""
    cfg = SynthConfig(size=64, prevalence={"consolidation": 1.0})
    texts = [make_case(0, i, cfg).report.text.lower() for i in range(200)]
    assert any("airspace consolidation" in t for t in texts)
    assert not any("airspace airspace" in t for t in texts)
    assert np.mean(["airspace" in t for t in texts]) > 0.1
