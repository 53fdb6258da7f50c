"""Binary / multi-label zero-shot: metrics and scores against plain loops written from their definitions."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from gloria.tasks import label_metrics as LM
from gloria.tasks import zero_shot as Z
from gloria.tasks import zero_shot_labels as L
from support.dataset_fixtures import write_jpeg
from support.eval_cli import run_command, write_model_dir


def loop_auroc(t, s) -> float:
    pos = [v for v, y in zip(s, t) if y]
    neg = [v for v, y in zip(s, t) if not y]
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def loop_average_precision(t, s) -> float:
    """sum over distinct thresholds, highest first, of (recall gain) x precision at that threshold."""
    n_pos = sum(t)
    total, last_recall = 0.0, 0.0
    for thr in sorted(set(s), reverse=True):
        predicted = [y for v, y in zip(s, t) if v >= thr]
        tp = sum(predicted)
        recall = tp / n_pos
        total += (recall - last_recall) * tp / len(predicted)
        last_recall = recall
    return total


def loop_counts(t, s, thr):
    tp = sum(1 for v, y in zip(s, t) if v >= thr and y)
    fp = sum(1 for v, y in zip(s, t) if v >= thr and not y)
    fn = sum(1 for v, y in zip(s, t) if v < thr and y)
    return tp, fp, fn, len(t) - tp - fp - fn


def loop_f1(t, s, thr) -> float:
    tp, fp, fn, _ = loop_counts(t, s, thr)
    return 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0


def loop_mcc(t, s, thr) -> float:
    tp, fp, fn, tn = loop_counts(t, s, thr)
    d = math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    return (tp * tn - fp * fn) / d if d else 0.0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_binary_metrics_equal_plain_loops(seed: int) -> None:
    rng = np.random.default_rng(seed)
    t = (rng.random(40) < 0.35).astype(int)
    s = np.round(rng.normal(size=40) + t, 1)  # rounded: ties
    t[:2] = [0, 1]
    assert LM.average_precision(t, s) == pytest.approx(loop_average_precision(list(t), list(s)))
    for thr in (s.min(), np.median(s), s.max() + 1):
        assert LM.f1_at(t, s, thr) == pytest.approx(loop_f1(list(t), list(s), thr))
        assert LM.mcc_at(t, s, thr) == pytest.approx(loop_mcc(list(t), list(s), thr))
    for rule, fn in (("f1", loop_f1), ("mcc", loop_mcc)):
        best = max(fn(list(t), list(s), v) for v in set(s))
        chosen = LM.choose_threshold(t, s, rule)
        assert fn(list(t), list(s), chosen) == pytest.approx(best)
        assert chosen == max(v for v in set(s) if fn(list(t), list(s), v) == pytest.approx(best))
    sk = pytest.importorskip("sklearn.metrics")
    assert LM.average_precision(t, s) == pytest.approx(sk.average_precision_score(t, s))
    thr = float(np.median(s))
    assert LM.mcc_at(t, s, thr) == pytest.approx(sk.matthews_corrcoef(t, s >= thr))
    assert LM.f1_at(t, s, thr) == pytest.approx(sk.f1_score(t, s >= thr))


def test_evaluate_labels_point_values_and_ignored_rows() -> None:
    rng = np.random.default_rng(3)
    n, names = 60, ["a", "b"]
    y = (rng.random((n, 2)) < 0.4).astype(float)
    s = y + rng.normal(size=(n, 2))
    y[[5, 9, 40], 1] = np.nan  # uncertain, ignored for class b only
    valid = np.zeros(n, dtype=bool)
    valid[:20] = True
    out = LM.evaluate_labels(s, y, names, valid=valid, rule="f1", n_boot=20, seed=0)
    assert out["n_valid"] == 20 and out["n_test"] == 40
    per_class = []
    for c, name in enumerate(names):
        keep_v = valid & ~np.isnan(y[:, c])
        tv, sv = list(y[keep_v, c].astype(int)), list(s[keep_v, c])
        thr = max(set(sv), key=lambda v: (loop_f1(tv, sv, v), v))
        entry = out["classes"][name]
        assert entry["threshold"] == pytest.approx(thr)
        keep = ~valid & ~np.isnan(y[:, c])
        tt, st = list(y[keep, c].astype(int)), list(s[keep, c])
        assert entry["n"] == len(tt)
        expected = {
            "auroc": loop_auroc(tt, st),
            "auprc": loop_average_precision(tt, st),
            "f1": loop_f1(tt, st, thr),
            "mcc": loop_mcc(tt, st, thr),
        }
        for metric, value in expected.items():
            assert entry[metric]["value"] == pytest.approx(value)
            assert entry[metric]["low"] <= entry[metric]["high"]
        per_class.append(expected)
    for metric in LM.METRICS:
        assert out["macro"][metric]["value"] == pytest.approx(np.mean([e[metric] for e in per_class]))
    y_b_negative = y.copy()
    y_b_negative[valid, 1] = 0.0
    partial = LM.evaluate_labels(s, y_b_negative, names, valid=valid, rule="f1", n_boot=5)
    assert list(partial["classes"]) == ["a"] and "no threshold" in partial["skipped"]["b"]
    assert partial["macro"]["auroc"]["value"] == pytest.approx(out["classes"]["a"]["auroc"]["value"])
    with pytest.raises(ValueError, match="no class has positives and negatives among the 20 validation rows"):
        LM.evaluate_labels(s, np.zeros_like(y), names, valid=valid)


def test_read_label_csv_policies_splits_and_errors(tmp_path: Path) -> None:
    rows = pd.DataFrame(
        {
            "path": [f"img{i}.jpg" for i in range(5)],
            "A": [1, 0, -1, None, 1],
            "B": [0, -1, 1, 1, None],
            "split": ["valid", "test", "test", "valid", "train"],
        }
    )
    rows.to_csv(tmp_path / "set.csv", index=False)
    for i in range(5):
        write_jpeg(tmp_path / f"img{i}.jpg", seed=i)
    got = L.read_label_csv(tmp_path / "set.csv", ["A", "B"], uncertain="ignore")
    assert [p.name for p in got.paths] == [
        "img0.jpg",
        "img1.jpg",
        "img2.jpg",
        "img3.jpg",
    ]  # train row left out
    np.testing.assert_array_equal(got.labels, [[1, 0], [0, np.nan], [np.nan, 1], [0, 1]])
    assert got.valid.tolist() == [True, False, False, True]
    ones = L.read_label_csv(tmp_path / "set.csv", ["A", "B"], uncertain="ones")
    np.testing.assert_array_equal(ones.labels, [[1, 0], [0, 1], [1, 1], [0, 1]])
    assert L.read_label_csv(tmp_path / "set.csv", ["A"], uncertain="zeros").labels[:, 0].tolist() == [
        1,
        0,
        0,
        0,
    ]
    rows.loc[3, "B"] = 2
    rows.to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(ValueError, match=r"bad.csv: row 5 column 'B': value 2.0 is not 1, 0, -1 or blank"):
        L.read_label_csv(tmp_path / "bad.csv", ["A", "B"])
    with pytest.raises(ValueError, match=r"missing column\(s\) \['C'\]"):
        L.read_label_csv(tmp_path / "set.csv", ["A", "C"])
    rows.drop(columns="split").assign(B=0).to_csv(tmp_path / "nosplit.csv", index=False)
    drawn = L.read_label_csv(tmp_path / "nosplit.csv", ["A", "B"], valid_fraction=0.4, seed=1)
    assert drawn.valid.sum() == 2 and len(drawn.paths) == 5


PROMPTS = {"Edema": ["pulmonary edema", "mild edema"], "Pneumothorax": ["small left pneumothorax"]}
NEGATIVES = {"Edema": ["no edema"], "Pneumothorax": ["no pneumothorax", "lungs are clear"]}


def test_scores_equal_a_plain_loop_and_ignore_other_classes(tiny_model) -> None:
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        feats = tiny_model.encode_images(torch.randn(5, 3, 64, 64, generator=g))
    cfg = tiny_model.config.alignment
    prompts = Z.encode_class_prompts(tiny_model, PROMPTS, NEGATIVES)
    pairs = L.label_scores(feats, prompts, cfg, "pairs")
    positive = L.label_scores(feats, prompts, cfg, "positive")
    text = prompts.encoded.features
    from gloria.alignment.similarity import default_local_similarity

    for i in range(5):
        for c in range(len(prompts.class_names)):
            logits = {True: [], False: []}
            for p in range(len(prompts.texts)):
                if int(prompts.owner[p]) != c:
                    continue
                a, b = feats.embedding[i], text.embedding[p]
                cosine = float(a @ b / (a.norm() * b.norm()))
                local = float(
                    default_local_similarity(
                        feats.regions[i : i + 1], text.words[p : p + 1], text.word_mask[p : p + 1], cfg
                    )[0, 0]
                )
                logits[bool(prompts.negative[p])].append((cfg.logit_temperature * cosine + local) / 2)
            expected = 1 / (1 + math.exp(-(max(logits[False]) - max(logits[True]))))
            assert float(pairs[i, c]) == pytest.approx(expected, rel=1e-4, abs=1e-5)
            assert float(positive[i, c]) == pytest.approx(max(logits[False]), rel=1e-4, abs=1e-4)
    # a class scored alone gets the same scores: no class depends on another's prompts
    alone = Z.encode_class_prompts(tiny_model, {"Edema": PROMPTS["Edema"]}, {"Edema": NEGATIVES["Edema"]})
    torch.testing.assert_close(
        L.label_scores(feats, alone, cfg, "pairs")[:, 0], pairs[:, 0], rtol=1e-4, atol=1e-5
    )
    with pytest.raises(ValueError, match="needs negative prompts for class"):
        L.prompts_for(["Edema"], PROMPTS, None, "pairs")


def test_zero_shot_labels_command(tmp_path: Path, tiny_model) -> None:
    rng = np.random.default_rng(0)
    n = 30
    labels = rng.integers(0, 2, size=(n, 2))
    labels[:4] = [[0, 0], [1, 1], [0, 1], [1, 0]]
    for i in range(n):
        write_jpeg(tmp_path / "img" / f"{i}.jpg", seed=i, height=64, width=64)
    pd.DataFrame(
        {
            "path": [f"img/{i}.jpg" for i in range(n)],
            "Edema": labels[:, 0],
            "Pneumothorax": labels[:, 1],
            "split": ["valid" if i < 12 else "test" for i in range(n)],
        }
    ).to_csv(tmp_path / "set.csv", index=False)
    (tmp_path / "prompts.json").write_text(json.dumps({"positive": PROMPTS, "negative": NEGATIVES}))
    model = write_model_dir(tiny_model, tmp_path / "model")
    out = tmp_path / "out"
    argv = ["zero-shot-labels", "--model", str(model), "--data", str(tmp_path / "set.csv")]
    argv += ["--prompts", str(tmp_path / "prompts.json"), "--out", str(out), "--n-boot", "20"]
    argv += ["--cache", str(tmp_path / "cache")]
    assert run_command("zero_shot_labels", argv) == 0
    res = json.loads((out / "results.json").read_text())
    scores = pd.read_csv(out / "scores.csv")
    test = ~scores["valid"].to_numpy()
    assert res["n_test"] == 18 and int(test.sum()) == 18
    for c, name in enumerate(["Edema", "Pneumothorax"]):
        t, s = list(labels[test, c]), list(scores[name][test])
        assert res["classes"][name]["auroc"]["value"] == pytest.approx(loop_auroc(t, s))
    assert res["scoring"] == "pairs" and res["uncertain"] == "ignore"
    data = L.read_label_csv(tmp_path / "set.csv", ["Edema", "Pneumothorax"])
    chunked = L.run_label_zero_shot(tiny_model, data, PROMPTS, NEGATIVES, n_boot=5, images_per_chunk=7)
    np.testing.assert_allclose(
        chunked.scores, scores[["Edema", "Pneumothorax"]].to_numpy(), rtol=1e-5, atol=1e-6
    )
    assert "| macro |" in (out / "report.md").read_text()
