"""scripts/learning_curve.py: the step list, the steps per epoch, the reading and picture from a curve; the
whole script at the smoke size (slow): checkpoints at the listed steps, every metric finite, a second call
evaluating nothing again."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from support.scripts import load_script


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


def test_steps_are_log_spaced_and_hold_the_demo_budget_exactly() -> None:
    st = load_script("learning_curve")
    assert st.curve_steps(3000, 272) == [0, 50, 100, 200, 272, 500, 1000, 2000, 3000]
    assert st.curve_steps(20000, 272)[-3:] == [5000, 10000, 20000]
    assert st.curve_steps(20, 5) == [0, 5, 20]
    assert st.curve_steps(3, 5) == [0, 3]  # a budget past --steps is left out


def test_steps_per_epoch_drops_the_last_partial_batch(tmp_path: Path) -> None:
    st = load_script("learning_curve")
    csv = tmp_path / "pretrain.csv"
    csv.write_text("Path,Split\n" + "".join(f"p{i},{'train' if i < 70 else 'valid'}\n" for i in range(80)))
    assert st.steps_per_epoch(csv, 32) == 2  # 70 train rows // 32
    assert st.steps_per_epoch(csv, 100) == 1


def test_a_stopped_run_is_read_at_its_last_checkpoint(tmp_path: Path) -> None:
    import torch

    st = load_script("learning_curve")
    last = tmp_path / "last.ckpt"
    assert st.stopped_at(last) is None
    torch.save({"global_step": 400, "state_dict": {"w": torch.zeros(2)}}, last)
    assert st.stopped_at(last) == (400, last)


def test_reading_states_budget_goal_slope_and_prior() -> None:
    st = load_script("learning_curve")
    lines = st.reading(curve({0: (0.2, 0.0), 272: (0.4, 0.2), 1000: (0.5, 0.3), 3000: (0.6, 0.45)}))
    text = " ".join(lines)
    assert "Measured at 4 checkpoints up to step 3000; one seed (0)." in text
    assert "At the demo's budget (272 steps): zero-shot 0.400 [0.350, 0.450]" in text
    assert "best pointing `cosine` 0.200 against the class + words prior 0.380" in text
    assert "Zero-shot reaches 0.55 first at step 3000 (0.600)." in text
    slope = (0.6 - 0.5) / (math.log10(3000) - math.log10(1000))
    assert f"(1000 to 3000): {slope:+.3f} per tenfold" in text
    assert "first passes the class + words prior at step 3000 (`cosine` 0.450 against 0.380)" in text
    flat = " ".join(st.reading(curve({0: (0.2, 0.0), 272: (0.3, 0.1), 500: (0.25, 0.2)})))
    assert "up to step 500 of the 3000 asked for (the run was stopped there)" in flat
    assert (
        "Zero-shot stays below 0.55 up to step 500: best 0.300 at step 272, 0.250 at the last step." in flat
    )
    assert "No readout's pointing passes the class + words prior at any step: best `cosine` 0.200" in flat


def test_plot_writes_a_picture(tmp_path: Path) -> None:
    st = load_script("learning_curve")
    path = st.plot(curve({0: (0.2, 0.0), 272: (0.4, 0.2), 500: (0.45, 0.25)}), tmp_path / "curve.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_smoke_run_writes_every_metric_and_skips_what_it_has(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import torch

    from gloria import load_gloria
    from gloria.demo import training
    from gloria.demo.settings import SIZES

    st = load_script("learning_curve")
    caplog.set_level("INFO", logger="learning_curve")
    data, figure = tmp_path / "curve.json", tmp_path / "curve.png"
    args = ["--size", "smoke", "--steps", "8", "--threads", "1", "--out", str(tmp_path / "run"),
            "--data", str(data), "--figure", str(figure)]  # fmt: skip
    assert st.main(args) == 0
    record = json.loads(data.read_text())
    assert record["steps"] == [0, record["demo_budget"], 8] and record["reached_step"] == 8
    assert record["meta"]["torch_threads"] == 1 and "commit" in record["meta"]
    for entry in record["checkpoints"].values():
        numbers = [entry["zero_shot"]["accuracy"]["value"], entry["zero_shot"]["macro_f1"]["value"],
                   *entry["p5"].values(), *(v["pointing"] for v in entry["pointing"].values()),
                   *(v["mean"] for v in entry["probe"].values())]  # fmt: skip
        assert all(math.isfinite(v) for v in numbers)
        assert set(entry["pointing"]) == {*st.READOUTS, *st.PRIORS}
    # step 0 is the random initialisation the demo compares against
    steps = tmp_path / "run" / "runs" / st.RUN_NAME / "steps"
    cfg = training.pretrain_config(SIZES["smoke"], tmp_path / "run" / "synthcxr", Path("x.csv"), 0)
    start, init = load_gloria(steps / "step_000000.ckpt", "cpu"), training.random_init_model(cfg)
    assert all(torch.equal(a, b) for a, b in zip(start.state_dict().values(), init.state_dict().values(),
                                                 strict=True))  # fmt: skip
    assert figure.is_file()
    assert set(json.loads((steps / "log.json").read_text())) == {str(s) for s in record["steps"]}
    before = data.read_text()
    assert st.main([*args, "--no-train"]) == 0  # nothing new to evaluate: the curve's numbers stay
    assert "evaluating steps [] (3 already in curve.json)" in caplog.text
    after = json.loads(data.read_text())
    assert after["checkpoints"] == json.loads(before)["checkpoints"]
    assert after["earlier_meta"][0] == json.loads(before)["meta"]  # the first call's record is kept
