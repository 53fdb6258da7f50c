"""Checkpoints written by ``gloria train`` (Lightning 2): which model they hold and its tensors.

Every run stores ``gloria_model`` next to Lightning's entries: the task, the model's ``GloriaConfig``, the
attribute the module keeps the model under and, for a classifier, its classes. Older files are read too:
a pretraining run's ``gloria_config`` entry, or the run's ``experiment.yaml`` two folders up.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import Tensor

from gloria.config import GloriaConfig, config_from_dict, to_dict

log = logging.getLogger(__name__)

MODEL_INFO_KEY = "gloria_model"
LEGACY_CONFIG_KEY = "gloria_config"  # pretraining checkpoints before MODEL_INFO_KEY existed
EXPERIMENT_FILE = "experiment.yaml"
# task -> attribute of the LightningModule that holds the model (its state-dict prefix)
MODULE_ATTRIBUTE = {"pretrain": "model", "classification": "classifier", "segmentation": "unet"}


def model_info(
    task: str, config: GloriaConfig, *, classes: Sequence[str] = (), freeze_encoder: bool = True
) -> dict[str, Any]:
    """The ``gloria_model`` entry of a training checkpoint (plain data: safe to read back)."""
    if task not in MODULE_ATTRIBUTE:
        raise ValueError(f"unknown task {task!r}; expected one of {list(MODULE_ATTRIBUTE)}")
    return {
        "format": 1,
        "task": task,
        "attribute": MODULE_ATTRIBUTE[task],
        "config": to_dict(config),
        "classes": list(classes),
        "freeze_encoder": bool(freeze_encoder),
    }


@dataclass
class TrainedCheckpoint:
    """The model part of a ``gloria train`` checkpoint: task, config, the model's own keys."""

    path: Path
    task: str
    config: GloriaConfig
    state_dict: dict[str, Tensor]
    classes: list[str] = field(default_factory=list)
    freeze_encoder: bool = True
    info: dict[str, Any] = field(default_factory=dict)


def is_training_checkpoint(raw: Any) -> bool:
    """Whether a loaded ``.ckpt`` is one of ``gloria train``'s (not a 2021 release file)."""
    if not isinstance(raw, Mapping) or not isinstance(raw.get("state_dict"), Mapping):
        return False
    if MODEL_INFO_KEY in raw or LEGACY_CONFIG_KEY in raw:
        return True
    keys = [str(k) for k in raw["state_dict"]]
    return (
        bool(keys)
        and all(k.split(".")[0] in _ATTRIBUTES for k in keys)
        and "pytorch-lightning_version" in raw
    )


_ATTRIBUTES = {*MODULE_ATTRIBUTE.values(), "objective", "metric_modules"}


def read_training_checkpoint(path: Path, raw: Mapping[str, Any]) -> TrainedCheckpoint:
    """The model in ``raw`` (a training checkpoint read from ``path`` by the safe reader)."""
    info = _model_info(path, raw)
    task = str(info.get("task", "pretrain"))
    if task not in MODULE_ATTRIBUTE:
        raise ValueError(
            f"{path}: {MODEL_INFO_KEY}.task is {task!r}, expected one of {list(MODULE_ATTRIBUTE)}"
        )
    config_data = info.get("config")
    if not isinstance(config_data, Mapping):
        raise ValueError(
            f"{path}: {MODEL_INFO_KEY}.config must be a mapping, got {type(config_data).__name__}"
        )
    try:
        config = config_from_dict(config_data)
    except ValueError as err:
        raise ValueError(f"{path}: the stored model config is invalid: {err}") from err
    prefix = f"{info.get('attribute', MODULE_ATTRIBUTE[task])}."
    weights = raw["state_dict"]
    state = {str(k)[len(prefix) :]: v for k, v in weights.items() if str(k).startswith(prefix)}
    not_tensors = [k for k, v in state.items() if not isinstance(v, Tensor)]
    if not_tensors:
        raise ValueError(f"{path}: state_dict entries that are not tensors: {not_tensors[:10]}")
    if not state:
        raise ValueError(f"{path}: no state_dict key starts with {prefix!r} (the {task} model's tensors)")
    classes = [str(c) for c in info.get("classes") or []]
    log.info(
        "read %s: a %s run's checkpoint (epoch %s), %d tensors", path, task, raw.get("epoch", "?"), len(state)
    )
    return TrainedCheckpoint(
        path=path,
        task=task,
        config=config,
        state_dict=state,
        classes=classes,
        freeze_encoder=bool(info.get("freeze_encoder", True)),
        info={k: raw[k] for k in ("epoch", "global_step", "pytorch-lightning_version") if k in raw},
    )


def _model_info(path: Path, raw: Mapping[str, Any]) -> Mapping[str, Any]:
    info = raw.get(MODEL_INFO_KEY)
    if isinstance(info, Mapping):
        return info
    if info is not None:
        raise ValueError(f"{path}: {MODEL_INFO_KEY} must be a mapping, got {type(info).__name__}")
    if LEGACY_CONFIG_KEY in raw:
        return {"task": "pretrain", "config": raw[LEGACY_CONFIG_KEY]}
    return _info_from_experiment(path)


def _info_from_experiment(path: Path) -> dict[str, Any]:
    """An older classification / segmentation checkpoint: the run's ``experiment.yaml`` says what it holds."""
    from gloria.training.experiment import load_experiment

    experiment = path.resolve().parent.parent / EXPERIMENT_FILE
    if not experiment.is_file():
        raise ValueError(
            f"{path} is a training checkpoint without a {MODEL_INFO_KEY} entry and no {experiment} next "
            "to it: the model it holds is unknown"
        )
    cfg = load_experiment(experiment, ["model.checkpoint=null"])
    classes = list(cfg.data.classes or [])
    log.info("%s: model described by %s (task %s)", path, experiment, cfg.task)
    return {
        "task": cfg.task,
        "config": to_dict(cfg.gloria_config()),
        "classes": classes,
        "freeze_encoder": cfg.model.freeze_encoder,
    }
