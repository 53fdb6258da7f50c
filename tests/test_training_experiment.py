"""Experiment YAML: validation (unknown key / wrong type name the key), key=value overrides, model config."""

from __future__ import annotations

from pathlib import Path

import pytest

from gloria.training.experiment import (
    apply_overrides,
    experiment_from_dict,
    load_experiment,
    parse_value,
    save_experiment,
)

BASE = """
task: pretrain
name: t
model: {preset: tiny}
data: {source: image_report, root: /data, train_csv: reports.csv, batch_size: 4}
optim: {lr: 5e-5}
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "exp.yaml"
    path.write_text(text)
    return path


def test_load_with_defaults_and_release_optimiser(tmp_path: Path) -> None:
    cfg = load_experiment(_write(tmp_path, BASE))
    assert cfg.task == "pretrain" and cfg.data.batch_size == 4
    assert cfg.optim.lr == pytest.approx(5e-5)  # YAML 1.1 reads 5e-5 as a string; we take it as a number
    assert cfg.optim.betas == (0.5, 0.999)
    assert cfg.scheduler.factor == 0.5 and cfg.scheduler.patience == 5
    assert cfg.gloria_config().image.backbone == "resnet18"


def test_overrides_with_dotted_keys(tmp_path: Path) -> None:
    cfg = load_experiment(
        _write(tmp_path, BASE),
        [
            "optim.lr=1e-4",
            "trainer.max_epochs=3",
            "optim.betas=[0.9, 0.99]",
            "model.config.image.backbone=resnet34",
        ],
    )
    assert cfg.optim.lr == pytest.approx(1e-4) and cfg.trainer.max_epochs == 3
    assert cfg.optim.betas == (0.9, 0.99)
    assert cfg.gloria_config().image.backbone == "resnet34"
    again = cfg.replace(["data.train_pct=0.01"])
    assert again.data.train_pct == 0.01 and again.trainer.max_epochs == 3


def test_round_trip_through_saved_yaml(tmp_path: Path) -> None:
    cfg = load_experiment(_write(tmp_path, BASE), ["trainer.limit_train_batches=2"])
    save_experiment(cfg, tmp_path / "resolved.yaml")
    assert load_experiment(tmp_path / "resolved.yaml") == cfg
    assert isinstance(cfg.trainer.limit_train_batches, int)  # an int stays a batch count


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("optim.lrr=1", r"optim\.lrr"),
        ("trainer.max_epochs=two", r"trainer\.max_epochs.*integer"),
        ("task=pretraining", r"'task' must be one of"),
        ("optim.betas=[0.5]", r"optim\.betas.*2 items"),
        ("data.train_pct=0", r"data\.train_pct"),
        ("model.config.image.backbone=vgg", r"model\.config.*backbone"),
        ("model.preset=huge", r"unknown preset 'huge'"),
        ("data.batch_size=true", r"data\.batch_size"),
        ("widget=1", r"unknown config key.*widget"),
        ("trainer.check_val_every_n_epoch=0", r"trainer\.check_val_every_n_epoch.*> 0 or null"),
        ("trainer.check_val_every_n_epoch=null", r"trainer\.val_check_interval.*number of steps"),
    ],
)
def test_bad_values_name_the_key(tmp_path: Path, override: str, message: str) -> None:
    path = _write(tmp_path, BASE)
    with pytest.raises(ValueError, match=message) as info:
        load_experiment(path, [override])
    assert str(path) in str(info.value)


def test_task_and_source_must_fit() -> None:
    with pytest.raises(ValueError, match=r"segmentation.*siim"):
        experiment_from_dict({"task": "segmentation", "data": {"source": "image_report", "train_csv": "x"}})
    with pytest.raises(ValueError, match=r"data\.classes"):
        experiment_from_dict({"task": "classification", "data": {"source": "chexpert", "train_csv": "x"}})


def test_missing_file_and_bad_yaml(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"nothere\.yaml"):
        load_experiment(tmp_path / "nothere.yaml")
    with pytest.raises(ValueError, match="top level must be a mapping"):
        load_experiment(_write(tmp_path, "- a\n- b\n"))


def test_override_syntax() -> None:
    assert parse_value("1e-4") == pytest.approx(1e-4)
    assert parse_value("null") is None and parse_value("[1, 2]") == [1, 2] and parse_value("abc") == "abc"
    assert apply_overrides({"a": {"b": 1}}, ["a.c=2"]) == {"a": {"b": 1, "c": 2}}
    with pytest.raises(ValueError, match="key=value"):
        apply_overrides({}, ["optim.lr"])
    with pytest.raises(ValueError, match="not a section"):
        apply_overrides({"a": 1}, ["a.b=2"])


def test_loss_section_reaches_the_objective_options(tmp_path: Path) -> None:
    from gloria.alignment.options import LossOptions

    text = (
        BASE + "loss: {texts_per_block: 8, images_per_block: 16, recompute: true, gather_negatives: false}\n"
    )
    cfg = load_experiment(_write(tmp_path, text))
    assert cfg.loss == LossOptions(
        texts_per_block=8, images_per_block=16, recompute=True, gather_negatives=False
    )
    assert load_experiment(_write(tmp_path, BASE)).loss.recompute == "auto"
    assert load_experiment(_write(tmp_path, BASE), ["loss.recompute=false"]).loss.recompute is False
    for bad, key in (
        ("loss.texts_per_block=0", "loss.texts_per_block"),
        ("loss.recompute=sometimes", "loss.recompute"),
    ):
        with pytest.raises(ValueError, match=key.replace(".", r"\.")):
            load_experiment(_write(tmp_path, BASE), [bad])


def test_earlier_loss_keys_move_to_the_loss_section(tmp_path: Path, caplog) -> None:
    text = BASE.replace(
        "model: {preset: tiny}", "model: {preset: tiny, local_chunk_size: 6, local_recompute: true}"
    )
    text += "trainer: {gather_negatives: false}\n"
    cfg = load_experiment(_write(tmp_path, text))
    assert (cfg.loss.texts_per_block, cfg.loss.recompute, cfg.loss.gather_negatives) == (6, True, False)
    assert "'model.local_chunk_size' is now 'loss.texts_per_block'" in caplog.text
    both = text + "loss: {texts_per_block: 3}\n"
    with pytest.raises(ValueError, match="both given"):
        load_experiment(_write(tmp_path, both))


def test_grad_cache_chunks_rules(tmp_path: Path) -> None:
    cfg = load_experiment(_write(tmp_path, BASE), ["trainer.grad_cache_chunks=2"])
    assert cfg.trainer.grad_cache_chunks == 2
    with pytest.raises(ValueError, match="accumulate_grad_batches"):
        load_experiment(
            _write(tmp_path, BASE), ["trainer.grad_cache_chunks=2", "trainer.accumulate_grad_batches=2"]
        )
    with pytest.raises(ValueError, match="grad_cache_chunks"):
        load_experiment(_write(tmp_path, BASE), ["trainer.grad_cache_chunks=0"])
