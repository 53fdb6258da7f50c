"""Phrase grounding on boxes and masks: CNR, IoU / Dice at thresholds against plain loops, the MS-CXR format
reader, SynthCXR's benchmark tables and ``gloria ground`` end to end on a tiny model."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from gloria.data.phrase_boxes import MS_CXR_COLUMNS, boxes_in_range, read_phrase_boxes
from gloria.data.synth import generate
from gloria.data.synth_benchmarks import FILES, MANIFEST, write_synth_benchmarks
from gloria.tasks.grounding_metrics import phrase_cases, score_thresholds, split_cases
from support.eval_cli import run_command, write_model_dir
from support.synth import small_config


def loop_cnr(m, g) -> float:
    inside = [m[r][c] for r in range(len(m)) for c in range(len(m[0])) if g[r][c] and math.isfinite(m[r][c])]
    outside = [
        m[r][c] for r in range(len(m)) for c in range(len(m[0])) if not g[r][c] and math.isfinite(m[r][c])
    ]
    mi, mo = sum(inside) / len(inside), sum(outside) / len(outside)
    vi = sum((v - mi) ** 2 for v in inside) / len(inside)
    vo = sum((v - mo) ** 2 for v in outside) / len(outside)
    return abs(mi - mo) / math.sqrt(vi + vo)


def loop_iou_dice(m, g, t) -> tuple[float, float]:
    finite = [v for row in m for v in row if math.isfinite(v)]
    lo, hi = min(finite), max(finite)
    cut = lo + t * (hi - lo)
    inter = union = pred = true = 0
    for r in range(len(m)):
        for c in range(len(m[0])):
            p = math.isfinite(m[r][c]) and m[r][c] >= cut
            inter += p and g[r][c]
            union += p or g[r][c]
            pred += p
            true += g[r][c]
    return inter / union, 2 * inter / (pred + true)


@pytest.mark.parametrize("seed", [0, 1])
def test_cnr_iou_dice_equal_plain_loops(seed: int) -> None:
    rng = np.random.default_rng(seed)
    heat = rng.random((12, 15))
    heat[0, :3] = np.nan  # outside the crop
    mask = np.zeros((12, 15), dtype=bool)
    mask[3:8, 4:11] = True
    heat[mask] += 0.7
    got = score_thresholds(heat, mask, 0, (0.1, 0.3, 0.5))
    m, g = heat.tolist(), mask.tolist()
    assert got["cnr"] == pytest.approx(loop_cnr(m, g))
    pairs = [loop_iou_dice(m, g, t) for t in (0.1, 0.3, 0.5)]
    for t, (iou, dice) in zip((0.1, 0.3, 0.5), pairs):
        assert got[f"iou@{t:g}"] == pytest.approx(iou) and got[f"dice@{t:g}"] == pytest.approx(dice)
    assert got["miou"] == pytest.approx(np.mean([p[0] for p in pairs]))
    assert got["mdice"] == pytest.approx(np.mean([p[1] for p in pairs]))
    r, c = np.unravel_index(np.nanargmax(heat), heat.shape)
    assert got["pointing"] == float(mask[r, c])


def _ms_cxr_rows() -> list[dict[str, object]]:
    base = {"category": "Pneumonia", "image_width": 40, "image_height": 30}
    return [
        {
            **base,
            "dicom_id": "d1",
            "label_text": "Left basal opacity",
            "x": 2,
            "y": 3,
            "w": 10,
            "h": 8,
            "path": "a.jpg",
        },
        {
            **base,
            "dicom_id": "d1",
            "label_text": "Left basal opacity",
            "x": 20,
            "y": 10,
            "w": 5,
            "h": 5,
            "path": "a.jpg",
        },
        {
            **base,
            "dicom_id": "d2",
            "label_text": "right upper consolidation",
            "x": 0,
            "y": 0,
            "w": 40,
            "h": 30,
            "path": "b.jpg",
        },
    ]


def test_ms_cxr_reader_unions_boxes_and_names_bad_rows(tmp_path: Path) -> None:
    rows = _ms_cxr_rows()
    pd.DataFrame(rows)[[*MS_CXR_COLUMNS, "path"]].to_csv(tmp_path / "ms.csv", index=False)
    frame = read_phrase_boxes(tmp_path / "ms.csv")
    assert boxes_in_range(frame)
    cases = phrase_cases(frame, tmp_path)
    assert [c.text for c in cases] == ["Left basal opacity", "right upper consolidation"]
    expected = np.zeros((30, 40), dtype=bool)
    for r in rows[:2]:
        for y in range(30):
            for x in range(40):
                expected[y, x] |= (
                    r["x"] <= x + 0.5 <= r["x"] + r["w"] and r["y"] <= y + 0.5 <= r["y"] + r["h"]
                )
    np.testing.assert_array_equal(cases[0].mask, expected)
    assert (
        cases[0].location_words == ["left", "basal", "opacity"] and cases[0].image_path == tmp_path / "a.jpg"
    )
    assert cases[1].mask.all()
    rows[2]["w"] = 41
    pd.DataFrame(rows).to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(
        ValueError, match=r"bad.csv: row 4: box \(x=0, y=0, w=41, h=30\) is not inside the 40 x 30"
    ):
        read_phrase_boxes(tmp_path / "bad.csv")
    pd.DataFrame(rows).drop(columns="label_text").to_csv(tmp_path / "cols.csv", index=False)
    with pytest.raises(ValueError, match=r"missing column\(s\) \['label_text'\]"):
        read_phrase_boxes(tmp_path / "cols.csv")
    split = pd.DataFrame(_ms_cxr_rows()).assign(split=["train", "train", "test"])
    test, fit = split_cases(split, tmp_path)
    assert [c.text for c in test] == ["right upper consolidation"] and fit is not None and len(fit) == 1


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth_bench")
    generate(out, 40, seed=3, config=small_config(size=64), progress=False)
    write_synth_benchmarks(out, seed=0)
    return out


def test_synth_benchmark_tables(synth_root: Path) -> None:
    manifest = json.loads((synth_root / MANIFEST).read_text())
    records = [json.loads(x) for x in (synth_root / "synthcxr_ground_truth.jsonl").read_text().splitlines()]
    held = {r["patient"] for r in records if r["split"] != "train"}
    multi = pd.read_csv(synth_root / FILES["multilabel"])
    assert len(multi) == len(records) == manifest["tables"]["multilabel"]["rows"]
    assert set(multi.loc[multi["split"] != "train", "path"].str.split("/").str[2]) == held
    by_path = {r["chexpert_path"]: r for r in records}
    for row in multi.itertuples(index=False):
        want = by_path[row.path]["labels"]["Edema"]
        assert (math.isnan(row.Edema) and want is None) or row.Edema == want
    for name in ("phrase_boxes", "rsna_boxes"):
        frame = read_phrase_boxes(synth_root / FILES[name])
        assert boxes_in_range(frame) and len(frame) > 0
    phrases = read_phrase_boxes(synth_root / FILES["phrase_boxes"])
    from gloria.tasks.grounding import synth_grounding_cases

    first = synth_grounding_cases(synth_root)[0]  # the first box is its finding mask's bounding box
    ys, xs = np.nonzero(first.mask)
    row = phrases.iloc[0]
    assert (row["x"], row["y"], row["w"], row["h"]) == (xs.min(), ys.min(), np.ptp(xs) + 1, np.ptp(ys) + 1)
    assert row["label_text"] == first.text and row["category"] == first.label
    rsna = pd.read_csv(synth_root / FILES["rsna_binary"])
    assert rsna["Pneumonia"].sum() == sum(bool(r["rsna_boxes"]) for r in records)
    masks = read_phrase_boxes(synth_root / FILES["siim_masks"])
    assert masks["mask_rle"].notna().all() and len(masks) == sum(
        1 for r in records for x in r["siim_rles"] if x.strip() != "-1"
    )


def test_ground_command_on_boxes_and_masks(synth_root: Path, tmp_path: Path, tiny_model) -> None:
    model = write_model_dir(tiny_model, tmp_path / "model")
    for name in ("phrase_boxes", "siim_masks"):
        out = tmp_path / name
        argv = ["ground", "--model", str(model), "--data", str(synth_root / FILES[name]), "--out", str(out)]
        assert run_command("ground", [*argv, "--n-boot", "20", "--thresholds", "0.3,0.5"]) == 0
        res = json.loads((out / "results.json").read_text())
        methods = res["methods"]
        assert set(methods) == {"two_stage", "cosine", "random", "prior_class", "prior_class_side_level"}
        assert res["prior_fit"] == "train split" and res["n_cases"] == methods["random"]["n"] > 0
        for entry in methods.values():
            assert 0.0 <= entry["miou"]["value"] <= 1.0 and entry["cnr"]["value"] >= 0.0
            assert entry["miou"]["value"] == pytest.approx(
                (entry["iou@0.3"]["value"] + entry["iou@0.5"]["value"]) / 2, abs=1e-9
            ) or math.isnan(entry["miou"]["value"])
        assert "| prior_class |" in (out / "report.md").read_text()
        cats = res["per_category"]["random"]
        assert sum(c["n"] for c in cats["categories"].values()) == res["n_cases"]
        assert cats["category_mean"]["cnr"] == pytest.approx(
            np.mean([c["cnr"] for c in cats["categories"].values()])
        )
    with pytest.raises(ValueError, match="--readouts: unknown"):
        run_command(
            "ground",
            [
                "ground",
                "--model",
                str(model),
                "--data",
                str(synth_root / FILES["phrase_boxes"]),
                "--readouts",
                "nope",
            ],
        )
