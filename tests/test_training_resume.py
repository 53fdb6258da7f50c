"""Resume after an interrupt gives the same weights, optimiser state and LR schedule as an uninterrupted run
(seeded data order, per-sample draws and per-epoch reseeding)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from gloria.training import runner
from gloria.training.callbacks import BatchSeed, PlateauOnValidation
from gloria.training.experiment import load_experiment
from support.training_runs import FAST, InterruptAtEpoch, config_path, one_thread, synth_root

__all__ = ["one_thread", "synth_root"]
pytestmark = pytest.mark.usefixtures("one_thread")


def _config(synth_root: Path):
    return load_experiment(
        config_path("synth_pretrain_tiny.yaml"),
        [f"data.root={synth_root}/CheXpert-v1.0", "trainer.max_epochs=3", "trainer.limit_train_batches=2",
         "data.batch_size=4", "snapshots.enabled=false", "model.preset=tiny",
         "model.config.text.bert_config.hidden_dropout_prob=0.1", *FAST]
    )  # fmt: skip


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

    a = torch.load(full["last_checkpoint"], weights_only=True)
    b = torch.load(resumed["last_checkpoint"], weights_only=True)
    assert a["state_dict"].keys() == b["state_dict"].keys()
    for key, value in a["state_dict"].items():
        assert torch.equal(value, b["state_dict"][key]), key
    for sa, sb in zip(a["optimizer_states"][0]["state"].values(), b["optimizer_states"][0]["state"].values()):
        assert torch.equal(sa["exp_avg"], sb["exp_avg"]) and torch.equal(sa["exp_avg_sq"], sb["exp_avg_sq"])
    assert a["lr_schedulers"] == b["lr_schedulers"]
    # the resumed run's loss curve (history kept from the checkpoint) is the uninterrupted one exactly
    assert resumed["train_loss_curve"] == full["train_loss_curve"]
    # the CSV log keeps the steps before the interrupt and continues after it, like the uninterrupted one
    full_rows = _csv_rows(tmp_path / "full" / cfg.name)
    assert len({step for step, _, _ in full_rows}) >= 6  # every step logged (log_every_n_steps=1)
    assert _csv_rows(tmp_path / "cut" / cfg.name) == full_rows


def _csv_rows(run_dir: Path) -> list[tuple[str, str, str]]:
    import csv

    with (run_dir / "logs" / "metrics.csv").open(newline="") as file:
        rows = list(csv.DictReader(file))
    return [(r["step"], r.get("train_loss", ""), r.get("val_loss", "")) for r in rows]


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
