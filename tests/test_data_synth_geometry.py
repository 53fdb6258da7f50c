"""SynthCXR ground truth geometry: masks inside their named lung zone, exact boxes, small findings placed
anywhere in the zone, visible where the mask says, cardiothoracic ratio graded."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from gloria.data.rle import rle_decode
from gloria.data.synth import SynthConfig, make_case
from gloria.data.synth.anatomy import LEVELS
from gloria.data.synth.findings import mask_box, plan_zone
from support.synth import small_config, synth_set  # noqa: F401  (session fixture)

LUNG_KINDS = {"effusion", "consolidation", "atelectasis", "edema", "pneumothorax", "opacity", "nodule"}
FOCAL_KINDS = {"consolidation", "opacity", "nodule", "atelectasis"}


def test_masks_lie_in_their_named_zone_and_boxes_are_exact() -> None:
    cfg = small_config(size=128)
    kinds = set()
    fractions = []
    for index in range(60):
        case = make_case(21, index, cfg)
        for finding in case.findings:
            assert finding.mask.any(), finding.plan
            assert finding.box == mask_box(finding.mask)
            x, y, w, h = finding.box
            assert finding.mask[y : y + h, x : x + w].sum() == finding.mask.sum()
            if finding.kind not in LUNG_KINDS:
                continue
            kinds.add(finding.kind)
            zone = plan_zone(case.frame, finding.plan)
            assert not (finding.mask & ~zone).any(), (finding.kind, finding.plan.side, finding.plan.levels)
            assert set(finding.plan.levels) <= set(LEVELS)
            if finding.kind in FOCAL_KINDS and finding.plan.side != "bilateral":
                fractions.append(finding.mask.sum() / zone.sum())
    assert kinds == LUNG_KINDS
    assert max(fractions) < 0.6 and float(np.mean(fractions)) < 0.2  # small relative to the zone


def test_focal_findings_are_placed_anywhere_in_the_zone() -> None:
    cfg = SynthConfig(
        size=128, prevalence={k: 0.0 for k in ("cardiomegaly", "effusion", "device")} | {"opacity": 1.0}
    )
    positions = []
    for index in range(60):
        case = make_case(5, index, cfg)
        finding = next(f for f in case.findings if f.kind == "opacity")
        zone = plan_zone(case.frame, finding.plan)
        rows, cols = np.nonzero(zone)
        mrows, mcols = np.nonzero(finding.mask)
        positions.append(
            (
                (mrows.mean() - rows.min()) / max(1, np.ptp(rows)),
                (mcols.mean() - cols.min()) / max(1, np.ptp(cols)),
            )
        )
    pos = np.asarray(positions)
    assert np.ptp(pos[:, 0]) > 0.5 and np.ptp(pos[:, 1]) > 0.5
    assert 0.3 < pos[:, 1].mean() < 0.7


def test_findings_change_pixels_inside_their_mask() -> None:
    none = {
        k: 0.0
        for k in (
            "cardiomegaly",
            "effusion",
            "consolidation",
            "atelectasis",
            "edema",
            "pneumothorax",
            "opacity",
            "nodule",
            "device",
        )
    }
    for kind, sign in (
        ("consolidation", 1),
        ("opacity", 1),
        ("effusion", 1),
        ("nodule", 1),
        ("pneumothorax", -1),
    ):
        for index in range(3):
            base = make_case(8, index, SynthConfig(size=128, prevalence=none, uncertain_rate=0.0))
            case = make_case(
                8, index, SynthConfig(size=128, prevalence=none | {kind: 1.0}, uncertain_rate=0.0)
            )
            finding = next(f for f in case.findings if f.kind == kind)
            diff = case.image.astype(np.int16) - base.image.astype(np.int16)
            inside = diff[finding.mask].mean() * sign
            grown = np.zeros_like(finding.mask)
            x, y, w, h = finding.box
            grown[max(0, y - 4) : y + h + 4, max(0, x - 4) : x + w + 4] = True
            assert inside > 4.0, (kind, index, inside)
            assert np.abs(diff[~grown]).max() <= 1, (kind, index)


def test_cardiothoracic_ratio_is_graded() -> None:
    none = {
        k: 0.0
        for k in (
            "effusion",
            "consolidation",
            "atelectasis",
            "edema",
            "pneumothorax",
            "opacity",
            "nodule",
            "device",
        )
    }
    enlarged = SynthConfig(size=256, prevalence=none | {"cardiomegaly": 1.0}, uncertain_rate=0.0)
    normal = SynthConfig(size=256, prevalence=none | {"cardiomegaly": 0.0})
    ratios: dict[int, list[float]] = {1: [], 2: [], 3: []}
    normals: list[float] = []
    for index in range(30):
        case = make_case(4, index, enlarged)
        ratios[case.findings[0].plan.grade].append(case.ctr)
        normals.append(make_case(4, index, normal).ctr)
        assert case.ctr > 0.48 and normals[-1] < 0.52
    means = [float(np.mean(v)) for v in ratios.values() if v]
    assert means == sorted(means) and len(means) == 3
    assert float(np.mean(normals)) + 0.05 < means[0]


def test_ground_truth_masks_decode_to_the_generated_masks(synth_set: Path) -> None:  # noqa: F811
    records = [json.loads(x) for x in (synth_set / "synthcxr_ground_truth.jsonl").read_text().splitlines()]
    cfg = small_config()
    for record in records[:15]:
        case = make_case(7, record["index"], cfg)
        assert len(case.findings) == len(record["findings"])
        for finding, stored in zip(case.findings, record["findings"]):
            np.testing.assert_array_equal(
                rle_decode(stored["mask_rle"], 128, 128), finding.mask.astype(np.uint8)
            )
            assert stored["box"] == list(finding.box) and stored["kind"] == finding.kind
            for k in stored["spans"]:
                assert record["spans"][k]["finding"] == record["findings"].index(stored)
