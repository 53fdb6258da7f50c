"""gloria.demo.curve: the reference learning curve's reading and picture, a demo run's point on it, the
packaged curve being of the demo's default recipe, and the demo's stage 9 (placed, or why not)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from gloria.demo import curve as C
from gloria.demo.run import DemoRun
from gloria.demo.settings import SIZES
from gloria.viz import plots

PNG = b"\x89PNG\r\n\x1a\n"


def point(zero_shot: float, pointing: float, prior: float = 0.38) -> dict[str, Any]:
    readouts = {k: {"pointing": pointing * (k == "cosine"), "pointing_tol": 0.5}
                for k in ("two_stage", "two_stage_no_cls", "first_stage", "cosine")}  # fmt: skip
    priors = {"prior_class": (0.3, 0.6), "random": (0.05, 0.2), "prior_class_side_level": (prior, 0.7)}
    accuracy = {"value": zero_shot, "low": zero_shot - 0.05, "high": zero_shot + 0.05}
    return {
        "zero_shot": {"accuracy": accuracy, "macro_f1": {"value": zero_shot - 0.1}},
        "p5": {"global": 0.3, "both": 0.25},
        "pointing": {**readouts, **{k: {"pointing": a, "pointing_tol": b} for k, (a, b) in priors.items()}},
        "probe": {f: {"mean": 0.6, "std": 0.02, "values": [0.58, 0.6, 0.62]} for f in ("0.01", "0.1", "1")},
    }


def curve(values: dict[int, tuple[float, float]]) -> dict[str, Any]:
    return {
        "demo_budget": 272,
        "seed": 0,
        "target_steps": 3000,
        "chance": {"zero_shot": 0.296, "retrieval": 0.218},
        "checkpoints": {str(s): point(z, p) for s, (z, p) in values.items()},
    }


def test_reading_states_budget_goal_slope_and_prior() -> None:
    lines = C.reading(curve({0: (0.2, 0.0), 272: (0.4, 0.2), 1000: (0.5, 0.3), 3000: (0.6, 0.45)}))
    text = " ".join(lines)
    assert "Measured at 4 checkpoints up to step 3000; one seed (0)." in text
    assert "At the demo's budget (272 steps): zero-shot 0.400 [0.350, 0.450]" in text
    assert "best pointing `cosine` 0.200 against the class + words prior 0.380" in text
    assert "Zero-shot reaches 0.55 first at step 3000 (0.600)." in text
    slope = (0.6 - 0.5) / (math.log10(3000) - math.log10(1000))
    assert f"(1000 to 3000): {slope:+.3f} per tenfold" in text
    assert "first passes the class + words prior at step 3000 (`cosine` 0.450 against 0.380)" in text
    flat = " ".join(C.reading(curve({0: (0.2, 0.0), 272: (0.3, 0.1), 500: (0.25, 0.2)})))
    assert "up to step 500 of the 3000 asked for (the run was stopped there)" in flat
    assert (
        "Zero-shot stays below 0.55 up to step 500: best 0.300 at step 272, 0.250 at the last step." in flat
    )
    assert "No readout's pointing passes the class + words prior at any step: best `cosine` 0.200" in flat


def demo_results(zero_shot: float = 0.42, step: int = 170) -> dict[str, Any]:
    """The parts of a demo's results.json that place it on the curve (shapes as the stages write them)."""
    grounding = {k: {"pointing": 0.1 + 0.02 * i} for i, k in enumerate(C.READOUTS)}
    grounding.update({"prior_class": {"pointing": 0.26}, "prior_class_side_level": {"pointing": 0.36},
                      "random": {"pointing": 0.07}})  # fmt: skip
    return {
        "pretrain": {"global_step": 272, "checkpoint": f"/r/checkpoints/best-epoch=004-step={step}.ckpt"},
        "zero_shot": {"pretrained": {"accuracy": {"value": zero_shot, "low": 0.35, "high": 0.48}}},
        "retrieval": {"pretrained": [
            {"direction": "text_to_image", "similarity": "global", "precision_at_k": {"5": 0.9}},
            {"direction": "image_to_text", "similarity": "both", "precision_at_k": {"5": 0.8}},
            {"direction": "image_to_text", "similarity": "global", "precision_at_k": {"5": 0.44}},
        ]},
        "grounding": {"pretrained": grounding},
        "probe": {"over_seeds": {"pretrained": {"0.01": {"mean": 0.61}}}},
    }  # fmt: skip


def legend_texts(fig: Any) -> set[str]:
    return {t.get_text() for ax in fig.axes if ax.get_legend() for t in ax.get_legend().get_texts()}


def test_figure_marks_a_run(tmp_path: Path) -> None:
    record = curve({0: (0.2, 0.0), 272: (0.4, 0.2), 500: (0.45, 0.25)})
    mark = C.run_point(demo_results())
    fig = C.figure(record, mark)
    assert "this run (step 170)" in legend_texts(fig)
    assert plots.save(fig, tmp_path / "curve.png").read_bytes()[:8] == PNG
    assert not any(label.startswith("this run") for label in legend_texts(C.figure(record)))


def test_run_point_reads_the_scored_weights_and_the_global_p5() -> None:
    point = C.run_point(demo_results())
    assert point == {"step": 170, "trained_steps": 272, "zero_shot": 0.42, "p5": 0.44, "pointing": 0.16,
                     "readout": "cosine", "prior": 0.36, "probe": 0.61}  # fmt: skip
    assert C.scored_step({"checkpoint": None, "global_step": 272}) == 272  # no best checkpoint: the last
    assert C.run_point({"pretrain": {"global_step": 272}}) is None  # the evaluations did not run


def test_placement_states_the_run_the_nearest_reference_step_and_what_follows() -> None:
    record = curve({0: (0.2, 0.0), 200: (0.35, 0.15), 272: (0.4, 0.2), 1000: (0.75, 0.2)})
    point = C.run_point(demo_results())
    assert point is not None
    text = " ".join(C.placement(record, point))
    assert "This run trained 272 steps and is scored with the weights of step 170" in text
    assert "zero-shot 0.420, P@5 0.440, best pointing `cosine` 0.160 (class + words prior 0.360)" in text
    assert "The reference run (seed 0, the same recipe and data size) at step 200: zero-shot 0.350" in text
    assert "at step 1000 (5.9x this run's step): zero-shot 0.750" in text
    assert "on the rising part of the curve." in text
    assert "The reference is one run" in text and "spread over seeds" in text
    level = curve({0: (0.2, 0.0), 200: (0.5, 0.15), 1000: (0.52, 0.2)})
    assert "where the curve has levelled off." in " ".join(C.placement(level, point))


def test_the_packaged_curve_is_of_the_demo_default_recipe() -> None:
    """Changing the demo's default recipe or data size without running scripts/learning_curve.py again
    fails here: the report would place runs on a curve of another recipe."""
    record = C.reference_curve()
    assert record is not None and record["checkpoints"]
    assert C.different_settings(record, SIZES["default"]) == []
    assert str(record["demo_budget"]) in record["checkpoints"]
    assert "commit" in record["meta"] and record["meta"]["torch_threads"] >= 1
    assert C.different_settings(record, SIZES["quick"])  # another size is not on it


def test_stage_places_a_default_run_and_explains_another_size(tmp_path: Path) -> None:
    run = DemoRun(SIZES["default"], 0, tmp_path / "default", "gloria demo")
    run.results.update(demo_results())
    C.stage_learning_curve(run)
    text = "\n".join(run.sections["learning_curve"].lines)
    assert "## 9. Where this budget sits on the learning curve" in text
    assert "This run trained 272 steps and is scored with the weights of step 170" in text
    assert "At the demo's budget (272 steps)" in text
    assert (tmp_path / "default" / "figures" / "learning_curve.png").read_bytes()[:8] == PNG
    assert run.results["learning_curve"]["placed"] is True
    small = DemoRun(SIZES["smoke"], 0, tmp_path / "smoke", "gloria demo")
    C.stage_learning_curve(small)
    text = "\n".join(small.sections["learning_curve"].lines)
    assert "so it is not placed on it" in text and "`n_images`" in text
    assert small.results["learning_curve"]["placed"] is False
    assert not (tmp_path / "smoke" / "figures").exists()
