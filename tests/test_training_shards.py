"""litdata shards (issue 16 item 5): the shards give the CSV path's samples (same image tensors, sentence
draws and tokens for the same record and seed), the same batches through the data module, and a loader
resumed in the middle of an epoch gives the uninterrupted batch sequence."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from gloria.config import tiny_config
from gloria.data.shards import MANIFEST, ShardDataset, write_shards
from gloria.data.synth.config import SynthConfig
from gloria.data.synth.generate import generate
from gloria.model import GLoRIA
from gloria.training.datamodules import GloriaDataModule
from gloria.training.datasets import ImageReportDataset, ShardImageReportDataset, usable_reports
from gloria.training.experiment import DataSection
from gloria.training.sources import load_split_records

pytest.importorskip("litdata")

BATCH = 4


def _section(root: Path, **changes: Any) -> DataSection:
    base = DataSection(
        source="image_report", root=str(root / "CheXpert-v1.0"), train_csv="master_updated.csv",
        image_root="..", split_column="Split", batch_size=BATCH,
    )  # fmt: skip
    return DataSection(**{**base.__dict__, **changes})


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """28 SynthCXR images at 96 px (resized to the tiny model's 72 in the shards) and their shards."""
    root = tmp_path_factory.mktemp("synth96")
    generate(root, 28, seed=1, config=SynthConfig(size=96), progress=False)
    records = load_split_records(_section(root), seed=0)
    splits = {name: usable_reports(getattr(records, name))[0] for name in ("train", "valid", "test")}
    shards = root / "shards"
    write_shards(splits, shards, imsize=tiny_config().transforms.imsize, num_workers=2)
    torch.manual_seed(0)
    return {
        "root": root,
        "splits": splits,
        "shards": shards,
        "tokenizer": GLoRIA(tiny_config()).text_tokenizer(),
    }


def test_shards_hold_the_records_in_order(data: dict[str, Any]) -> None:
    manifest = json.loads((data["shards"] / MANIFEST).read_text())
    assert manifest["imsize"] == 72 and manifest["counts"]["train"] == len(data["splits"]["train"])
    train = ShardDataset.open(str(data["shards"] / "train"))
    for index, record in enumerate(data["splits"]["train"]):
        item = train.item(index)
        assert item.id == str(record.path) and item.patient_id == record.patient_id
        assert max(item.image.shape) == 72 and item.image.dtype.name == "uint8"


def test_shards_give_the_same_samples_as_the_csv_path(data: dict[str, Any]) -> None:
    transforms = tiny_config().transforms
    for train in (True, False):
        csv = ImageReportDataset(
            data["splits"]["train"], transforms, train=train, tokenizer=data["tokenizer"]
        )
        shards = ShardImageReportDataset(
            ShardDataset.open(str(data["shards"] / "train")),
            transforms,
            train=train,
            tokenizer=data["tokenizer"],
        )
        assert len(csv) == len(shards)
        for index in range(len(csv)):
            for seed in (0, 12345):
                a, b = csv[(index, seed)], shards[(index, seed)]
                assert a["text"] == b["text"] and torch.equal(a["image"], b["image"]), (index, seed)
                assert torch.equal(a["caption_ids"], b["caption_ids"])


def _module(data: dict[str, Any], **changes: Any) -> GloriaDataModule:
    return GloriaDataModule(
        "pretrain", _section(data["root"], **changes), tiny_config().transforms, seed=3, classes=[],
        tokenizer=data["tokenizer"],
    )  # fmt: skip


def _indices(loader: Any, epoch: int) -> list[list[int]]:
    loader.sampler.set_epoch(epoch)  # what Lightning does at every epoch start
    return [batch["index"].tolist() for batch in loader]


def test_data_module_batches_from_shards_equal_the_csv_path(data: dict[str, Any]) -> None:
    csv = _module(data).train_dataloader()
    shards_module = _module(data, shards=str(data["shards"]), num_workers=2)
    shards = shards_module.train_dataloader()
    assert shards_module.load().info["train_rows"] == len(data["splits"]["train"])
    for epoch in (0, 1):
        csv.sampler.set_epoch(epoch)
        shards.sampler.set_epoch(epoch)
        pairs = list(zip(csv, shards, strict=True))
        assert len(pairs) == len(data["splits"]["train"]) // BATCH
        for a, b in pairs:
            assert a["index"].tolist() == b["index"].tolist() and a["text"] == b["text"]
            assert torch.equal(a["image"], b["image"]) and torch.equal(a["caption_ids"], b["caption_ids"])


def test_shard_loader_resumed_mid_epoch_continues_the_batch_sequence(data: dict[str, Any]) -> None:
    full = _indices(_module(data, shards=str(data["shards"]), num_workers=2).train_dataloader(), 1)
    cut = _module(data, shards=str(data["shards"]), num_workers=2).train_dataloader()
    cut.sampler.set_epoch(1)
    cut.progress = lambda: (2, len(full))  # the running fit has consumed 2 batches of epoch 1
    state = cut.state_dict()
    assert (state["epoch"], state["batches"]) == (1, 2)
    resumed = _module(data, shards=str(data["shards"]), num_workers=2).train_dataloader()
    resumed.load_state_dict(state)
    assert _indices(resumed, 1) == full[2:]
    assert _indices(resumed, 1) == full  # the next pass over the epoch is whole again
    cut.progress = lambda: (len(full), len(full))  # state saved at the end of epoch 1: epoch 2 next
    assert (cut.state_dict()["epoch"], cut.state_dict()["batches"]) == (2, 0)


def test_prepare_csv_with_shards_holds_the_split_csvs_records(tmp_path: Path) -> None:
    """``gloria prepare csv ... --shards DIR``: each split's shards hold, in order, the records that training
    reads from the split CSV written next to them."""
    import argparse

    from gloria.cli import prepare
    from support.dataset_fixtures import write_user_csv

    user = write_user_csv(tmp_path / "user", 24, empty_every=5)
    parser = argparse.ArgumentParser()
    prepare.register(parser.add_subparsers())
    argv = ["prepare", "csv", "--root", str(user), "--path-col", "image", "--report-col", "text",
            "--patient-col", "patient", "--shards", str(tmp_path / "shards"), "--shard-imsize", "72",
            "--shard-workers", "2"]  # fmt: skip
    args = parser.parse_args(argv)
    assert args.func(args) == 0
    section = DataSection(
        source="image_report", root=str(user), train_csv="csv_train.csv", valid_csv="csv_valid.csv",
        test_csv="csv_test.csv", path_column="path", report_column="report", patient_column="patient_id",
    )  # fmt: skip
    records = load_split_records(section, seed=0)
    counts = json.loads((tmp_path / "shards" / MANIFEST).read_text())["counts"]
    assert sum(counts.values()) == 19
    for name, count in counts.items():
        expected = usable_reports(getattr(records, name))[0]
        shards = ShardDataset.open(str(tmp_path / "shards" / name))
        assert len(shards) == count == len(expected)
        assert [shards.item(i).id for i in range(count)] == [str(r.path) for r in expected]


def test_pretraining_from_shards_equals_pretraining_from_the_csv(
    data: dict[str, Any], tmp_path: Path
) -> None:
    """The same experiment from the CSV + JPEGs and from the shards: the same loss at every step."""
    from gloria.training import runner
    from gloria.training.experiment import load_experiment
    from support.training_runs import FAST, config_path

    overrides = [f"data.root={data['root']}/CheXpert-v1.0", "model.preset=tiny", "trainer.max_epochs=1",
                 "trainer.limit_train_batches=3", f"data.batch_size={BATCH}", "snapshots.enabled=false",
                 "trainer.cpu_threads=1", *FAST]  # fmt: skip
    cfg = load_experiment(config_path("synth_pretrain_tiny.yaml"), overrides)
    csv = runner.run_experiment(cfg, out_dir=tmp_path / "csv")
    streamed = runner.run_experiment(
        cfg.replace([f"data.shards={data['shards']}", "data.num_workers=2"]), out_dir=tmp_path / "shards"
    )
    assert streamed["data"]["shards"] == str(data["shards"])
    assert len(csv["train_loss_curve"]) == 3 and streamed["train_loss_curve"] == csv["train_loss_curve"]
