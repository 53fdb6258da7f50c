"""scripts/synth_table.py without training: mean and spread over seeds, the Markdown it writes."""

from __future__ import annotations

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
    assert "| GLoRIA (global + local) | 0.500 | 0.600 | 0.100 |" in text
    assert "| all-empty mask | - | - | 0.900 |" in text
    assert "GLoRIA is above global-only and above the best prior." in text
