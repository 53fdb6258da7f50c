"""scripts/learning_curve.py: the step list, the steps per epoch, a stopped run's step; the whole script at
the smoke size (slow): checkpoints at the listed steps, every metric finite, a second call evaluating
nothing again. The curve's reading and picture: tests/test_demo_curve.py."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from support.scripts import load_script


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
