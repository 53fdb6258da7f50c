"""Experiment configuration for pretraining, linear probe and segmentation (method.md sections 4 and 9).

One YAML file per experiment; sections ``model``, ``data``, ``optim``, ``scheduler``, ``trainer``,
``snapshots``. Unknown keys and wrong types raise ``ValueError`` naming the dotted key; ``key=value``
overrides with dotted keys are applied to the raw mapping before validation.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
import re
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from gloria.alignment.options import LossOptions
from gloria.config import GloriaConfig, config_from_dict, from_dict, preset
from gloria.safe_yaml import load_yaml_file, load_yaml_text

log = logging.getLogger(__name__)

Task = Literal["pretrain", "classification", "segmentation"]
DataSource = Literal["image_report", "chexpert", "rsna", "siim"]
# "auto": bf16-mixed on a CUDA GPU with bfloat16, else 32-true (gloria.training.speed.resolve_precision)
Precision = Literal["auto", "32-true", "32", "16-mixed", "bf16-mixed", "bf16-true", "64-true", "64"]

TASKS: tuple[str, ...] = typing.get_args(Task)


@dataclass(frozen=True)
class ModelSection:
    """Which GLoRIA to build: a preset, nested overrides of its fields, optional weights to start from.

    ``config`` is a partial nested mapping merged into the preset (``{"image": {"backbone": "resnet18"}}``).
    ``checkpoint`` is a registered name, a release ``.ckpt`` or a converted directory (``load_gloria``), or a
    Lightning checkpoint of a pretraining run; ``None`` starts from the preset's initialisation.
    """

    preset: str = "gloria_resnet50"
    config: Mapping[str, Any] = field(default_factory=dict)
    checkpoint: str | None = None
    freeze_encoder: bool = True  # classification: linear probe (True) or full fine-tune (False)
    # encoder memory and speed (training): recompute each image stage / BERT layer in backward instead of
    # storing its activations; channels-last images into the trunk; torch.compile of the trunk and the BERT
    activation_checkpointing: bool = False
    channels_last: bool = False
    compile: bool = False


@dataclass(frozen=True)
class DataSection:
    """Where the data lives and how batches are made.

    ``source``: ``image_report`` (any CSV with image-path and report columns), ``chexpert`` (CheXpert-style
    label CSVs), ``rsna`` (``stage_2_train_labels.csv`` + DICOMs), ``siim`` (``train-rle.csv`` + DICOMs).
    CSV paths are relative to ``root`` unless absolute. Without ``valid_csv`` / ``test_csv`` the rows are
    split by patient with ``split_seed`` (``valid_fraction`` / ``test_fraction``) unless a split column
    exists. ``exclude_csv`` (``image_report``): evaluation CSVs with a ``Path`` column (5x200-style) whose
    patients leave every split, so no evaluation image or patient is trained on; ``None`` takes
    ``<root>/chexpert_5x200.csv`` when that file exists, ``[]`` excludes nothing.
    """

    source: DataSource = "image_report"
    root: str = ""
    train_csv: str = ""
    valid_csv: str | None = None
    test_csv: str | None = None
    image_root: str | None = None
    path_column: str = "Path"
    report_column: str = "Report Impression"
    split_column: str | None = None
    patient_column: str | None = None
    classes: tuple[str, ...] = ()
    uncertain: Literal["release", "ones", "zeros", "ignore"] = "release"
    frontal_only: bool = False
    full_report: bool = False
    valid_fraction: float = 0.1
    test_fraction: float = 0.1
    split_seed: int = 0
    batch_size: int = 48
    eval_batch_size: int | None = None
    num_workers: int = 0
    pin_memory: bool | None = None  # page-locked batches (asynchronous copies); None: when CUDA is there
    prefetch_factor: int | None = None  # batches each worker prepares ahead (None: torch's 2); workers > 0
    train_pct: float = 1.0
    balance_train: bool = False  # SIIM: as many negatives as positives in the training split
    # pretraining from litdata shards (`gloria prepare ... --shards DIR`): a folder or object-store URL with
    # train/, valid/ (and test/); replaces the CSV and image files, which stay the path for small data
    shards: str | None = None
    # image_report: evaluation CSVs (a Path column) whose patients leave every split
    exclude_csv: tuple[str, ...] | None = None


@dataclass(frozen=True)
class OptimSection:
    """Adam with the release's betas (0.5, 0.999), learning rate and weight decay per task."""

    name: Literal["adam", "adamw"] = "adam"
    lr: float = 5e-5
    weight_decay: float = 1e-6
    betas: tuple[float, float] = (0.5, 0.999)
    text_lr: float | None = None  # pretraining: the text tower's own rate (a pretrained BERT wants less)


@dataclass(frozen=True)
class SchedulerSection:
    """ReduceLROnPlateau stepped once per validation (the release's never fired; ours does)."""

    name: Literal["plateau", "none"] = "plateau"
    factor: float = 0.5
    patience: int = 5
    monitor: str = "val_loss"
    mode: Literal["min", "max"] = "min"


@dataclass(frozen=True)
class TrainerSection:
    """Lightning ``Trainer`` settings plus checkpointing, early stopping and logging."""

    max_epochs: int = 50
    max_steps: int = -1
    accelerator: str = "auto"
    devices: int | str = 1
    num_nodes: int = 1
    strategy: str = "auto"
    precision: Precision = "auto"
    gradient_clip_val: float | None = None
    accumulate_grad_batches: int = 1
    sync_batchnorm: bool = False
    # pretraining: split each batch into this many chunks for the encoders, with the contrastive loss over
    # the whole batch (gradient caching: a batch of data.batch_size at the memory of one chunk)
    grad_cache_chunks: int = 1
    monitor: str = "val_loss"
    monitor_mode: Literal["min", "max"] = "min"
    early_stopping_patience: int | None = 10
    limit_train_batches: int | float = 1.0
    limit_val_batches: int | float = 1.0
    limit_test_batches: int | float = 1.0
    val_check_interval: int | float = 1.0
    # null: validate every ``val_check_interval`` optimiser steps across epochs (short runs on small sets)
    check_val_every_n_epoch: int | None = 1
    num_sanity_val_steps: int = 0
    log_every_n_steps: int = 10
    loggers: tuple[Literal["csv", "tensorboard", "wandb"], ...] = ("csv", "tensorboard")
    enable_progress_bar: bool = True
    deterministic: bool = False
    cpu_threads: int | None = None  # torch intra-op threads (None: torch's default); 1 helps on shared CPUs
    # last.ckpt also every N optimiser steps (resume in the middle of an epoch); None: epoch ends only
    checkpoint_every_n_steps: int | None = None


@dataclass(frozen=True)
class SnapshotSection:
    """Attention-map PNGs written during pretraining (validation pairs, every ``every_n_epochs``)."""

    enabled: bool = True
    every_n_epochs: int = 1
    num_pairs: int = 4


@dataclass(frozen=True)
class ExperimentConfig:
    """A whole experiment; ``seed`` seeds model init, data order and per-sample draws."""

    task: Task = "pretrain"
    name: str = "experiment"
    seed: int = 0
    out_dir: str = "runs"
    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    optim: OptimSection = field(default_factory=OptimSection)
    scheduler: SchedulerSection = field(default_factory=SchedulerSection)
    trainer: TrainerSection = field(default_factory=TrainerSection)
    snapshots: SnapshotSection = field(default_factory=SnapshotSection)
    loss: LossOptions = field(default_factory=LossOptions)  # pretraining's objective (gloria.alignment)

    def gloria_config(self) -> GloriaConfig:
        """The model configuration: the preset with ``model.config`` merged in (errors name the key)."""
        base = preset(self.model.preset).to_dict()
        merged = deep_merge(base, self.model.config)
        try:
            return config_from_dict(merged)
        except ValueError as err:
            raise ValueError(f"model.config: {err}") from err

    def to_dict(self) -> dict[str, Any]:
        return _plain(dataclasses.asdict(self))

    def replace(self, overrides: Sequence[str]) -> ExperimentConfig:
        """A copy with ``key=value`` overrides applied (dotted keys, YAML values)."""
        return experiment_from_dict(apply_overrides(self.to_dict(), overrides))


# ------------------------------------------------------------------------------------------ validation


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    return value


def deep_merge(base: dict[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``base`` with ``update`` merged in, mapping by mapping (other values replaced)."""
    out = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(dict(out[key]), value)
        else:
            out[key] = copy.deepcopy(value)
    return out


# keys of earlier versions, now in the ``loss`` section: (section, old name) -> new name in ``loss``
MOVED_LOSS_KEYS = {
    ("model", "legacy_word_counts"): "legacy_word_counts",
    ("model", "local_chunk_size"): "texts_per_block",  # it always counted texts
    ("model", "local_recompute"): "recompute",
    ("trainer", "gather_negatives"): "gather_negatives",
}


def _move_loss_keys(data: Mapping[str, Any]) -> Mapping[str, Any]:
    """Earlier files' loss keys (``model.local_chunk_size`` ...) moved into ``loss``, with a warning."""
    if not any(isinstance(data.get(sec), Mapping) and old in data[sec] for sec, old in MOVED_LOSS_KEYS):
        return data
    out = copy.deepcopy(dict(data))
    loss = dict(out.get("loss") or {})
    for (section, old), new in MOVED_LOSS_KEYS.items():
        part = out.get(section)
        if isinstance(part, Mapping) and old in part:
            part = dict(part)
            value = part.pop(old)
            out[section] = part
            if new in loss:
                raise ValueError(
                    f"config keys '{section}.{old}' and 'loss.{new}' both given; keep 'loss.{new}'"
                )
            loss[new] = value
            log.warning("config key '%s.%s' is now 'loss.%s'", section, old, new)
    out["loss"] = loss
    return out


def experiment_from_dict(data: Mapping[str, Any]) -> ExperimentConfig:
    """Validate a nested mapping into an :class:`ExperimentConfig` (missing keys take defaults)."""
    cfg: ExperimentConfig = from_dict(ExperimentConfig, _move_loss_keys(data))  # the one validator
    _check_values(cfg)
    cfg.gloria_config()  # validates model.preset and model.config early
    return cfg


def _non_finite(value: Any, key: str) -> str | None:
    """The dotted key of the first NaN or infinite number in a config value (sections, lists), or None."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        for name, item in value.items():
            found = _non_finite(item, f"{key}.{name}" if key else str(name))
            if found:
                return found
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            found = _non_finite(item, f"{key}[{i}]")
            if found:
                return found
    elif isinstance(value, float) and not math.isfinite(value):
        return key
    return None


def check_run_name(name: str) -> None:
    """A run name is one folder name (no separators, not absolute, not ``..``): it stays in ``--out``."""
    if not name or name in (".", "..") or any(c in name for c in "/\\\0") or Path(name).is_absolute():
        raise ValueError(
            f"config key 'name' must be a single folder name (no '/', '\\', '..' or absolute path), "
            f"got {name!r}"
        )


def _check_values(cfg: ExperimentConfig) -> None:
    d, o, t = cfg.data, cfg.optim, cfg.trainer
    bad = _non_finite(cfg, "")
    if bad is not None:
        raise ValueError(f"config key {bad!r} must be a finite number, got {_lookup(cfg, bad)!r}")
    check_run_name(cfg.name)
    if isinstance(t.devices, int) and (t.devices == 0 or t.devices < -1):
        raise ValueError(f"config key 'trainer.devices' must be >= 1, -1 (all) or 'auto', got {t.devices!r}")
    positive = {
        "data.batch_size": d.batch_size,
        "optim.lr": o.lr,
        "trainer.accumulate_grad_batches": t.accumulate_grad_batches,
        "trainer.grad_cache_chunks": t.grad_cache_chunks,
        "trainer.num_nodes": t.num_nodes,
        "snapshots.every_n_epochs": cfg.snapshots.every_n_epochs,
    }
    for key, value in positive.items():
        if not value > 0:
            raise ValueError(f"config key {key!r} must be > 0, got {value!r}")
    if not 0.0 < d.train_pct <= 1.0:
        raise ValueError(f"config key 'data.train_pct' must be in (0, 1], got {d.train_pct!r}")
    if d.num_workers < 0:
        raise ValueError(f"config key 'data.num_workers' must be >= 0, got {d.num_workers!r}")
    if d.prefetch_factor is not None and (d.prefetch_factor < 1 or d.num_workers == 0):
        raise ValueError(
            f"config key 'data.prefetch_factor' must be >= 1 and needs data.num_workers > 0, got "
            f"{d.prefetch_factor!r} with {d.num_workers} workers"
        )
    if o.weight_decay < 0:
        raise ValueError(f"config key 'optim.weight_decay' must be >= 0, got {o.weight_decay!r}")
    if not all(0.0 <= b < 1.0 for b in o.betas):
        raise ValueError(f"config key 'optim.betas' must be in [0, 1), got {list(o.betas)!r}")
    if not 0.0 < cfg.scheduler.factor < 1.0:
        raise ValueError(f"config key 'scheduler.factor' must be in (0, 1), got {cfg.scheduler.factor!r}")
    if t.check_val_every_n_epoch is None and not isinstance(t.val_check_interval, int):
        raise ValueError(
            "config key 'trainer.val_check_interval' must be a number of steps (an integer) when "
            f"'trainer.check_val_every_n_epoch' is null, got {t.val_check_interval!r}"
        )
    every = t.check_val_every_n_epoch
    if every is not None and every <= 0:
        raise ValueError(f"config key 'trainer.check_val_every_n_epoch' must be > 0 or null, got {every!r}")
    every_steps = t.checkpoint_every_n_steps
    if every_steps is not None and every_steps <= 0:
        key = "trainer.checkpoint_every_n_steps"
        raise ValueError(f"config key {key!r} must be > 0 or null, got {every_steps!r}")
    if t.gradient_clip_val is not None and t.gradient_clip_val <= 0:
        raise ValueError(f"config key 'trainer.gradient_clip_val' must be > 0, got {t.gradient_clip_val!r}")
    if t.max_epochs <= 0 and t.max_steps <= 0:
        raise ValueError("config keys 'trainer.max_epochs' and 'trainer.max_steps' cannot both be <= 0")
    if not d.train_csv and d.source in ("image_report", "chexpert") and d.shards is None:
        raise ValueError(f"config key 'data.train_csv' is required for data.source={d.source!r}")
    if cfg.task == "classification" and d.source in ("image_report", "chexpert") and not d.classes:
        raise ValueError("config key 'data.classes' must list the label columns for classification")
    if cfg.task == "segmentation" and d.source != "siim":
        raise ValueError(f"task 'segmentation' needs data.source 'siim', got {d.source!r}")
    if cfg.task == "pretrain" and d.batch_size < 2:
        raise ValueError(
            f"config key 'data.batch_size' must be >= 2 for pretraining (the contrastive loss needs other "
            f"pairs in the batch; one pair gives a loss of exactly 0), got {d.batch_size}"
        )
    if d.shards is not None and (cfg.task != "pretrain" or d.train_pct != 1.0):
        raise ValueError("config key 'data.shards' serves pretraining with data.train_pct 1 only")
    if cfg.task == "pretrain" and d.source != "image_report":
        raise ValueError(f"task 'pretrain' needs data.source 'image_report', got {d.source!r}")
    if t.grad_cache_chunks > 1:
        if cfg.task != "pretrain":
            raise ValueError(
                f"config key 'trainer.grad_cache_chunks' is for task 'pretrain', not {cfg.task!r}"
            )
        if t.accumulate_grad_batches != 1:
            raise ValueError(
                "config keys 'trainer.grad_cache_chunks' and 'trainer.accumulate_grad_batches' cannot both "
                "be > 1: gradient caching already gives one contrastive batch of data.batch_size per step"
            )


def _lookup(cfg: ExperimentConfig, key: str) -> Any:
    value: Any = cfg.to_dict()
    for part in re.split(r"\.|\[", key):
        value = value[int(part[:-1])] if part.endswith("]") else value[part]
    return value


# ------------------------------------------------------------------------------------ files, overrides

_FLOAT = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


def parse_value(text: str) -> Any:
    """A YAML scalar/list from an override's right-hand side; ``1e-4`` is a float (YAML 1.1 says string)."""
    value = load_yaml_text(text, f"override value {text!r}") if text.strip() else ""
    if isinstance(value, str) and _FLOAT.match(value.strip()):
        return float(value)
    return value


def apply_overrides(data: Mapping[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Apply ``a.b.c=value`` overrides to a nested mapping (a copy); missing sections are created."""
    out = _plain(data)
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"override {item!r} must look like key=value (dotted key, e.g. optim.lr=1e-4)")
        key, text = item.split("=", 1)
        parts = key.strip().split(".")
        if not all(parts):
            raise ValueError(f"override {item!r} has an empty key part")
        node = out
        for depth, part in enumerate(parts[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                where = ".".join(parts[: depth + 1])
                raise ValueError(f"override {item!r}: config key {where!r} is not a section")
            node = child
        node[parts[-1]] = parse_value(text)
    return out


def _float_strings(value: Any) -> Any:
    """YAML 1.1 reads ``5e-5`` as a string; turn such strings back into numbers."""
    if isinstance(value, dict):
        return {k: _float_strings(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_float_strings(v) for v in value]
    if isinstance(value, str) and _FLOAT.match(value.strip()) and ("e" in value or "E" in value):
        return float(value)
    return value


def load_experiment(path: str | Path, overrides: Sequence[str] = ()) -> ExperimentConfig:
    """Read a YAML experiment file, apply overrides, validate. Errors name the file and the key."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"experiment config not found: {path}")
    raw = load_yaml_file(path)  # no aliases: a small file cannot expand to gigabytes or a cycle
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: the top level must be a mapping of sections, got {type(raw).__name__}")
    try:
        return experiment_from_dict(apply_overrides(_float_strings(raw), overrides))
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from err


def save_experiment(cfg: ExperimentConfig, path: str | Path) -> None:
    """Write the resolved experiment (after overrides) as YAML next to a run's outputs."""
    Path(path).write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
