"""Demo stages 2 and 6 through the training runner (``gloria.training.runner``): GLoRIA pretraining on the
SynthCXR image-report CSV, and a short U-Net fine-tune on its SIIM-style masks.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from numpy.typing import NDArray

from gloria.config import preset as model_preset
from gloria.data.chexpert_5x200 import patient_key, without_patients
from gloria.demo.settings import DemoSettings
from gloria.model import GLoRIA
from gloria.pretrained.loading import load_gloria, load_model
from gloria.training.experiment import ExperimentConfig, deep_merge, experiment_from_dict
from gloria.training.runner import run_experiment

log = logging.getLogger(__name__)

REPORTS_CSV = "CheXpert-v1.0/master_updated.csv"
SEG_VALIDATIONS = 5  # validations per U-Net fine-tune (the best validation Dice is tested)


def pretraining_csv(synth_root: Path, zero_shot_paths: list[str], out: Path) -> tuple[Path, list[str]]:
    """A copy of the reports CSV without the 5x200 set's patients (their images are the zero-shot test set).

    Returns the CSV written under ``out`` and the training-split reports (the vocabulary prompts must fit).
    """
    frame = pd.read_csv(synth_root / REPORTS_CSV)
    kept = without_patients(frame, "Path", {patient_key(p) for p in zero_shot_paths})
    out.parent.mkdir(parents=True, exist_ok=True)
    kept.to_csv(out, index=False)
    log.info("pretraining reports: %d of %d rows (5x200 patients removed)", len(kept), len(frame))
    train = kept[kept["Split"].astype(str).str.lower() == "train"]
    return out, train["Report Impression"].fillna("").astype(str).tolist()


def _trainer(settings: DemoSettings) -> dict[str, Any]:
    return {
        "accelerator": "gpu" if settings.device == "cuda" else "cpu",
        "devices": 1,
        "loggers": [],
        "enable_progress_bar": False,
        "deterministic": True,
        "early_stopping_patience": None,
        "num_sanity_val_steps": 0,
        "log_every_n_steps": 5,
    }


def pretrain_config(
    settings: DemoSettings,
    synth_root: Path,
    reports_csv: Path,
    seed: int,
    *,
    name: str = "pretrain",
    alignment: dict[str, float] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> ExperimentConfig:
    """The pretraining experiment: the settings' preset, the filtered reports CSV and its split column.

    ``overrides`` is merged key by key into the experiment dict (e.g. ``{"data": {"full_report": True}}``).
    """
    base = {
        "task": "pretrain",
        "name": name,
        "seed": seed,
        "model": {"preset": settings.preset, "config": {"alignment": _alignment(settings, alignment)}},
        "data": {
            "source": "image_report",
            "root": str(synth_root / "CheXpert-v1.0"),
            "train_csv": str(reports_csv.resolve()),
            "image_root": "..",
            "split_column": "Split",
            "batch_size": settings.pretrain_batch_size,
            "num_workers": 0,
            "full_report": settings.full_report,
        },
        "optim": {"lr": settings.pretrain_lr, "text_lr": settings.pretrain_text_lr},
        "scheduler": {"name": "none"},
        "trainer": {
            **_trainer(settings),
            "max_epochs": settings.pretrain_epochs,
            "gradient_clip_val": 0.25,
        },
        "snapshots": {"enabled": False},
    }
    return experiment_from_dict(deep_merge(base, overrides or {}))


def _alignment(settings: DemoSettings, alignment: dict[str, float] | None) -> dict[str, float]:
    """The settings' ``local_feature_scale`` (when set) under the given alignment keys."""
    out = dict(alignment or {})
    if settings.local_feature_scale is not None:
        out.setdefault("local_feature_scale", settings.local_feature_scale)
    return out


def pretrain(cfg: ExperimentConfig, runs: Path) -> tuple[GLoRIA, dict[str, Any]]:
    """Train with the runner; returns the best-validation-loss model (eval mode) and the run's results."""
    results = run_experiment(cfg, train=True, test=False, out_dir=runs)
    checkpoint = results.get("best_checkpoint") or results.get("last_checkpoint")
    if not checkpoint:
        raise RuntimeError("pretraining wrote no checkpoint")
    model = load_gloria(checkpoint, "cpu")
    if checkpoint != results.get("last_checkpoint"):
        drop_resume_state(results)
    return model, results


def drop_resume_state(results: dict[str, Any]) -> None:
    """Delete a finished run's ``last.ckpt`` (weights plus optimiser state, only needed to resume; the demo
    never resumes): the best checkpoint, weights only, is what the demo and its user reuse."""
    last = results.get("last_checkpoint")
    if last and Path(last).is_file():
        Path(last).unlink()
        results["last_checkpoint"] = None


def random_init_model(cfg: ExperimentConfig) -> GLoRIA:
    """The pretraining's starting point: the preset built right after seeding with the run's seed."""
    import lightning.pytorch as L

    L.seed_everything(cfg.seed, workers=True, verbose=False)
    return GLoRIA(cfg.gloria_config()).eval()


def segmentation_config(
    settings: DemoSettings, synth_root: Path, checkpoint: str | None, seed: int, name: str
) -> ExperimentConfig:
    """U-Net fine-tune on the SIIM-style set for ``settings.seg_steps`` steps, whole images (no crop),
    validated ``SEG_VALIDATIONS`` times."""
    side = model_preset(settings.preset).transforms.crop_size  # a multiple of 32 for every preset
    return experiment_from_dict(
        {
            "task": "segmentation",
            "name": name,
            "seed": seed,
            "model": {
                "preset": settings.preset,
                "checkpoint": checkpoint,
                "config": {"transforms": {"imsize": side, "crop_size": side}},
            },
            "data": {
                "source": "siim",
                "root": str(synth_root / "siim_pneumothorax"),
                "train_csv": "train-rle.csv",
                "balance_train": True,
                "batch_size": settings.seg_batch_size,
                "num_workers": 0,
            },
            "optim": {"lr": settings.seg_lr},
            "scheduler": {"name": "none"},
            "trainer": {
                **_trainer(settings),
                "max_epochs": 1000,
                "max_steps": settings.seg_steps,
                # validation every fifth of the run, whatever the epoch length: at 1% of the labels an epoch
                # is one step, and validating after each would cost more than the training
                "val_check_interval": max(1, math.ceil(settings.seg_steps / SEG_VALIDATIONS)),
                "check_val_every_n_epoch": None,
                "monitor": "val_dice",
                "monitor_mode": "max",
            },
            "snapshots": {"enabled": False},
        }
    )


def empty_test_share(synth_root: Path) -> float:
    """Share of the SIIM-style test images without pneumothorax (the release's 70/15/15 image split):
    the Dice of a model that never predicts a mask."""
    from gloria.data import siim

    images = siim.group_by_image(siim.read_siim_rle(synth_root / "siim_pneumothorax" / "train-rle.csv"))
    test = images[siim.release_split(images).to_numpy() == "test"]
    if test.empty:
        raise ValueError(f"no SIIM-style test images under {synth_root}")
    return float(1.0 - test["positive"].astype(float).mean())


def segment(cfg: ExperimentConfig, runs: Path) -> dict[str, Any]:
    """Fine-tune and test (best validation Dice); returns the runner's results."""
    results = run_experiment(cfg, train=True, test=True, out_dir=runs)
    if results.get("test_checkpoint") != results.get("last_checkpoint"):
        drop_resume_state(results)
    return results


def predicted_masks(
    cfg: ExperimentConfig, checkpoints: Mapping[str, str], *, n: int, seed: int
) -> tuple[list[NDArray[np.float32]], list[NDArray[np.bool_]], dict[str, list[NDArray[np.bool_]]]]:
    """Up to ``n`` test images that have a mask (a seeded draw), as the U-Net sees them: the images (first
    channel), their true masks, and each fine-tuned U-Net's mask at 0.5 ``{name: [mask]}``.

    ``checkpoints`` are the runner's tested checkpoints of ``cfg``'s task (``{name: path}``).
    """
    from gloria.training.datamodules import GloriaDataModule

    if cfg.task != "segmentation":
        raise TypeError(f"predicted_masks needs a segmentation experiment, got task {cfg.task!r}")
    data = GloriaDataModule("segmentation", cfg.data, cfg.gloria_config().transforms, seed=seed, classes=[])
    test = data.dataset("test")
    items: list[dict[str, Any]] = []
    for index in np.random.default_rng(seed).permutation(len(test)):  # type: ignore[arg-type]
        item = test[int(index)]
        if bool(item["mask"].any()):
            items.append(item)
            if len(items) == n:
                break
    images = torch.stack([item["image"] for item in items]) if items else torch.empty(0)
    predictions: dict[str, list[NDArray[np.bool_]]] = {}
    for name, path in checkpoints.items():
        unet = load_model(path, "cpu")  # the fine-tuned U-Net, by the one loader
        with torch.no_grad():
            logits = unet(images) if items else torch.empty(0)
        predictions[name] = [(torch.sigmoid(z[0]) > 0.5).numpy() for z in logits]
    return (
        [item["image"][0].numpy() for item in items],
        [item["mask"][0].numpy() > 0.5 for item in items],
        predictions,
    )
