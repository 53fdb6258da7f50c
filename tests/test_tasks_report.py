"""Report writer: JSON (NaN -> null) and Markdown with PNG figures that exist and are non-trivial."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib
import numpy as np

from gloria.tasks import report as Rp
from gloria.tasks import zero_shot as Z
from gloria.viz import maps as V
from gloria.viz import plots


def test_zero_shot_retrieval_grounding_report(tmp_path: Path) -> None:
    backend = matplotlib.get_backend()
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 20)
    scores = rng.normal(size=(60, 3)) + 1.5 * np.eye(3)[labels]
    ev = Z.evaluate_scores(scores, labels, ["Atelectasis", "Cardiomegaly", "Edema"], n_boot=100)
    rep = Rp.Report("Evaluation", tmp_path / "out")
    Rp.add_zero_shot(rep, ev, scores, labels)
    Rp.add_retrieval(
        rep,
        [
            {"direction": "image_to_text", "similarity": "global", "precision_at_k": {"1": 0.5, "5": 0.4}},
            {"direction": "text_to_image", "similarity": "global", "precision_at_k": {"1": 0.6, "5": 0.45}},
        ],
        chance=1 / 3,
    )
    Rp.add_grounding(
        rep, {"random": {"pointing": 0.1, "cnr": float("nan")}, "cosine": {"pointing": 0.4, "cnr": 0.7}}
    )
    json_path, md_path = rep.write()
    data = json.loads(json_path.read_text())
    assert data["zero_shot"]["confusion_matrix"] == ev["confusion_matrix"]
    assert data["grounding"]["random"]["cnr"] is None
    md = md_path.read_text()
    assert "| random | 0.100 | n/a |" in md
    assert "figures/zero_shot_roc.png" in md and "figures/retrieval_precision_at_k.png" in md
    for png in ["zero_shot_roc", "zero_shot_confusion", "retrieval_precision_at_k"]:
        path = tmp_path / "out" / "figures" / f"{png}.png"
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000
    assert matplotlib.get_backend() == backend  # no global backend switch


def test_attention_overlay_png(tmp_path: Path) -> None:
    img = np.zeros((90, 60), np.uint8)
    img[20:40, 10:30] = 200
    heat = np.full((90, 60), np.nan, np.float32)
    heat[10:80] = 0.0
    heat[25:35, 15:25] = 1.0
    fig = plots.attention_overlays(img, [V.normalise_for_display(heat)], ["spot"], boxes=[(10, 20, 20, 20)])
    out = plots.save(fig, tmp_path / "overlay.png")
    assert out.stat().st_size > 3000
    np.testing.assert_array_equal(np.isnan(V.normalise_for_display(heat)), np.isnan(heat))
