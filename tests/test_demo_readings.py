"""The demo report's plain-language readings on a constructed collapsed result: the collapse, the hub, the
largest-class level and random init beating the pretrained encoder are stated from the numbers."""

from __future__ import annotations

from gloria.demo import readings as R
from gloria.demo.summary import headline_rows

CLASSES = ["Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Pleural Effusion"]
SIZES = [45, 48, 44, 45, 51]  # 233 images, the largest class 51 (0.219)


def _collapsed() -> dict:
    """233 images; 208 predicted Pleural Effusion; Cardiomegaly and Edema never right."""
    matrix = [[0] * 5 for _ in range(5)]
    for c, n in enumerate(SIZES):
        matrix[c][4] = n  # everything to effusion ...
    matrix[0][4], matrix[0][0] = 35, 10  # ... but 10 atelectasis right
    matrix[2][4], matrix[2][2] = 29, 15  # and 15 consolidation right
    assert sum(r[4] for r in matrix) == 208
    return {"n": 233, "classes": CLASSES, "confusion_matrix": matrix,
            "accuracy": {"value": (10 + 15 + 51) / 233, "low": 0.27, "high": 0.38},
            "macro_f1": {"value": 0.16, "low": 0.12, "high": 0.20},
            "mean_auroc": {"value": 0.6, "low": 0.55, "high": 0.65}}  # fmt: skip


def _healthy() -> dict:
    matrix = [[n if r == c else 0 for c in range(5)] for r, n in enumerate(SIZES)]
    matrix[1][1], matrix[1][3] = 30, 18
    return {"n": 233, "classes": CLASSES, "confusion_matrix": matrix,
            "accuracy": {"value": 0.92, "low": 0.88, "high": 0.95},
            "macro_f1": {"value": 0.90, "low": 0.86, "high": 0.94}}  # fmt: skip


def _results() -> dict:
    hub_row = {"direction": "image_to_text", "similarity": "both",
               "precision_at_k": {"1": 0.30, "5": 0.30}, "top1_class_counts": [10, 5, 15, 10, 193],
               "candidate_class_counts": SIZES}  # fmt: skip
    even = {**hub_row, "top1_class_counts": [45, 48, 44, 45, 51], "precision_at_k": {"1": 0.9, "5": 0.8}}
    seg = {"pretrained": {"test_metrics": {"test_dice": 0.928}},
           "random_init": {"test_metrics": {"test_dice": 0.949}}, "empty_prediction_dice": 0.93}  # fmt: skip
    return {
        "zero_shot": {
            "chance": 51 / 233,
            "uniform_chance": 0.2,
            "pretrained": _collapsed(),
            "random_init": _healthy(),
        },
        "retrieval": {"chance": 0.2, "classes": CLASSES, "pretrained": [hub_row], "random_init": [even]},
        "segmentation": seg,
    }


def test_collapse_and_the_classes_never_right_are_counted_from_the_confusion_matrix() -> None:
    c = R.collapse(_collapsed())
    assert (c["class"], c["count"], c["n"], c["collapsed"]) == ("Pleural Effusion", 208, 233, True)
    assert c["never_right"] == ["Cardiomegaly", "Edema"]
    assert not R.collapse(_healthy())["collapsed"]


def test_zero_shot_reading_states_the_collapse_and_both_levels() -> None:
    text = " ".join(R.zero_shot_reading(_results()["zero_shot"]))
    assert "It has collapsed: it predicts Pleural Effusion for 208 of 233 images (89%)" in text
    assert "never right on Cardiomegaly, Edema" in text
    assert "a uniform guess scores 0.200 and always answering the largest class scores 0.219" in text
    assert "macro F1 0.160 (95% interval 0.120-0.200)" in text
    assert "pretrained is below random init" in text  # the intervals do not overlap
    assert text.count("collapsed") == 1  # random init did not


def test_retrieval_reading_measures_the_hub() -> None:
    lines = R.retrieval_reading(_results()["retrieval"])
    assert (
        "For 193 of 233 image queries (83%) the top text is a Pleural Effusion report (22% of the texts)"
        in lines[0]
    )
    assert "a hub" in lines[0] and "a hub" not in lines[1]


def test_headline_reading_and_rows_on_the_collapsed_result() -> None:
    results = _results()
    text = " ".join(R.headline_reading(results))
    assert "collapsed onto Pleural Effusion: 208 of 233" in text
    assert "Pleural Effusion hub: its texts are the top hit for 193 of 233 images" in text
    assert (
        "Random init beats the pretrained encoder on zero-shot macro F1; segmentation Dice (0.949 vs 0.928)"
        in text
    )
    assert R.segmentation_reading(results["segmentation"])[0].startswith("Random init beats the pretrained")
    assert "GLoRIA pretrained do not beat that" in " ".join(R.segmentation_reading(results["segmentation"]))
    rows = {r["metric"]: r for r in headline_rows(results)}
    assert rows["zero-shot accuracy, 95% interval"]["GLoRIA pretrained"] == "0.270-0.380"
    assert rows["zero-shot macro F1"]["GLoRIA pretrained"] == 0.16
    largest = 51 / 233  # always the largest class: F1 2L/(1+L) on it, 0 on the four others
    assert abs(rows["zero-shot macro F1"]["image-blind baseline"] - 2 * largest / (1 + largest) / 5) < 1e-12


def test_probe_reading_uses_the_spread_over_seeds() -> None:
    spread = {
        "pretrained": {"0.1": (0.70, 0.05, [0.65, 0.70, 0.75]), "1": (0.80, 0.01, [0.79, 0.80, 0.81])},
        "random_init": {"0.1": (0.72, 0.04, [0.68, 0.72, 0.76]), "1": (0.60, 0.02, [0.58, 0.60, 0.62])},
    }
    probe = {
        "fractions": [0.1, 1.0],
        "pretrained": {"0.1": {"mean_auroc": 0.70}, "1": {"mean_auroc": 0.80}},
        "random_init": {"0.1": {"mean_auroc": 0.72}, "1": {"mean_auroc": 0.60}},
        "over_seeds": {
            m: {k: {"mean": a, "std": b, "values": v} for k, (a, b, v) in by.items()}
            for m, by in spread.items()
        },
    }
    lines = R.probe_reading(probe)
    assert lines[0].endswith("pretrained is within the spread of random init.")
    assert lines[1].endswith("pretrained is ahead of random init.") and "over 3 seeds" in lines[1]


def _suite(model_values: list[dict], cnr: float, prior_cnr: float, aurocs: list[dict]) -> dict:
    """A ``run_suite``-shaped result: rows (model rows then one prior row), two label sets, one grounding."""
    rows = [{"benchmark": f"b{i}", "method": "macro", "metric": "auroc", "ours": v}
            for i, v in enumerate(model_values)]  # fmt: skip
    rows.append({"benchmark": "g", "method": "prior_class", "metric": "cnr", "ours": {"value": prior_cnr}})
    evaluations = {f"labels_{i}": {"kind": "zero_shot_labels", "result": {"macro": {"auroc": a}}}
                   for i, a in enumerate(aurocs)}  # fmt: skip
    evaluations["g"] = {"kind": "grounding", "result": {"methods": {
        "two_stage": {"cnr": {"value": cnr}}, "prior_class": {"cnr": {"value": prior_cnr}}}}}  # fmt: skip
    return {"rows": rows, "evaluations": evaluations}


def test_benchmark_reading_counts_pretrained_against_random_init_and_the_levels() -> None:
    high, low, mid = ({"value": 0.8, "low": 0.7, "high": 0.9}, {"value": 0.4, "low": 0.3, "high": 0.5},
                      {"value": 0.6, "low": 0.45, "high": 0.75})  # fmt: skip
    bench = {
        "pretrained": _suite([high, high, mid], cnr=0.5, prior_cnr=1.2, aurocs=[high, mid]),
        "random_init": _suite([low, mid, mid], cnr=1.5, prior_cnr=1.2, aurocs=[low, low]),
    }
    text = " ".join(R.benchmark_reading(bench))
    # the prior row (an image-blind baseline) is not counted; high vs low above, high vs mid and mid vs mid
    # overlap
    assert "Of 3 numbers of the models themselves" in text
    assert "above its random init on 1, below on 0 and level with it on 2" in text
    assert "**GLoRIA pretrained**: binary / multi-label zero-shot macro AUROC above 0.5" in text
    assert "on 1 of 2 sets; attention's CNR below the better image-blind prior on 1 of 1" in text
    assert (
        "**random init**: binary / multi-label zero-shot macro AUROC above 0.5 (interval excluding it) on "
        "0 of 2" in text
    )
    assert "prior on 0 of 1 grounding sets" in text
    # a set the suite could not score (recorded with "skipped", no rows) is left out of every count
    bench["pretrained"]["evaluations"]["labels_9"] = {"kind": "zero_shot_labels", "skipped": "no positive"}
    assert " ".join(R.benchmark_reading(bench)) == text
