"""Resume after an interrupt gives the same weights, optimiser state and LR schedule as an uninterrupted run
(seeded data order, per-sample draws and per-epoch reseeding)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import lightning.pytorch as L
import pytest
import torch

from gloria.training import runner
from gloria.training.callbacks import BatchSeed, PlateauOnValidation
from gloria.training.experiment import load_experiment
from gloria.training.samplers import SeededSampler
from support.training_runs import FAST, InterruptAtEpoch, config_path, one_thread, synth_root

__all__ = ["one_thread", "synth_root"]
pytestmark = pytest.mark.usefixtures("one_thread")


def _overrides(synth_root: Path) -> list[str]:
    return [f"data.root={synth_root}/CheXpert-v1.0", "trainer.max_epochs=3", "trainer.limit_train_batches=2",
            "data.batch_size=4", "snapshots.enabled=false", "model.preset=tiny",
            "model.config.text.bert_config.hidden_dropout_prob=0.1", *FAST]  # fmt: skip


def _config(synth_root: Path):
    return load_experiment(config_path("synth_pretrain_tiny.yaml"), _overrides(synth_root))


def test_resume_after_interrupt_equals_uninterrupted(synth_root: Path, tmp_path: Path, monkeypatch) -> None:
    cfg = _config(synth_root)
    full = runner.run_experiment(cfg, out_dir=tmp_path / "full")
    assert full["epochs"] == 3 and not full["interrupted"]

    build = runner.build_trainer

    def with_interrupt(*args, **kwargs):
        trainer, checkpoint, history, snapshots = build(*args, **kwargs)
        trainer.callbacks.append(InterruptAtEpoch(2))
        return trainer, checkpoint, history, snapshots

    monkeypatch.setattr(runner, "build_trainer", with_interrupt)
    with pytest.raises(SystemExit):  # Lightning shuts down gracefully, then exits with status 1
        runner.run_experiment(cfg, out_dir=tmp_path / "cut")
    last = tmp_path / "cut" / cfg.name / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=True)["global_step"] == 4
    monkeypatch.setattr(runner, "build_trainer", build)
    resumed = runner.run_experiment(cfg, out_dir=tmp_path / "cut", resume="last")
    assert resumed["global_step"] == full["global_step"] == 6

    _assert_same_state(full["last_checkpoint"], resumed["last_checkpoint"])
    # the resumed run's loss curve (history kept from the checkpoint) is the uninterrupted one exactly
    assert resumed["train_loss_curve"] == full["train_loss_curve"]
    # the CSV log keeps the steps before the interrupt and continues after it, like the uninterrupted one
    full_rows = _csv_rows(tmp_path / "full" / cfg.name)
    assert len({step for step, _, _ in full_rows}) >= 6  # every step logged (log_every_n_steps=1)
    assert _csv_rows(tmp_path / "cut" / cfg.name) == full_rows


def _assert_same_state(path_a: str, path_b: str) -> None:
    """Every weight, the Adam moments and the scheduler state of two checkpoints are identical."""
    a = torch.load(path_a, weights_only=True)
    b = torch.load(path_b, weights_only=True)
    assert a["global_step"] == b["global_step"]
    assert a["state_dict"].keys() == b["state_dict"].keys()
    for key, value in a["state_dict"].items():
        assert torch.equal(value, b["state_dict"][key]), key
    for sa, sb in zip(a["optimizer_states"][0]["state"].values(), b["optimizer_states"][0]["state"].values()):
        assert torch.equal(sa["exp_avg"], sb["exp_avg"]) and torch.equal(sa["exp_avg_sq"], sb["exp_avg_sq"])
    assert a["lr_schedulers"] == b["lr_schedulers"]


def _csv_rows(run_dir: Path) -> list[tuple[str, str, str]]:
    import csv

    with (run_dir / "logs" / "metrics.csv").open(newline="") as file:
        rows = list(csv.DictReader(file))
    return [(r["step"], r.get("train_loss", ""), r.get("val_loss", "")) for r in rows]


# mid-epoch resume: 2 epochs of 5 batches of 4 pairs, dropout on, random crops and sentence draws
_MID = ["trainer.max_epochs=2", "trainer.limit_train_batches=5", "trainer.early_stopping_patience=null"]


@pytest.fixture(scope="module")
def uninterrupted(synth_root: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        cfg = _config(synth_root).replace(_MID)
        run = runner.run_experiment(cfg, out_dir=tmp_path_factory.mktemp("full"))
    finally:
        torch.set_num_threads(before)
    assert run["global_step"] == 10 and len(run["train_loss_curve"]) == 10
    return run


def test_stopped_mid_epoch_by_max_steps_resumes_exactly(
    synth_root: Path, tmp_path: Path, uninterrupted: dict[str, Any]
) -> None:
    """Stopped at step 3 of the first 5-batch epoch, resumed without the limit: the same 10 steps."""
    cfg = _config(synth_root).replace(_MID)
    cut = runner.run_experiment(cfg.replace(["trainer.max_steps=3"]), out_dir=tmp_path)
    last = tmp_path / cfg.name / "checkpoints" / "last.ckpt"
    state = torch.load(last, weights_only=True)
    assert state["global_step"] == 3
    loader = state["loops"]["fit_loop"]["state_dict"]["combined_loader"][0]
    assert (loader["epoch"], loader["batches"]) == (0, 3)
    resumed = runner.run_experiment(cfg, out_dir=tmp_path, resume="last")
    assert resumed["global_step"] == 10
    _assert_same_state(uninterrupted["last_checkpoint"], resumed["last_checkpoint"])
    # the loss history of the steps before the stop is kept in the checkpoint: the whole curve
    assert resumed["train_loss_curve"] == uninterrupted["train_loss_curve"]
    assert cut["train_loss_curve"] == uninterrupted["train_loss_curve"][:3]


def test_killed_mid_epoch_resumes_from_step_checkpoint(
    synth_root: Path, tmp_path: Path, uninterrupted: dict[str, Any]
) -> None:
    """SIGKILL right after step 7 (second epoch, two DataLoader workers); last.ckpt of step 6 (written every
    2 steps) resumes to the uninterrupted run's weights, optimiser state and remaining loss curve."""
    overrides = [*_overrides(synth_root), *_MID, "trainer.checkpoint_every_n_steps=2", "data.num_workers=2"]
    cfg = load_experiment(config_path("synth_pretrain_tiny.yaml"), overrides)
    script = Path(__file__).parent / "support" / "kill_at_step.py"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.run(
        [sys.executable, str(script), "7", str(config_path("synth_pretrain_tiny.yaml")), str(tmp_path),
         *overrides],
        env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == -9, proc.stderr[-2000:]
    last = tmp_path / cfg.name / "checkpoints" / "last.ckpt"
    state = torch.load(last, weights_only=True)
    assert state["global_step"] == 6
    loader = state["loops"]["fit_loop"]["state_dict"]["combined_loader"][0]
    assert (loader["epoch"], loader["batches"]) == (1, 1)
    resumed = runner.run_experiment(cfg, out_dir=tmp_path, resume="last")
    assert resumed["global_step"] == 10
    _assert_same_state(uninterrupted["last_checkpoint"], resumed["last_checkpoint"])
    assert resumed["train_loss_curve"] == uninterrupted["train_loss_curve"]  # history kept from step 6


def test_sampler_resumes_at_a_position_of_one_epoch_only() -> None:
    plain = SeededSampler(10, seed=3, shuffle=True, rank=1, world_size=2)
    plain.set_epoch(2)
    whole = list(plain)
    resumed = SeededSampler(10, seed=3, shuffle=True, rank=1, world_size=2)
    resumed.resume_at(2, 3)
    assert list(resumed) == whole[3:]
    assert list(resumed) == whole  # the next pass over the epoch starts at 0 again
    other = SeededSampler(10, seed=3, shuffle=True, rank=1, world_size=2)
    other.resume_at(1, 3)
    other.set_epoch(2)  # Lightning moved on to another epoch: no skip
    assert list(other) == whole


def test_batch_seed_depends_on_position_only() -> None:
    class _Trainer:
        current_epoch = 3
        global_rank = 0

    seed = BatchSeed(5)
    seed.on_train_batch_start(_Trainer(), None, None, 7)  # type: ignore[arg-type]
    first = torch.rand(3)
    torch.rand(10)  # whatever ran in between
    seed.on_train_batch_start(_Trainer(), None, None, 7)  # type: ignore[arg-type]
    assert torch.equal(first, torch.rand(3))
    seed.on_train_batch_start(_Trainer(), None, None, 8)  # type: ignore[arg-type]
    assert not torch.equal(first, torch.rand(3))


def test_plateau_scheduler_fires_after_validation() -> None:
    """The release's ReduceLROnPlateau never stepped; ours halves the LR once the monitor stops improving."""
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.Adam([param], lr=1.0)
    plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.5, patience=1)

    class _Config:
        scheduler = plateau

    class _Trainer:
        def __init__(self) -> None:
            self.sanity_checking = False
            self.callback_metrics = {"val_loss": torch.tensor(1.0)}
            self.lr_scheduler_configs = [_Config()]

    callback = PlateauOnValidation("val_loss")
    lrs = []
    for _ in range(4):
        callback.on_validation_end(_Trainer(), None)  # type: ignore[arg-type]
        lrs.append(optimizer.param_groups[0]["lr"])
    assert lrs == [1.0, 1.0, 0.5, 0.5]


class _InterruptAtStep(L.Callback):
    """Raises KeyboardInterrupt (Ctrl-C) before the batch after optimiser step ``step``."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(self, trainer: L.Trainer, *args: Any) -> None:
        if trainer.global_step == self.step:
            raise KeyboardInterrupt


def test_ctrl_c_mid_epoch_resumes_from_step_checkpoint(
    synth_root: Path, tmp_path: Path, uninterrupted: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C after step 7 with a checkpoint every 3 steps: resumed from step 6, the uninterrupted run."""
    cfg = _config(synth_root).replace([*_MID, "trainer.checkpoint_every_n_steps=3"])
    build = runner.build_trainer

    def with_interrupt(*args: Any, **kwargs: Any) -> Any:
        trainer, checkpoint, history, snapshots = build(*args, **kwargs)
        trainer.callbacks.append(_InterruptAtStep(7))
        return trainer, checkpoint, history, snapshots

    monkeypatch.setattr(runner, "build_trainer", with_interrupt)
    with pytest.raises(SystemExit):  # Lightning shuts down gracefully, then exits with status 1
        runner.run_experiment(cfg, out_dir=tmp_path)
    monkeypatch.setattr(runner, "build_trainer", build)
    last = tmp_path / cfg.name / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=True)["global_step"] == 6
    resumed = runner.run_experiment(cfg, out_dir=tmp_path, resume="last")
    _assert_same_state(uninterrupted["last_checkpoint"], resumed["last_checkpoint"])
    assert resumed["train_loss_curve"] == uninterrupted["train_loss_curve"]  # history kept from step 6


def test_step_checkpoints_with_validation_every_n_steps_resume_exactly(
    synth_root: Path, tmp_path: Path
) -> None:
    """Validation every 3 steps across epochs, the plateau scheduler with patience 0 (it halves the rate
    after most validations), a checkpoint every 3 steps: stopped by max_steps at 6, a validation step, and
    resumed: the weights, Adam moments and scheduler state of the uninterrupted 10 steps."""
    changes = [*_MID, "trainer.checkpoint_every_n_steps=3", "trainer.check_val_every_n_epoch=null",
               "trainer.val_check_interval=3", "scheduler.patience=0"]  # fmt: skip
    cfg = _config(synth_root).replace(changes)
    full = runner.run_experiment(cfg, out_dir=tmp_path / "full")
    assert full["global_step"] == 10
    runner.run_experiment(cfg.replace(["trainer.max_steps=6"]), out_dir=tmp_path / "cut")
    resumed = runner.run_experiment(cfg, out_dir=tmp_path / "cut", resume="last")
    _assert_same_state(full["last_checkpoint"], resumed["last_checkpoint"])
    assert resumed["train_loss_curve"] == full["train_loss_curve"]  # history kept from step 6
