"""scripts/synth_table.py without training: mean and spread over seeds, the Markdown it writes."""

from __future__ import annotations

import json
import math
from pathlib import Path

from support.scripts import load_script


def seed_table(pointing: float, probe: float) -> dict[str, dict[str, float]]:
    models = {
        m: {"pointing": pointing * (m == "gloria"), "probe AUROC 1%": probe, "seg Dice 100%": 0.1}
        for m in ("gloria", "global_only", "local_only", "random_init")
    }
    priors = {b: {"pointing": 0.3, "pointing (1-region tol.)": 0.6} for b in ("random", "prior_class")}
    return {
        **models,
        **priors,
        "prior_class_side_level": {"pointing": 0.4, "pointing (1-region tol.)": 0.8},
        "empty_mask": {"seg Dice 100%": 0.9},
    }


def test_aggregate_gives_mean_and_sample_std_over_seeds() -> None:
    st = load_script("synth_table")
    agg = st.aggregate([seed_table(0.2, 0.6), seed_table(0.4, float("nan")), seed_table(0.6, 0.8)])
    mean, std = agg["gloria"]["pointing"]
    assert math.isclose(mean, 0.4) and math.isclose(std, 0.2)
    assert agg["gloria"]["probe AUROC 1%"][0] == 0.7  # NaN seeds left out of the mean
    assert agg["global_only"]["pointing"] == (0.0, 0.0)


def test_markdown_labels_a_reduced_run_and_states_what_it_shows(tmp_path: Path) -> None:
    st = load_script("synth_table")
    agg = st.aggregate([seed_table(0.5, 0.6)])
    out = tmp_path / "results.md"
    st.write_markdown(
        agg, path=out, command="python scripts/synth_table.py --size smoke --seeds 0", size="smoke",
        seeds=[0], reduced=True, seconds=120.0,
    )  # fmt: skip
    text = out.read_text()
    assert "**Reduced run**: 1 seed(s) (0), size `smoke`" in text
    assert "`python scripts/synth_table.py --size smoke --seeds 0`" in text
    alignment, efficiency = text.split("### Alignment")[1].split("### Label efficiency")
    assert "| model | pointing |" in alignment and "| GLoRIA (global + local) | 0.500 |" in alignment
    assert "| model | probe AUROC 1% | seg Dice 100% |" in efficiency
    assert "| GLoRIA (global + local) | 0.600 | 0.100 |" in efficiency
    assert "| baseline | pointing | seg Dice 100% |" in text and "| all-empty mask | - | 0.900 |" in text
    assert "GLoRIA is above global-only and above the best prior." in text


def _results(dice: float, positive: float) -> dict:
    """The parts of a demo run's results.json that ``collect`` reads, for one model."""
    fraction = {"test_metrics": {"test_dice": dice, "test_dice_positive": positive}}
    grounding = {"two_stage": {"pointing": 0.2, "pointing_tol": 0.5}}
    grounding.update({b: {"pointing": 0.3, "pointing_tol": 0.6} for b in ("random", "prior_class")})
    grounding["prior_class_side_level"] = {"pointing": 0.4, "pointing_tol": 0.8}
    return {
        "zero_shot": {"gloria": {"accuracy": {"value": 0.5}}},
        "retrieval": {"gloria": [{"direction": "image_to_text", "similarity": "global",
                                  "precision_at_k": {"1": 0.4}}]},
        "probe": {"gloria": {"0.01": {"mean_auroc": 0.6}}},
        "segmentation": {"gloria": {"by_fraction": {"0.01": fraction, "1": fraction}},
                         "empty_prediction_dice": 0.88},
        "grounding": {"gloria": grounding},
    }  # fmt: skip


def test_collect_reads_both_dice_and_the_empty_mask_scores_of_each() -> None:
    st = load_script("synth_table")
    table = st.collect(_results(0.9, 0.7), ["gloria"])
    row = table["gloria"]
    assert row["seg Dice 1%"] == 0.9 and row["seg Dice, mask images 100%"] == 0.7
    assert row["P@1 global"] == 0.4 and row["probe AUROC 1%"] == 0.6 and row["pointing"] == 0.2
    assert table["empty_mask"] == {
        "seg Dice 1%": 0.88,
        "seg Dice 100%": 0.88,
        "seg Dice, mask images 1%": 0.0,
        "seg Dice, mask images 100%": 0.0,
    }
    assert table["prior_class_side_level"] == {"pointing": 0.4, "pointing (1-region tol.)": 0.8}


def test_from_json_rewrites_the_markdown_of_saved_cells(tmp_path: Path) -> None:
    st = load_script("synth_table")
    cells = {
        "meta": {"command": "python scripts/synth_table.py --jobs 2", "size": "default", "seeds": [0, 1, 2],
                 "seconds": 5400.0},
        "seeds": {str(i): {**seed_table(0.1 * (i + 1), 0.6), "seconds": {"synth": 9.0}} for i in range(3)},
    }  # fmt: skip
    saved = tmp_path / "cells.json"
    saved.write_text(json.dumps(cells))
    out = tmp_path / "results.md"
    assert st.main(["--from-json", str(saved), "--write", str(out)]) == 0
    text = out.read_text()
    assert "Reduced run" not in text and "(90 min on this machine)" in text
    assert "`python scripts/synth_table.py --jobs 2`" in text
    assert "| GLoRIA (global + local) | 0.200 ± 0.100 |" in text
    assert 'Time per seed (s, stage by stage): {"0": {"synth": 9.0}' in text


def test_segmentation_finding_compares_per_image_dice_with_the_empty_mask() -> None:
    st = load_script("synth_table")
    seed = seed_table(0.5, 0.6)
    for m in ("gloria", "global_only", "local_only", "random_init"):
        seed[m]["seg Dice, mask images 100%"] = 0.7 if m == "gloria" else 0.3
    seed["empty_mask"]["seg Dice, mask images 100%"] = 0.0
    lines = st.findings(st.aggregate([seed]))
    seg = next(line for line in lines if line.startswith("Segmentation: the best"))
    assert "the best Dice is 0.100" in seg and "scores 0.900, so no pretrained encoder" in seg
    masks = next(line for line in lines if line.startswith("Segmentation Dice over the test images"))
    assert "100%: GLoRIA 0.700 / global-only 0.300 / random init 0.300" in masks


def test_comparisons_count_a_difference_only_beyond_the_spread_over_seeds() -> None:
    st = load_script("synth_table")
    assert st.compare((0.636, 0.046), (0.635, 0.024)) == "within one standard deviation of"
    assert st.compare((0.097, 0.045), (0.016, 0.007)) == "above"
    assert st.compare((0.097, 0.045), (0.381, 0.016)) == "below"
    assert st.compare((0.5, 0.0), (0.4, 0.0)) == "above"  # one seed: any difference counts
    seeds = [seed_table(0.5 + 0.1 * i, 0.6) for i in range(3)]
    for i, seed in enumerate(seeds):
        seed["gloria"]["probe AUROC 1%"] = 0.60 + 0.05 * i
        seed["global_only"]["probe AUROC 1%"] = 0.62 + 0.05 * i
    low = next(line for line in st.findings(st.aggregate(seeds)) if line.startswith("Lowest label"))
    assert low.endswith("GLoRIA within one standard deviation of global-only.")
