"""Experiment configuration for pretraining, linear probe and segmentation (method.md sections 4 and 9).

One YAML file per experiment; sections ``model``, ``data``, ``optim``, ``scheduler``, ``trainer``,
``snapshots``. Unknown keys and wrong types raise ``ValueError`` naming the dotted key; ``key=value``
overrides with dotted keys are applied to the raw mapping before validation.
"""

from __future__ import annotations

import copy
import dataclasses
import re
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from gloria.config import GloriaConfig, config_from_dict, preset

Task = Literal["pretrain", "classification", "segmentation"]
DataSource = Literal["image_report", "chexpert", "rsna", "siim"]
Precision = Literal["32-true", "32", "16-mixed", "bf16-mixed", "bf16-true", "64-true", "64"]

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
    legacy_word_counts: bool = False  # local loss over the release's word counts (method.md section 4)
    freeze_encoder: bool = True  # classification: linear probe (True) or full fine-tune (False)
    local_chunk_size: int | None = None  # local loss: images per chunk (bounds memory)
    local_recompute: bool = False  # local loss: recompute attention in backward instead of storing it


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
    train_pct: float = 1.0
    balance_train: bool = False  # SIIM: as many negatives as positives in the training split
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
    precision: Precision = "32-true"
    gradient_clip_val: float | None = None
    accumulate_grad_batches: int = 1
    sync_batchnorm: bool = False
    gather_negatives: bool = True  # pretraining under DDP: negatives from every process, with gradient
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


def _check(hint: Any, value: Any, key: str) -> Any:
    """Validate ``value`` against a type hint; return it converted (lists -> tuples, ints -> floats)."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        return _build(hint, value, key)
    if hint is Any:
        return value
    if origin is Literal:
        if value not in args:
            raise ValueError(f"config key {key!r} must be one of {list(args)}, got {value!r}")
        return value
    if origin in (types.UnionType, typing.Union):
        if value is None:
            if type(None) in args:
                return None
            raise ValueError(f"config key {key!r} must not be null")
        errors: list[str] = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _check(arg, value, key)
            except ValueError as err:
                errors.append(str(err))
        raise ValueError(f"config key {key!r} has an invalid value {value!r} ({'; '.join(errors)})")
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise ValueError(f"config key {key!r} must be a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_check(args[0], v, f"{key}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise ValueError(f"config key {key!r} must have {len(args)} items, got {value!r}")
        return tuple(_check(a, v, f"{key}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
    if origin is not None and isinstance(origin, type) and issubclass(origin, Mapping):
        if not isinstance(value, Mapping):
            raise ValueError(f"config key {key!r} must be a mapping, got {value!r}")
        return dict(value)
    if hint is bool:
        if not isinstance(value, bool):
            raise ValueError(f"config key {key!r} must be true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"config key {key!r} must be an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"config key {key!r} must be a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ValueError(f"config key {key!r} must be a string, got {value!r}")
        return value
    raise TypeError(f"unsupported type hint {hint!r} for config key {key!r}")  # a bug in this module


def _build(cls: type[Any], data: Any, where: str) -> Any:
    if not isinstance(data, Mapping):
        raise ValueError(f"config section {where or cls.__name__!r} must be a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    prefix = f"{where}." if where else ""
    unknown = sorted(str(k) for k in data if k not in names)
    if unknown:
        raise ValueError(f"unknown config key(s) {[prefix + k for k in unknown]}; allowed here: {names}")
    kwargs = {name: _check(hints[name], data[name], prefix + name) for name in names if name in data}
    return cls(**kwargs)


def experiment_from_dict(data: Mapping[str, Any]) -> ExperimentConfig:
    """Validate a nested mapping into an :class:`ExperimentConfig` (missing keys take defaults)."""
    cfg: ExperimentConfig = _build(ExperimentConfig, data, "")
    _check_values(cfg)
    cfg.gloria_config()  # validates model.preset and model.config early
    return cfg


def _check_values(cfg: ExperimentConfig) -> None:
    d, o, t = cfg.data, cfg.optim, cfg.trainer
    positive = {
        "data.batch_size": d.batch_size,
        "optim.lr": o.lr,
        "trainer.accumulate_grad_batches": t.accumulate_grad_batches,
        "trainer.num_nodes": t.num_nodes,
        "snapshots.every_n_epochs": cfg.snapshots.every_n_epochs,
    }
    for key, value in positive.items():
        if value <= 0:
            raise ValueError(f"config key {key!r} must be > 0, got {value!r}")
    if not 0.0 < d.train_pct <= 1.0:
        raise ValueError(f"config key 'data.train_pct' must be in (0, 1], got {d.train_pct!r}")
    if d.num_workers < 0:
        raise ValueError(f"config key 'data.num_workers' must be >= 0, got {d.num_workers!r}")
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
    if t.gradient_clip_val is not None and t.gradient_clip_val <= 0:
        raise ValueError(f"config key 'trainer.gradient_clip_val' must be > 0, got {t.gradient_clip_val!r}")
    if t.max_epochs <= 0 and t.max_steps <= 0:
        raise ValueError("config keys 'trainer.max_epochs' and 'trainer.max_steps' cannot both be <= 0")
    if not d.train_csv and d.source in ("image_report", "chexpert"):
        raise ValueError(f"config key 'data.train_csv' is required for data.source={d.source!r}")
    if cfg.task == "classification" and d.source in ("image_report", "chexpert") and not d.classes:
        raise ValueError("config key 'data.classes' must list the label columns for classification")
    if cfg.task == "segmentation" and d.source != "siim":
        raise ValueError(f"task 'segmentation' needs data.source 'siim', got {d.source!r}")
    if cfg.task == "pretrain" and d.source != "image_report":
        raise ValueError(f"task 'pretrain' needs data.source 'image_report', got {d.source!r}")


# ------------------------------------------------------------------------------------ files, overrides

_FLOAT = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


def parse_value(text: str) -> Any:
    """A YAML scalar/list from an override's right-hand side; ``1e-4`` is a float (YAML 1.1 says string)."""
    try:
        value = yaml.safe_load(text) if text.strip() else ""
    except yaml.YAMLError as err:
        raise ValueError(f"cannot parse override value {text!r}: {err}") from err
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
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ValueError(f"{path}: not valid YAML: {err}") from err
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
