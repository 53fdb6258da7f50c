"""SynthCXR report grammar: FINDINGS and IMPRESSION text from an image's findings, with recorded spans.

Synonyms, severity and location words, negations of absent findings (label 0), hedges (label -1), normal
statements, shuffled sentence order and noise (typos in filler words only, "XXXX" de-identification).
Every word that names a finding is recorded as a character span of the full report.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gloria.data.synth.config import SynthConfig
from gloria.data.synth.findings import FindingPlan
from gloria.data.synth.labels import KIND_LABEL, Span

# a segment: (text, role, label, value, finding index); role None marks filler words
Segment = tuple[str, str | None, str | None, float | None, int | None]

LOCATIONS: dict[tuple[str, str], tuple[str, ...]] = {
    ("right", "upper"): ("right upper lobe", "right upper lung zone", "right apex"),
    ("right", "middle"): ("right middle lobe", "right mid lung zone", "right perihilar region"),
    ("right", "lower"): ("right lower lobe", "right lung base", "right base"),
    ("left", "upper"): ("left upper lobe", "left upper lung zone", "left apex"),
    ("left", "middle"): ("lingula", "left mid lung zone", "left perihilar region"),
    ("left", "lower"): ("left lower lobe", "left lung base", "left base", "retrocardiac region"),
}
HEDGE_PREFIX = ("possible", "cannot exclude", "questionable", "probable")
HEDGE_WORDS = ("possible", "cannot exclude", "questionable", "probable", "may represent", "not excluded")
NEGATION_WORDS = ("no ", "normal", "within normal limits", "without")

# absent observation -> noun phrases used in negations ("No pleural effusion or pneumothorax.")
NEGATABLE: dict[str, tuple[str, ...]] = {
    "Pleural Effusion": ("pleural effusion", "effusion"),
    "Pneumothorax": ("pneumothorax",),
    "Consolidation": ("focal consolidation", "consolidation"),
    "Edema": ("pulmonary edema", "edema"),
    "Lung Opacity": ("focal airspace opacity", "airspace opacity"),
    "Pneumonia": ("pneumonia",),
    "Lung Lesion": ("suspicious pulmonary nodule", "nodule"),
    "Fracture": ("displaced rib fracture", "acute fracture"),
    "Atelectasis": ("atelectasis",),
}
HEDGEABLE_ABSENT: dict[str, tuple[str, ...]] = {
    "Pleural Effusion": ("a small pleural effusion", "trace pleural fluid"),
    "Pneumothorax": ("a tiny apical pneumothorax",),
    "Consolidation": ("early consolidation",),
    "Pneumonia": ("early pneumonia", "aspiration pneumonia"),
    "Atelectasis": ("subsegmental atelectasis", "minimal atelectasis"),
    "Edema": ("mild interstitial edema",),
}
GRADE_SEVERITY: dict[str, dict[int, tuple[str, ...]]] = {
    "effusion": {1: ("small", "trace", "tiny"), 2: ("moderate",), 3: ("large",)},
    "pneumothorax": {1: ("small", "tiny"), 2: ("moderate",), 3: ("large",)},
    "consolidation": {1: ("patchy", "mild"), 2: ("focal", "airspace"), 3: ("dense", "extensive")},
    "atelectasis": {1: ("minimal", "mild", "trace"), 2: ("mild",), 3: ("moderate",)},
    "edema": {1: ("mild", "trace"), 2: ("moderate",), 3: ("severe", "marked")},
    "opacity": {1: ("hazy", "faint"), 2: ("patchy", "ill-defined"), 3: ("dense", "confluent")},
}


@dataclass(frozen=True)
class Report:
    """The full report (``text``), its IMPRESSION section (``impression`` = ``text[impression_start:]``),
    and the labelled / descriptive spans over ``text``."""

    text: str
    impression: str
    impression_start: int
    spans: tuple[Span, ...]


class _Grammar:
    def __init__(self, rng: np.random.Generator, cfg: SynthConfig) -> None:
        self.rng = rng
        self.cfg = cfg

    def pick(self, options: tuple[str, ...]) -> str:
        return options[int(self.rng.integers(len(options)))]

    def location(self, plan: FindingPlan, j: int) -> list[Segment]:
        level = plan.levels[int(self.rng.integers(len(plan.levels)))] if plan.levels else "lower"
        if plan.side == "bilateral":
            words = "bibasilar" if level == "lower" else self.pick(("bilateral", "bilateral perihilar"))
            return [(words, "location", None, None, j)]
        return [(self.pick(LOCATIONS[(plan.side, level)]), "location", None, None, j)]

    def severity(self, plan: FindingPlan, j: int) -> list[Segment]:
        table = GRADE_SEVERITY.get(plan.kind)
        if table is None:
            return []
        return [(self.pick(table[plan.grade]), "severity", None, None, j), (" ", None, None, None, None)]

    def finding(self, plan: FindingPlan, j: int, brief: bool) -> list[Segment]:
        """Segments naming finding ``j`` (without the final period)."""
        label = KIND_LABEL[plan.kind]
        value = -1.0 if plan.hedged else 1.0

        def noun(text: str, lab: str = label, val: float = value) -> Segment:
            return (text, "finding", lab, val, j)

        def fill(text: str) -> Segment:
            return (text, None, None, None, None)

        kind = plan.kind
        segs: list[Segment]
        if kind == "cardiomegaly":
            if plan.hedged:
                return [noun(self.pick(("heart size is borderline enlarged", "borderline cardiomegaly")))]
            adverb = {1: "mildly", 2: "moderately", 3: "markedly"}[plan.grade]
            options = (
                f"{ {1: 'mild', 2: 'moderate', 3: 'severe'}[plan.grade] } cardiomegaly",
                f"{adverb} enlarged cardiac silhouette",
                f"the heart is {adverb} enlarged",
            )
            segs = [noun(self.pick(options))]
            if not brief and self.rng.random() < 0.3:
                segs += [
                    fill(". The "),
                    noun("cardiomediastinal silhouette is enlarged", "Enlarged Cardiomediastinum"),
                ]
            return segs
        if kind == "device":
            device = plan.attrs.get("device")
            if device == "ett":
                cm = int(self.rng.integers(2, 7))
                return [noun("endotracheal tube"), fill(f" terminates {cm} cm above the carina")]
            if device == "central_line":
                return [
                    (str(plan.attrs["side"]), "location", None, None, j),  # as drawn (_draw_device)
                    fill(" internal jugular "),
                    noun("central venous catheter"),
                    fill(" tip in the SVC"),
                ]
            return [
                (str(plan.attrs["side"]), "location", None, None, j),
                fill(" chest wall "),
                noun("pacemaker"),
                fill(" with leads projecting over the heart"),
            ]
        segs = []
        if plan.hedged:
            segs += [(self.pick(HEDGE_PREFIX), "hedge", None, None, j), fill(" ")]
        if kind == "effusion":
            side = plan.side if plan.side != "bilateral" else "bilateral"
            plural = "s" if plan.side == "bilateral" else ""
            segs += self.severity(plan, j)
            segs += [(side, "location", None, None, j), fill(" ")]
            segs.append(noun(self.pick(("pleural effusion", "effusion")) + plural))
            if not brief and self.rng.random() < 0.4:
                segs.append(fill(" with blunting of the costophrenic angle" + plural))
        elif kind == "pneumothorax":
            segs += self.severity(plan, j)
            segs += [
                (plan.side, "location", None, None, j),
                fill(" "),
                (str(plan.attrs.get("where", "apical")), "location", None, None, j),
            ]
            segs += [fill(" "), noun("pneumothoraces" if plan.side == "bilateral" else "pneumothorax")]
            if not brief and self.rng.random() < 0.5:
                segs.append(fill(" with a visible pleural line"))
        elif kind == "atelectasis":
            segs += self.severity(plan, j)
            if plan.side == "bilateral":
                segs += [*self.location(plan, j), fill(" ")]
                subtype = self.pick(("", "linear ", "subsegmental ", "plate-like "))
                segs.append(noun(subtype + "atelectasis"))
            else:
                subtype = self.pick(("", "linear ", "subsegmental ", "plate-like ", "bandlike ", "discoid "))
                segs.append(noun(subtype + "atelectasis"))
                segs += [fill(self.pick((" in the ", " at the "))), *self.location(plan, j)]
            if not brief and "lower" in plan.levels and self.rng.random() < 0.3:
                segs.append(fill(" with mild volume loss"))
        elif kind == "edema":
            segs += self.severity(plan, j)
            segs.append(noun(self.pick(("pulmonary edema", "interstitial edema", "edema"))))
            if not brief and self.rng.random() < 0.5:
                segs.append(
                    fill(
                        self.pick(
                            (" with perihilar haziness", " with Kerley B lines", " and vascular congestion")
                        )
                    )
                )
        elif kind == "consolidation":
            segs += self.severity(plan, j)
            name = self.pick(("consolidation", "airspace consolidation"))
            if any(seg[1] == "severity" and seg[0] == "airspace" for seg in segs):  # said already
                name = "consolidation"
            segs.append(noun(name))
            if not brief and self.rng.random() < 0.4:
                segs.append(fill(" with air bronchograms"))
            segs += [fill(self.pick((" in the ", " at the "))), *self.location(plan, j)]
        elif kind == "opacity":
            segs += self.severity(plan, j)
            segs.append(noun(self.pick(("opacity", "airspace opacity", "opacification"))))
            segs += [fill(" in the "), *self.location(plan, j)]
            pneumonia = plan.attrs.get("pneumonia")
            if pneumonia == "yes":
                segs += [
                    fill(self.pick((", concerning for ", ", consistent with "))),
                    noun("pneumonia", "Pneumonia", value),
                ]
            elif pneumonia == "possible":
                segs += [fill(", "), ("which may represent", "hedge", None, None, j), fill(" ")]
                segs.append(noun("pneumonia", "Pneumonia", -1.0))
        elif kind == "nodule":
            segs += [
                fill(f"{int(float(plan.attrs.get('mm', 10)))} mm "),
                noun(self.pick(("nodule", "pulmonary nodule"))),
            ]
            segs += [fill(" in the "), *self.location(plan, j)]
        else:  # pragma: no cover - plan kinds are closed
            raise ValueError(f"report grammar: unknown finding kind {kind!r}")
        return segs

    def negation(self, labels: list[str]) -> list[Segment]:
        """One sentence negating ``labels`` ("No pleural effusion or pneumothorax")."""
        nouns = [(self.pick(NEGATABLE[label]), "finding", label, 0.0, None) for label in labels]
        segs: list[Segment] = [
            (self.pick(("no", "there is no", "no evidence of")), "negation", None, None, None),
            (" ", None, None, None, None),
        ]
        for k, noun_seg in enumerate(nouns):
            if k > 0:
                joint = " or " if k == len(nouns) - 1 else ", "
                segs.append((joint, None, None, None, None))
            segs.append(noun_seg)
        return segs


def _typo(word: str, rng: np.random.Generator) -> str:
    k = int(rng.integers(1, len(word) - 2))
    return word[:k] + word[k + 1] + word[k] + word[k + 2 :]


def _noisy(segs: list[Segment], rng: np.random.Generator, rate: float) -> list[Segment]:
    """Transposition typos in filler words of >= 5 letters (never inside a recorded span)."""
    if rate <= 0:
        return segs
    out: list[Segment] = []
    for seg in segs:
        if seg[1] is not None:
            out.append(seg)
            continue
        words = seg[0].split(" ")
        words = [_typo(w, rng) if len(w) >= 5 and w.isalpha() and rng.random() < rate else w for w in words]
        out.append((" ".join(words), None, None, None, None))
    return out


def _capitalise(segs: list[Segment]) -> list[Segment]:
    first = segs[0]
    return [(first[0][:1].upper() + first[0][1:], *first[1:]), *segs[1:]]


def write_report(plans: list[FindingPlan], rng: np.random.Generator, cfg: SynthConfig) -> Report:
    """The report of an image with findings ``plans`` (index j of a span's ``finding`` = ``plans[j]``)."""
    g = _Grammar(rng, cfg)
    present = {KIND_LABEL[p.kind] for p in plans}
    if any(p.kind == "opacity" and p.attrs.get("pneumonia") in ("yes", "possible") for p in plans):
        present.add("Pneumonia")
    if any(p.kind == "cardiomegaly" for p in plans):
        present.add("Enlarged Cardiomediastinum")
    sentences: list[list[Segment]] = []
    for j, plan in enumerate(plans):
        sentences.append(g.finding(plan, j, brief=False))
    # normal statements and negations of absent observations
    if "Cardiomegaly" not in present and rng.random() < cfg.negation_rate:
        text = g.pick(
            ("heart size is normal", "the cardiac silhouette is within normal limits", "normal heart size")
        )
        sentences.append([(text, "finding", "Cardiomegaly", 0.0, None)])
    if "Enlarged Cardiomediastinum" not in present and rng.random() < 0.5 * cfg.negation_rate:
        text = g.pick(("mediastinal contours are normal", "normal cardiomediastinal silhouette"))
        sentences.append([(text, "finding", "Enlarged Cardiomediastinum", 0.0, None)])
    lung_kinds = {"effusion", "consolidation", "atelectasis", "edema", "pneumothorax", "opacity", "nodule"}
    if not any(p.kind in lung_kinds for p in plans) and rng.random() < 0.5:
        sentences.append(
            [(g.pick(("the lungs are clear", "lungs are well expanded and clear")), None, None, None, None)]
        )
    absent = [label for label in NEGATABLE if label not in present]
    hedged_absent: list[str] = []
    if rng.random() < cfg.hedge_absent_rate:
        options = [label for label in HEDGEABLE_ABSENT if label in absent]
        if options:
            label = options[int(rng.integers(len(options)))]
            hedged_absent.append(label)
            phrase = g.pick(HEDGEABLE_ABSENT[label])
            sentences.append(
                [
                    (g.pick(("cannot exclude", "possible")), "hedge", None, None, None),
                    (" ", None, None, None, None),
                    (phrase, "finding", label, -1.0, None),
                ]
            )
    weights = {"Pleural Effusion": 1.0, "Pneumothorax": 1.0, "Consolidation": 0.8, "Edema": 0.5}
    negated = [
        label
        for label in absent
        if label not in hedged_absent and rng.random() < cfg.negation_rate * weights.get(label, 0.25)
    ]
    order = rng.permutation(len(negated))
    negated = [negated[k] for k in order]
    while negated:
        take = min(len(negated), int(rng.integers(1, 4)))
        sentences.append(g.negation(negated[:take]))
        negated = negated[take:]
    findings_sents = [sentences[k] for k in rng.permutation(len(sentences))]
    impression_sents: list[list[Segment]] = []
    for j, plan in enumerate(plans):
        impression_sents.append(g.finding(plan, j, brief=True))
    if impression_sents:
        impression_sents = [impression_sents[k] for k in rng.permutation(len(impression_sents))]
    else:
        text = g.pick(
            (
                "no acute cardiopulmonary process",
                "no acute cardiopulmonary abnormality",
                "normal chest radiograph",
            )
        )
        impression_sents = [[(text, None, None, None, None)]]
    deid = rng.random() < cfg.deid_rate
    return _assemble(findings_sents, impression_sents, rng, cfg, deid)


def _assemble(
    findings: list[list[Segment]],
    impression: list[list[Segment]],
    rng: np.random.Generator,
    cfg: SynthConfig,
    deid: bool,
) -> Report:
    pieces: list[str] = []
    spans: list[Span] = []
    cursor = 0

    def emit(segs: list[Segment], section: str) -> None:
        nonlocal cursor
        for text, role, label, value, finding in segs:
            if role is not None:
                spans.append(Span(cursor, cursor + len(text), role, section, label, value, finding))
            pieces.append(text)
            cursor += len(text)

    def plain(text: str) -> None:
        emit([(text, None, None, None, None)], "header")

    if deid:
        plain(
            g_pick(
                rng, ("INDICATION: XXXX-year-old with cough.\n", "COMPARISON: XXXX.\n", "INDICATION: XXXX.\n")
            )
        )
    plain("FINDINGS: ")
    for k, sent in enumerate(findings):
        emit([*_capitalise(_noisy(sent, rng, cfg.typo_rate)), (".", None, None, None, None)], "findings")
        if k < len(findings) - 1:
            plain(" ")
    plain("\n\nIMPRESSION: ")
    impression_start = cursor
    numbered = len(impression) > 1 and rng.random() < 0.4
    for k, sent in enumerate(impression):
        if numbered:
            emit([(f"{k + 1}. ", None, None, None, None)], "impression")
        emit([*_capitalise(_noisy(sent, rng, cfg.typo_rate)), (".", None, None, None, None)], "impression")
        if k < len(impression) - 1:
            emit([(" ", None, None, None, None)], "impression")
    if deid and rng.random() < 0.5:
        emit([(" Dr. XXXX was notified of the findings by telephone.", None, None, None, None)], "impression")
    text = "".join(pieces)
    return Report(text, text[impression_start:], impression_start, tuple(spans))


def g_pick(rng: np.random.Generator, options: tuple[str, ...]) -> str:
    return options[int(rng.integers(len(options)))]
