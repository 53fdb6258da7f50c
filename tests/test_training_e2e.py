"""End to end through the real entry points on a tiny SynthCXR set: pretraining (run.py), linear probe and
segmentation (gloria.cli.main); checkpoints, results JSON, loss curves, attention PNGs."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import lightning.pytorch as L
import pytest
import torch

from gloria.cli.main import main as gloria_main
from gloria.cli.train import main as run_py_main
from gloria.config import tiny_config
from gloria.model import GLoRIA
from gloria.tasks.classifier import ImageClassifier
from gloria.training.experiment import load_experiment
from gloria.training.runner import build_gloria
from support.training_runs import FAST, config_path, one_thread, synth_root

__all__ = ["one_thread", "synth_root"]
pytestmark = pytest.mark.usefixtures("one_thread")


def _results(run_dir: Path) -> dict:
    return json.loads((run_dir / "results.json").read_text())


def test_pretrain_tiny_through_run_py(synth_root: Path, tmp_path: Path) -> None:
    cfg = config_path("synth_pretrain_tiny.yaml")
    rc = run_py_main(
        ["-c", str(cfg), "--train", "--test", "--out", str(tmp_path), f"data.root={synth_root}/CheXpert-v1.0",
         "trainer.max_epochs=2", "trainer.limit_train_batches=4", "data.batch_size=6",
         "snapshots.num_pairs=2", *FAST]
    )  # fmt: skip
    assert rc == 0
    run = tmp_path / "synth_pretrain_tiny"
    res = _results(run)
    curve = res["train_loss_curve"]
    assert len(curve) == 8 and all(math.isfinite(v) for v in curve)
    assert sum(curve[-3:]) / 3 < sum(curve[:3]) / 3  # the loss goes down
    assert res["data"]["train_rows"] == res["data"]["train_rows_total"] > 0
    assert (
        math.isfinite(res["test_metrics"]["test_loss"]) and res["test_checkpoint"] == res["best_checkpoint"]
    )
    assert (run / "checkpoints" / "last.ckpt").is_file() and Path(res["best_checkpoint"]).is_file()
    # best: weights for testing and reuse; last: optimiser state too, for --resume
    assert "optimizer_states" not in torch.load(res["best_checkpoint"], weights_only=True)
    assert "optimizer_states" in torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert [Path(p).name for p in res["snapshots"]] == ["epoch_000.png", "epoch_001.png"]
    assert (run / "snapshots" / "epoch_001.png").stat().st_size > 1000
    assert "train_loss_step" in (run / "logs" / "metrics.csv").read_text()

    # the pretraining checkpoint initialises the downstream model (our weights, our config)
    model = build_gloria(load_experiment(cfg, [f"model.checkpoint={res['best_checkpoint']}"]))
    state = torch.load(res["best_checkpoint"], weights_only=True)["state_dict"]
    key = "img_encoder.global_embedder.weight"
    assert torch.equal(model.state_dict()[key], state[f"model.{key}"])


def test_linear_probe_splits_through_gloria_cli(synth_root: Path, tmp_path: Path) -> None:
    rc = gloria_main(
        ["train", "-c", str(config_path("synth_classification.yaml")), "--train", "--test", "--splits", "2",
         "--train_pct", "0.5", "--out", str(tmp_path), f"data.root={synth_root}/CheXpert-v1.0",
         "model.preset=tiny", "model.checkpoint=null", "trainer.max_epochs=2",
         "trainer.limit_train_batches=2", "data.batch_size=8", *FAST]
    )  # fmt: skip
    assert rc == 0
    top = _results(tmp_path / "synth_classification")
    assert top["splits"] == 2 and [r["seed"] for r in top["runs"]] == [1, 2]
    auroc = top["summary"]["test_auroc"]
    assert len(auroc["values"]) == 2 and math.isclose(auroc["mean"], sum(auroc["values"]) / 2)
    assert math.isclose(auroc["std"], abs(auroc["values"][0] - auroc["values"][1]) / math.sqrt(2))
    res = _results(tmp_path / "synth_classification" / "split_1")
    data = [r["data"] for r in top["runs"]]
    assert data[0]["train_rows"] == round(0.5 * data[0]["train_rows_total"])
    assert data[0]["train_ids_sha256"] != data[1]["train_ids_sha256"]  # seeds 1 and 2 draw different rows
    assert res["classes"] == ["Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Pleural Effusion"]
    assert all(math.isfinite(v) for v in res["train_loss_curve"]) and len(res["train_loss_curve"]) == 4
    metrics = res["test_metrics"]
    assert math.isfinite(metrics["test_loss"])
    assert "test_auroc/Cardiomegaly" in metrics and "test_auprc" in metrics
    # frozen encoder in eval mode: trunk weights AND BatchNorm statistics equal the initial ones
    L.seed_everything(1, verbose=False)  # the runner seeds, then builds the model and the head in this order
    initial = ImageClassifier(GLoRIA(tiny_config()), num_cls=5)
    state = torch.load(res["best_checkpoint"], weights_only=True)["state_dict"]
    for name, value in initial.img_encoder.model.state_dict().items():
        assert torch.equal(state[f"classifier.img_encoder.model.{name}"], value), name
    head = state["classifier.classifier.weight"]
    assert head.shape == (5, 512) and not torch.equal(head, initial.classifier.weight)


def test_segmentation_through_gloria_cli(synth_root: Path, tmp_path: Path) -> None:
    rc = gloria_main(
        ["train", "-c", str(config_path("synth_segmentation.yaml")), "--train", "--test", "--out",
         str(tmp_path), f"data.root={synth_root}/siim_pneumothorax", "model.preset=tiny",
         "model.checkpoint=null", "model.config.transforms.imsize=64", "model.config.transforms.crop_size=64",
         "trainer.max_epochs=1", "trainer.limit_train_batches=3", "data.batch_size=4", *FAST]
    )  # fmt: skip
    assert rc == 0
    res = _results(tmp_path / "synth_segmentation")
    assert len(res["train_loss_curve"]) == 3 and all(math.isfinite(v) for v in res["train_loss_curve"])
    dice = res["test_metrics"]["test_dice"]
    assert 0.0 <= dice <= 1.0
    assert Path(res["best_checkpoint"]).is_file()


def test_segmentation_validates_every_n_steps_across_epochs(
    synth_root: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """check_val_every_n_epoch=null: one-batch epochs (1% of the labels), validation every 2 steps only;
    without a progress bar, each validation writes a progress line."""
    caplog.set_level(logging.INFO, logger="gloria.training.callbacks")
    rc = gloria_main(
        ["train", "-c", str(config_path("synth_segmentation.yaml")), "--train", "--out", str(tmp_path),
         f"data.root={synth_root}/siim_pneumothorax", "model.preset=tiny", "model.checkpoint=null",
         "model.config.transforms.imsize=64", "model.config.transforms.crop_size=64", "data.batch_size=4",
         *FAST, "trainer.limit_train_batches=1", "trainer.max_epochs=100", "trainer.max_steps=6",
         "trainer.val_check_interval=2", "trainer.check_val_every_n_epoch=null"]
    )  # fmt: skip
    assert rc == 0
    res = _results(tmp_path / "synth_segmentation")
    assert res["global_step"] == 6 and res["epochs"] == 6
    import pandas as pd

    metrics = pd.read_csv(tmp_path / "synth_segmentation" / "logs" / "metrics.csv")
    assert metrics.dropna(subset=["val_dice"])["step"].tolist() == [1, 3, 5]  # after steps 2, 4 and 6
    lines = [r.getMessage() for r in caplog.records if r.name == "gloria.training.callbacks"]
    for step in (2, 4, 6):
        head = f"synth_segmentation: step {step}/6, epoch {step}, train loss "
        assert any(m.startswith(head) for m in lines), lines
    assert sum("val_dice " in m for m in lines) == 3 and any(m.endswith("s left") for m in lines)


@pytest.mark.slow
def test_pretrain_ddp_two_cpu_processes(synth_root: Path, tmp_path: Path) -> None:
    """Lightning DDP (gloo) over 2 CPU processes launched by run.py itself, negatives gathered."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    cmd = [sys.executable, str(root / "run.py"), "-c", str(config_path("synth_pretrain_tiny.yaml")),
           "--train", "--test", "--out", str(tmp_path), f"data.root={synth_root}/CheXpert-v1.0",
           "trainer.max_epochs=1",
           "trainer.limit_train_batches=2", "data.batch_size=4", "trainer.devices=2", "trainer.strategy=ddp",
           "snapshots.num_pairs=2", *FAST]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    res = _results(tmp_path / "synth_pretrain_tiny")
    assert res["global_step"] == 2 and math.isfinite(res["test_metrics"]["test_loss"])
    assert Path(res["best_checkpoint"]).is_file()


def test_fine_tune_option_trains_the_encoder_and_probe_does_not() -> None:
    from gloria.training.experiment import experiment_from_dict
    from gloria.training.runner import build_module

    def trainable(freeze: bool) -> tuple[int, int]:
        cfg = experiment_from_dict(
            {"task": "classification", "model": {"preset": "tiny", "freeze_encoder": freeze},
             "data": {"source": "chexpert", "train_csv": "train.csv", "classes": ["Edema"]}}
        )  # fmt: skip
        module = build_module(cfg, ["Edema"])
        params = list(module.parameters())
        return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)

    probe, total = trainable(True)
    assert probe == 512 + 1  # Linear(512 -> 1) on the ResNet-18 pooled feature
    tuned, total_tuned = trainable(False)
    assert tuned > 100 * probe and total_tuned == total
    # fine-tuning trains the trunk and the head, not GLoRIA's projection heads (unused by the classifier)
    encoder = GLoRIA(tiny_config()).img_encoder
    heads = sum(p.numel() for m in (encoder.global_embedder, encoder.local_embedder) for p in m.parameters())
    assert tuned == sum(p.numel() for p in encoder.model.parameters()) + probe
    assert total_tuned - tuned == heads
