"""Writes checkpoints in the 2021 release's format, as PyTorch-Lightning 1.1 saved them.

A ``.ckpt`` holds ``state_dict`` (keys prefixed ``gloria.``, the old ``position_ids`` buffer included),
``hyper_parameters`` as a *pickled omegaconf DictConfig*, ``hparams_type`` (the DictConfig class),
``callbacks`` keyed by the *class objects* ``pytorch_lightning.callbacks.model_checkpoint.ModelCheckpoint``
and ``...early_stopping.EarlyStopping`` (stand-in classes under those module paths exist only while writing),
Adam ``optimizer_states``, a plateau scheduler, AMP scaler state, ``epoch``, ``global_step`` and
``pytorch-lightning_version``. Tensors can be tagged as saved on ``cuda:0`` without a GPU.

Weights are seeded random; the model layout comes from torchvision / transformers directly, so this writer
does not depend on ``gloria.model``.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import sys
import types
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from unittest import mock

import torch
import torchvision
from omegaconf import DictConfig, OmegaConf
from torch import Tensor
from transformers import BertConfig, BertModel

from gloria.config import TINY_BERT, TINY_VOCAB

RELEASE_BERT = "emilyalsentzer/Bio_ClinicalBERT"
ASSETS = Path(__file__).resolve().parents[2] / "src" / "gloria" / "assets"

# trunk name -> (torchvision builder, pooled feature channels, layer3 channels)
TRUNKS = {
    "resnet50": (torchvision.models.resnet50, 2048, 1024),
    "resnet18": (torchvision.models.resnet18, 512, 256),
    "resnet34": (torchvision.models.resnet34, 512, 256),
}


def release_hyper_parameters(
    *,
    model_name: str = "resnet_50",
    bert_type: str = RELEASE_BERT,
    temps: tuple[float, float, float] = (4.0, 5.0, 10.0),
    word_num: int = 97,
    imsize: int = 256,
    crop_size: int = 224,
    norm: str = "half",
) -> dict[str, Any]:
    """The sections of the release's pretraining configuration that a checkpoint carries."""
    return {
        "experiment_name": "gloria_pretrain_v1",
        "phase": "pretrain",
        "lightning": {
            "trainer": {"gpus": "1", "max_epochs": 50, "precision": 16, "gradient_clip_val": 0.25},
            "checkpoint_callback": {
                "monitor": "val_loss",
                "mode": "min",
                "save_top_k": 10,
                "save_last": True,
            },
            "early_stopping_callback": {"monitor": "val_loss", "min_delta": 0.0, "patience": 10},
            "logger": {"logger_type": "WandbLogger", "project": "gloria_v2"},
        },
        "model": {
            "norm": False,
            "gloria": {
                "local_loss_weight": 1.0,
                "global_loss_weight": 1.0,
                "temp1": temps[0],
                "temp2": temps[1],
                "temp3": temps[2],
            },
            "vision": {"model_name": model_name, "freeze_cnn": False, "pretrained": True},
            "text": {
                "bert_type": bert_type,
                "last_n_layers": 4,
                "aggregate_method": "sum",
                "norm": False,
                "embedding_dim": 768,
                "freeze_bert": False,
                "agg_tokens": True,
            },
        },
        "data": {
            "dataset": "chexpert",
            "text": {"word_num": word_num, "captions_per_image": 5, "full_report": True},
            "image": {"imsize": imsize},
        },
        "transforms": {"norm": norm, "random_crop": {"crop_size": crop_size}},
        "train": {
            "batch_size": 48,
            "optimizer": {"name": "Adam", "weight_decay": 1e-6},
            "scheduler": {"name": "plateau", "monitor": "val_loss", "frequency": 1},
        },
    }


def tiny_bert_config(vocab_file: Path | None = None) -> BertConfig:
    """The tiny preset's BERT with the vocabulary size of ``vocab_file`` (default: the package asset)."""
    vocab = vocab_file or ASSETS / TINY_VOCAB
    n_vocab = sum(1 for line in vocab.read_text(encoding="utf-8").splitlines() if line.strip())
    return BertConfig(vocab_size=n_vocab, **TINY_BERT)


def write_text_model_dir(out_dir: Path, bert_config: BertConfig | None = None) -> Path:
    """A local text-model directory (``config.json``, ``vocab.txt``, tokenizer config) -- no weights."""
    out_dir.mkdir(parents=True, exist_ok=True)
    cfg = bert_config or tiny_bert_config()
    cfg.to_json_file(str(out_dir / "config.json"))
    (out_dir / "vocab.txt").write_text((ASSETS / TINY_VOCAB).read_text(encoding="utf-8"), encoding="utf-8")
    (out_dir / "tokenizer_config.json").write_text(
        json.dumps({"do_lower_case": True, "model_max_length": 512, "tokenizer_class": "BertTokenizer"}),
        encoding="utf-8",
    )
    return out_dir


def random_release_state_dict(
    trunk: str = "resnet50",
    bert_config: BertConfig | None = None,
    *,
    seed: int = 0,
    embed_dims: tuple[int, int] | None = None,
) -> OrderedDict[str, Tensor]:
    """Seeded random weights under our keys (the release's keys without ``gloria.``), no position_ids.

    ``embed_dims`` overrides the (pooled, layer3) input channels of the embedders, e.g. ``(2048, 1024)`` on
    a ResNet-18 trunk reproduces the release's inconsistent ResNet-18 entry.
    """
    torch.manual_seed(seed)
    builder, pooled, mid = TRUNKS[trunk]
    pooled, mid = embed_dims or (pooled, mid)
    cfg = bert_config or tiny_bert_config()
    dim = cfg.hidden_size
    out: OrderedDict[str, Tensor] = OrderedDict()
    trunk_model = builder(weights=None)
    for key, value in trunk_model.state_dict().items():
        if not key.startswith("fc."):
            out[f"img_encoder.model.{key}"] = value
    out["img_encoder.global_embedder.weight"] = torch.randn(dim, pooled) * 0.02
    out["img_encoder.global_embedder.bias"] = torch.randn(dim) * 0.02
    out["img_encoder.local_embedder.weight"] = torch.randn(dim, mid, 1, 1) * 0.02
    bert = BertModel(cfg)
    for key, value in bert.state_dict().items():
        if not key.endswith("position_ids"):
            out[f"text_encoder.model.{key}"] = value
    # non-zero BatchNorm statistics so that a lost buffer would show in outputs
    for key, value in out.items():
        if key.endswith("running_mean"):
            out[key] = torch.randn_like(value) * 0.1
        elif key.endswith("running_var"):
            out[key] = torch.rand_like(value) + 0.5
    return out


def to_release_keys(
    state_dict: Mapping[str, Tensor], *, position_ids: bool = True
) -> OrderedDict[str, Tensor]:
    """Our keys -> the release's: ``gloria.`` prefix, plus the old persistent ``position_ids`` buffer."""
    out: OrderedDict[str, Tensor] = OrderedDict((f"gloria.{k}", v) for k, v in state_dict.items())
    if position_ids:
        n_pos = state_dict["text_encoder.model.embeddings.position_embeddings.weight"].shape[0]
        out["gloria.text_encoder.model.embeddings.position_ids"] = torch.arange(n_pos).unsqueeze(0)
    return out


@contextlib.contextmanager
def lightning_11_classes() -> Iterator[tuple[type, type]]:
    """Stand-in ModelCheckpoint / EarlyStopping classes importable under Lightning 1.1's module paths,
    present only inside the block (the real pytorch_lightning, if installed, is put back afterwards)."""
    names = [
        "pytorch_lightning",
        "pytorch_lightning.callbacks",
        "pytorch_lightning.callbacks.model_checkpoint",
        "pytorch_lightning.callbacks.early_stopping",
    ]
    saved = {name: sys.modules.get(name) for name in names}
    modules = {name: types.ModuleType(name) for name in names}
    checkpoint_cls = type("ModelCheckpoint", (), {"__module__": names[2]})
    early_cls = type("EarlyStopping", (), {"__module__": names[3]})
    modules[names[2]].ModelCheckpoint = checkpoint_cls  # type: ignore[attr-defined]
    modules[names[3]].EarlyStopping = early_cls  # type: ignore[attr-defined]
    modules[names[0]].callbacks = modules[names[1]]  # type: ignore[attr-defined]
    modules[names[1]].model_checkpoint = modules[names[2]]  # type: ignore[attr-defined]
    modules[names[1]].early_stopping = modules[names[3]]  # type: ignore[attr-defined]
    sys.modules.update(modules)
    try:
        yield checkpoint_cls, early_cls
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module


def _adam_states(params: Mapping[str, Tensor], full: bool) -> list[dict[str, Any]]:
    """Adam's state as Lightning saved it: moments for every trainable tensor (or just the first two)."""
    trainable = [v for k, v in params.items() if v.is_floating_point() and "running_" not in k]
    chosen = trainable if full else trainable[:2]
    state = {
        i: {"step": 1000, "exp_avg": torch.zeros_like(p), "exp_avg_sq": torch.full_like(p, 1e-8)}
        for i, p in enumerate(chosen)
    }
    group = {
        "lr": 5e-5,
        "betas": (0.5, 0.999),
        "eps": 1e-8,
        "weight_decay": 1e-6,
        "amsgrad": False,
        "params": list(range(len(trainable))),
    }
    return [{"state": state, "param_groups": [group]}]


@contextlib.contextmanager
def _saved_on(location: str | None) -> Iterator[None]:
    """Make ``torch.save`` record ``location`` (e.g. "cuda:0") as every storage's device tag."""
    if location is None:
        yield
        return
    with mock.patch("torch.serialization.location_tag", lambda storage: location):
        yield


def write_release_checkpoint(
    path: Path,
    state_dict: Mapping[str, Tensor] | None = None,
    *,
    hyper_parameters: Mapping[str, Any] | None = None,
    saved_on: str | None = None,
    full_optimizer_state: bool = False,
    position_ids: bool = True,
) -> Path:
    """Write ``path`` as Lightning 1.1 saved the release's checkpoints.

    ``state_dict`` uses our keys (default: ``random_release_state_dict()``, ResNet-50 + tiny BERT).
    ``saved_on="cuda:0"`` tags every tensor as saved on a GPU. ``full_optimizer_state`` stores Adam moments
    for every weight (the real files' size); the default keeps two, which is enough to exercise the format.
    """
    weights = dict(state_dict) if state_dict is not None else random_release_state_dict()
    hparams: DictConfig = OmegaConf.create(
        copy.deepcopy(dict(hyper_parameters or release_hyper_parameters()))
    )
    with lightning_11_classes() as (checkpoint_cls, early_cls):
        checkpoint: dict[str, Any] = {
            "epoch": 14,
            "global_step": 30255,
            "pytorch-lightning_version": "1.1.4",
            "callbacks": {
                checkpoint_cls: {
                    "monitor": "val_loss",
                    "best_model_score": torch.tensor(2.7183),
                    "best_model_path": "/data/ckpt/gloria_pretrain_v1/epoch=14.ckpt",
                    "current_score": torch.tensor(2.7183),
                    "dirpath": "/data/ckpt/gloria_pretrain_v1",
                },
                early_cls: {
                    "wait_count": 0,
                    "stopped_epoch": 0,
                    "best_score": torch.tensor(2.7183),
                    "patience": 10,
                },
            },
            "optimizer_states": _adam_states(weights, full_optimizer_state),
            "lr_schedulers": [
                {
                    "mode": "min",
                    "factor": 0.5,
                    "patience": 5,
                    "threshold": 1e-4,
                    "cooldown": 0,
                    "cooldown_counter": 0,
                    "min_lrs": [0],
                    "best": 2.7183,
                    "num_bad_epochs": 0,
                    "mode_worse": float("inf"),
                    "eps": 1e-8,
                    "last_epoch": 14,
                }
            ],
            "native_amp_scaling_state": {
                "scale": 65536.0,
                "growth_factor": 2.0,
                "backoff_factor": 0.5,
                "growth_interval": 2000,
                "_growth_tracker": 1200,
            },
            "state_dict": to_release_keys(weights, position_ids=position_ids),
            "hparams_name": "cfg",
            "hyper_parameters": hparams,
            "hparams_type": type(hparams),
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        with _saved_on(saved_on):
            torch.save(checkpoint, path)
    return path


class _RunsCommand:
    """Unpickling this runs a shell command (the attack a pickle file can carry)."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (os.system, (self.command,))


def write_malicious_checkpoint(path: Path, marker: Path, *, legacy_format: bool = False) -> Path:
    """A release-looking checkpoint whose unpickling would create ``marker`` via ``os.system``
    (``legacy_format``: torch's pre-1.6 non-zip container)."""
    payload = {
        "state_dict": {"gloria.img_encoder.global_embedder.bias": torch.zeros(4)},
        "pytorch-lightning_version": "1.1.4",
        "hyper_parameters": {"innocent": _RunsCommand(f"touch {marker}")},
    }
    torch.save(payload, path, _use_new_zipfile_serialization=not legacy_format)
    return path


def write_tiny_release_files(root: Path, *, seed: int = 0) -> dict[str, Path]:
    """A small release-format pair for other tests: ``ckpt`` (ResNet-18 with its real shapes + the tiny
    BERT, hyper-parameters at the tiny preset's sizes: word_num 32, imsize 72, crop 64) and ``text`` (the
    text-model directory to pass as ``text_model=``). Load with ``load_gloria(ckpt, text_model=text)``;
    like every release file it keeps the release's 299-px in-encoder resize."""
    root.mkdir(parents=True, exist_ok=True)
    text = write_text_model_dir(root / "tiny-bert")
    hp = release_hyper_parameters(model_name="resnet_18", word_num=32, imsize=72, crop_size=64)
    weights = random_release_state_dict("resnet18", seed=seed)
    ckpt = write_release_checkpoint(root / "chexpert_resnet18.ckpt", weights, hyper_parameters=hp)
    return {"ckpt": ckpt, "text": text}
