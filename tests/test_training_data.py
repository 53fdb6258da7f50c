"""Training data: seeded train_pct subsampling (count, seed, checksum), seeded sampler (epochs, ranks),
per-access draws, and clear errors for bad configs and missing paths."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

from gloria.cli.train import main as run_py_main
from gloria.config import tiny_config
from gloria.data.records import ImageReportRecord
from gloria.training.datasets import ImageReportDataset
from gloria.training.experiment import DataSection
from gloria.training.samplers import SeededSampler
from gloria.training.sources import load_split_records, subsample
from support.dataset_fixtures import write_user_csv
from support.training_runs import config_path, synth_root

__all__ = ["synth_root"]


def test_subsample_keeps_round_pct_rows_seeded() -> None:
    rows = list(range(1000))
    kept, idx = subsample(rows, 0.01, seed=3)
    assert len(kept) == 10 and kept == idx and kept == sorted(kept)
    assert subsample(rows, 0.01, seed=3)[0] == kept
    assert subsample(rows, 0.01, seed=4)[0] != kept
    assert len(subsample(rows, 0.1, seed=3)[0]) == 100
    assert subsample(rows, 1.0, seed=3)[0] == rows
    assert len(subsample(rows[:20], 0.01, seed=0)[0]) == 1  # never empty
    with pytest.raises(ValueError, match="train_pct"):
        subsample(rows, 0.0, seed=0)


def test_train_pct_on_a_users_csv_records_count_seed_checksum(tmp_path: Path) -> None:
    root = write_user_csv(tmp_path / "user", 200)
    cfg = DataSection(
        source="image_report", root=str(root), train_csv="reports.csv", path_column="image",
        report_column="text", patient_column="patient", valid_fraction=0.1, test_fraction=0.1,
        train_pct=0.05,
    )  # fmt: skip
    a = load_split_records(cfg, seed=1)
    total = a.info["train_rows_total"]
    assert 150 <= total <= 170 and a.info["valid_rows"] + a.info["test_rows"] + total == 200
    assert len(a.train) == round(0.05 * total) == a.info["train_rows"]
    assert a.info["train_pct_seed"] == 1 and len(a.info["train_ids_sha256"]) == 64
    b = load_split_records(cfg, seed=1)
    c = load_split_records(cfg, seed=2)
    assert [r.path for r in a.train] == [r.path for r in b.train]
    assert a.info["train_ids_sha256"] != c.info["train_ids_sha256"]
    # no patient in two splits
    patients = {s: {r.patient_id for r in getattr(a, s)} for s in ("train", "valid", "test")}
    full = load_split_records(cfg.__class__(**{**cfg.__dict__, "train_pct": 1.0}), seed=1)
    train_patients = {r.patient_id for r in full.train}
    assert not train_patients & patients["valid"] and not train_patients & patients["test"]


def test_synth_chexpert_labels_are_binary_after_release_uncertain_policy(synth_root: Path) -> None:
    cfg = DataSection(
        source="chexpert", root=str(synth_root / "CheXpert-v1.0"), train_csv="train.csv",
        test_csv="valid.csv", classes=("Atelectasis", "Cardiomegaly"), frontal_only=True,
    )  # fmt: skip
    records = load_split_records(cfg, seed=0)
    assert records.train and records.valid and records.test
    for record in records.train + records.valid + records.test:
        assert set(record.labels.values()) <= {0.0, 1.0} and record.path.is_file()
        assert record.patient_id.startswith("patient")
    train_patients = {r.patient_id for r in records.train}
    assert not train_patients & {r.patient_id for r in records.valid}  # split by patient


def test_sampler_orders_by_seed_and_epoch_and_shards_by_rank() -> None:
    s = SeededSampler(10, seed=0, shuffle=True, rank=0, world_size=1)
    first = list(s)
    assert sorted(i for i, _ in first) == list(range(10)) and list(s) == first
    s.set_epoch(1)
    assert [i for i, _ in s] != [i for i, _ in first]
    r0 = SeededSampler(5, seed=0, shuffle=True, rank=0, world_size=2)
    r1 = SeededSampler(5, seed=0, shuffle=True, rank=1, world_size=2)
    a, b = [i for i, _ in r0], [i for i, _ in r1]
    assert len(a) == len(b) == len(r0) == 3 and set(a) | set(b) == set(range(5))
    plain = SeededSampler(4, seed=0, shuffle=False, rank=0, world_size=1)
    assert [i for i, _ in plain] == [0, 1, 2, 3]


def test_sentence_and_crop_come_from_the_access_seed(tmp_path: Path) -> None:
    root = write_user_csv(tmp_path / "u", 2)
    report = "Small left effusion. No pneumothorax seen. Heart size is normal. Lungs are clear."
    record = ImageReportRecord(
        path=root / "images" / "img0.jpg", report=report, split="train", patient_id="p"
    )
    ds = ImageReportDataset([record], tiny_config().transforms, train=True)
    torch.manual_seed(123)
    x = ds[(0, 77)]
    torch.manual_seed(999)  # the global RNG does not matter
    y = ds[(0, 77)]
    assert x["text"] == y["text"] and torch.equal(x["image"], y["image"])
    texts = {ds[(0, seed)]["text"] for seed in range(40)}
    assert texts == {"small left effusion", "no pneumothorax seen", "heart size is normal", "lungs are clear"}
    full = ImageReportDataset([record], tiny_config().transforms, train=False, full_report=True)[0]
    assert full["text"] == "small left effusion no pneumothorax seen heart size is normal lungs are clear"


def _run(args: list[str], caplog: pytest.LogCaptureFixture) -> tuple[int, str]:
    caplog.clear()
    with caplog.at_level(logging.ERROR):
        rc = run_py_main(args)
    return rc, caplog.text


def test_bad_configs_and_missing_paths_give_clear_errors(tmp_path: Path, caplog) -> None:
    cfg = str(config_path("synth_pretrain_tiny.yaml"))
    rc, text = _run(["-c", str(tmp_path / "none.yaml")], caplog)
    assert rc == 1 and "experiment config not found" in text and "none.yaml" in text
    rc, text = _run(["-c", cfg, "optim.lr=fast"], caplog)
    assert rc == 1 and "optim.lr" in text and "must be a number" in text
    rc, text = _run(["-c", cfg, "trainer.epochs=3"], caplog)
    assert rc == 1 and "trainer.epochs" in text
    rc, text = _run(["-c", cfg, f"data.root={tmp_path / 'nowhere'}"], caplog)
    assert rc == 1 and "data.root does not exist" in text and "nowhere" in text
    (tmp_path / "data").mkdir()
    rc, text = _run(["-c", cfg, f"data.root={tmp_path / 'data'}", "--out", str(tmp_path / "o")], caplog)
    assert rc == 1 and "report CSV not found" in text and "master_updated.csv" in text
    rc, text = _run(["-c", cfg, "--resume", str(tmp_path / "x.ckpt"), "--out", str(tmp_path / "o")], caplog)
    assert rc == 1 and "x.ckpt" in text


def test_resume_flag_does_not_swallow_an_override(tmp_path: Path, caplog) -> None:
    cfg = str(config_path("synth_pretrain_tiny.yaml"))
    rc, text = _run(["-c", cfg, "--out", str(tmp_path), "--resume", "trainer.max_epochs=two"], caplog)
    assert rc == 1 and "trainer.max_epochs" in text  # parsed as an override, not as a checkpoint path


def test_subsample_checksum_does_not_depend_on_where_the_data_lies(tmp_path: Path) -> None:
    """The same data set copied to another folder gives the same ``train_ids_sha256`` (ids are relative to
    ``data.root``), so two runs can be compared across machines."""
    import shutil

    from gloria.data.synth.config import SynthConfig
    from gloria.data.synth.generate import generate

    first = tmp_path / "a"
    generate(first, 12, seed=0, config=SynthConfig(size=32), progress=False)
    shutil.copytree(first, tmp_path / "b")
    infos = []
    for folder in ("a", "b"):
        cfg = DataSection(
            source="image_report", root=str(tmp_path / folder / "CheXpert-v1.0"),
            train_csv="master_updated.csv", image_root="..", split_column="Split", train_pct=0.5,
        )  # fmt: skip
        infos.append(load_split_records(cfg, seed=3).info)
    assert infos[0]["train_ids_sha256"] == infos[1]["train_ids_sha256"]


def test_texts_tokenised_in_loader_workers_give_the_same_batch_and_losses(tmp_path: Path, tiny_model) -> None:
    """Tokens made per item in two DataLoader workers equal ``process_text`` of the batch's texts, and the
    objective gives the same losses from them as from the texts."""
    from torch.utils.data import DataLoader

    from gloria.training.datasets import collate
    from gloria.training.objective import PretrainObjective

    root = write_user_csv(tmp_path / "u", 6)
    reports = ["Small left effusion. No pneumothorax seen.", "Heart size is normal. Lungs are clear.",
               "Patchy right basilar opacity. Tubes unchanged."]  # fmt: skip
    records = [
        ImageReportRecord(path=root / "images" / f"img{i}.jpg", report=reports[i % 3], split="train",
                          patient_id=f"p{i}")
        for i in range(6)
    ]  # fmt: skip
    ds = ImageReportDataset(records, tiny_model.config.transforms, train=True,
                            tokenizer=tiny_model.text_tokenizer())  # fmt: skip
    sampler = SeededSampler(len(ds), seed=1, shuffle=True, rank=0, world_size=1)
    batches = list(DataLoader(ds, batch_size=3, sampler=sampler, collate_fn=collate, num_workers=2))
    assert len(batches) == 2
    objective = PretrainObjective(tiny_model)
    for batch in batches:
        expected = tiny_model.process_text(batch["text"], "cpu")
        for key in ("caption_ids", "attention_mask", "token_type_ids", "word_counts"):
            assert batch[key].dtype == torch.long and torch.equal(batch[key], expected[key]), key
        with torch.no_grad():
            ours = objective(batch)
            theirs = objective({"image": batch["image"], "text": batch["text"]})
        for key in ("loss", "global_loss", "local_loss"):
            assert torch.equal(ours[key], theirs[key]), key
