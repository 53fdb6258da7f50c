"""The one loader end to end: a model trained with ``gloria train`` works with every command.

train (tiny, a few steps, shorter than one epoch) -> zero-shot / retrieve / attend / embed on
``<run>/checkpoints/last.ckpt`` -> convert -> embed on the converted directory (the same embeddings); and a
classification run's checkpoint predicts through the same loader.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from gloria.cli.main import main as gloria_main
from gloria.model import GLoRIA
from gloria.pretrained.loading import load_gloria, load_model
from gloria.tasks.classifier import ImageClassifier
from support.training_runs import FAST, config_path, one_thread, synth_root

__all__ = ["one_thread", "synth_root"]
pytestmark = pytest.mark.usefixtures("one_thread")


def _train(synth_root: Path, out: Path, config: str, *extra: str) -> Path:
    rc = gloria_main(
        ["train", "-c", str(config_path(config)), "--train", "--out", str(out),
         f"data.root={synth_root}/CheXpert-v1.0", "model.preset=tiny", "model.checkpoint=null",
         "trainer.max_epochs=5", "trainer.max_steps=2", "data.batch_size=6", "snapshots.enabled=false", *FAST,
         *extra]
    )  # fmt: skip
    assert rc == 0
    return out


@pytest.fixture(scope="module")
def pretrain_run(synth_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("runs")
    return _train(synth_root, out, "synth_pretrain_tiny.yaml") / "synth_pretrain_tiny"


def test_short_run_finishes_with_checkpoint_and_results(pretrain_run: Path) -> None:
    """``trainer.max_steps`` shorter than an epoch (2 of 3+ batches) ends normally."""
    results = json.loads((pretrain_run / "results.json").read_text())
    assert results["global_step"] == 2
    assert (pretrain_run / "checkpoints" / "last.ckpt").is_file()


def test_trained_checkpoint_through_every_command(
    pretrain_run: Path, synth_root: Path, tmp_path: Path
) -> None:
    ckpt = pretrain_run / "checkpoints" / "last.ckpt"
    data = synth_root / "CheXpert-v1.0" / "chexpert_5x200.csv"
    cache = ["--cache", str(tmp_path / "cache")]
    common = ["--model", str(ckpt), "--device", "cpu"]
    assert gloria_main(["zero-shot", *common, "--data", str(data), "--out", str(tmp_path / "zs"),
                        "--n-boot", "20", *cache]) == 0  # fmt: skip
    assert json.loads((tmp_path / "zs" / "results.json").read_text())["settings"]["model"] == str(ckpt)
    assert gloria_main(["retrieve", *common, "--data", str(data), "--out", str(tmp_path / "rt"),
                        "--ks", "1", "5", *cache]) == 0  # fmt: skip
    image = sorted((synth_root / "CheXpert-v1.0").rglob("*.jpg"))[0]
    assert gloria_main(["attend", *common, str(image), "--text", "small left pleural effusion",
                        "--out", str(tmp_path / "att.png")]) == 0  # fmt: skip
    images = tmp_path / "images"
    images.mkdir()
    for i, path in enumerate(sorted((synth_root / "CheXpert-v1.0").rglob("*.jpg"))[:4]):
        (images / f"{i}{path.suffix}").write_bytes(path.read_bytes())
    assert gloria_main(["embed", *common, "--images", str(images), "--out", str(tmp_path / "a.npz"),
                        "--no-cache", "--no-progress"]) == 0  # fmt: skip
    converted = tmp_path / "converted"
    assert gloria_main(["convert", str(ckpt), "--out", str(converted)]) == 0
    assert gloria_main(["embed", "--model", str(converted), "--device", "cpu", "--images", str(images),
                        "--out", str(tmp_path / "b.npz"), "--no-cache", "--no-progress"]) == 0  # fmt: skip
    a, b = np.load(tmp_path / "a.npz"), np.load(tmp_path / "b.npz")
    assert a["embeddings"].shape[0] == 4
    np.testing.assert_array_equal(a["embeddings"], b["embeddings"])
    # the same weights, whichever way they were read
    from_ckpt, from_dir = load_gloria(ckpt, "cpu"), load_gloria(converted, "cpu")
    state_b = from_dir.state_dict()
    assert all(torch.equal(v, state_b[k]) for k, v in from_ckpt.state_dict().items())
    assert from_ckpt.config.image == from_dir.config.image
    assert from_ckpt.config.alignment == from_dir.config.alignment


def test_pretraining_checkpoint_starts_a_classification_run_that_predicts(
    pretrain_run: Path, synth_root: Path, tmp_path: Path
) -> None:
    ckpt = pretrain_run / "checkpoints" / "last.ckpt"
    rc = gloria_main(
        ["train", "-c", str(config_path("synth_classification.yaml")), "--train", "--out", str(tmp_path),
         f"data.root={synth_root}/CheXpert-v1.0", "model.preset=tiny", f"model.checkpoint={ckpt}",
         "trainer.max_epochs=1", "trainer.limit_train_batches=2", "data.batch_size=8", *FAST]
    )  # fmt: skip
    assert rc == 0
    run = tmp_path / "synth_classification"
    classifier = load_model(run / "checkpoints" / "last.ckpt", "cpu")
    assert isinstance(classifier, ImageClassifier)
    assert classifier.classes == ["Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Pleural Effusion"]
    pretrained = load_gloria(ckpt, "cpu")
    assert classifier.config is not None and classifier.config.image == pretrained.config.image
    # the frozen encoder is the pretraining run's; the head is the trained one
    key = "model.layer1.0.conv1.weight"
    assert torch.equal(classifier.img_encoder.state_dict()[key], pretrained.img_encoder.state_dict()[key])
    state = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    assert torch.equal(classifier.classifier.weight, state["classifier.classifier.weight"])
    image = sorted((synth_root / "CheXpert-v1.0").rglob("*.jpg"))[:3]
    with torch.no_grad():
        logits = classifier(pretrained.process_img([str(p) for p in image], "cpu"))
    assert logits.shape == (3, 5) and bool(torch.isfinite(logits).all())
    with pytest.raises(ValueError, match=r"ImageClassifier.*load_model"):
        load_gloria(run / "checkpoints" / "last.ckpt", "cpu")
    # a checkpoint written before runs recorded their model: the run's experiment.yaml describes it
    raw = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    del raw["gloria_model"]
    torch.save(raw, run / "checkpoints" / "older.ckpt")
    older = load_model(run / "checkpoints" / "older.ckpt", "cpu")
    assert isinstance(older, ImageClassifier) and older.classes == classifier.classes
    assert torch.equal(older.classifier.weight, classifier.classifier.weight)


def test_preset_spec(tmp_path: Path) -> None:
    model = load_model("preset:tiny", "cpu")
    assert isinstance(model, GLoRIA) and not model.training
