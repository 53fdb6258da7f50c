"""Runs an experiment end to end with Lightning: builds data, model, module and trainer; trains (optionally
resuming), tests the best checkpoint, repeats over ``--splits`` seeds 1..N and writes a results JSON per run
plus a summary (mean and standard deviation over splits).
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning.pytorch as L
import torch
from lightning.pytorch.callbacks import Callback, EarlyStopping, LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, Logger, TensorBoardLogger

from gloria.config import GloriaConfig, ImageTransformConfig, config_from_dict
from gloria.model import GLoRIA
from gloria.training.callbacks import (
    AttentionSnapshots,
    BatchSeed,
    LossHistory,
    PlateauOnValidation,
    ProgressLog,
)
from gloria.training.classify_module import ClassifyModule
from gloria.training.datamodules import GloriaDataModule
from gloria.training.experiment import ExperimentConfig, save_experiment
from gloria.training.pretrain_module import PretrainModule
from gloria.training.segment_module import SegmentModule
from gloria.training.sources import RSNA_CLASS

log = logging.getLogger(__name__)

RESULTS_FILE = "results.json"
LAST_NAME = "last"  # checkpoints/last.ckpt, rewritten after every epoch


# ------------------------------------------------------------------------------------------------ model


def read_lightning_checkpoint(path: Path) -> dict[str, Any]:
    """A checkpoint written by this trainer, read with ``weights_only=True`` (never full unpickling)."""
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises UnpicklingError / RuntimeError with long texts
        raise ValueError(f"{path}: not a checkpoint readable with weights_only=True ({err})") from err
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise ValueError(f"{path}: no 'state_dict' in the checkpoint")
    return ckpt


def _is_our_pretrain_checkpoint(path: Path) -> bool:
    if path.suffix != ".ckpt" or not path.is_file():
        return False
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # a release checkpoint needs the safe reader of gloria.pretrained
        return False
    return isinstance(ckpt, dict) and "gloria_config" in ckpt


def build_gloria(cfg: ExperimentConfig) -> GLoRIA:
    """The GLoRIA model of the experiment: the preset (+ overrides), or the weights of ``model.checkpoint``
    (a pretraining checkpoint of this trainer, a registered name, a release ``.ckpt`` or a converted dir)."""
    source = cfg.model.checkpoint
    if source is None:
        return GLoRIA(cfg.gloria_config())
    path = Path(source).expanduser()
    if _is_our_pretrain_checkpoint(path):
        ckpt = read_lightning_checkpoint(path)
        config: GloriaConfig = config_from_dict(ckpt["gloria_config"])
        model = GLoRIA(config)
        state = {k[len("model.") :]: v for k, v in ckpt["state_dict"].items() if k.startswith("model.")}
        result = model.load_state_dict(state, strict=False)
        if result.missing_keys or result.unexpected_keys:
            raise ValueError(
                f"{path}: weights do not fit the model: missing {result.missing_keys[:5]}, "
                f"unexpected {result.unexpected_keys[:5]}"
            )
        log.info("model weights from pretraining checkpoint %s", path)
        return model.train()
    from gloria.pretrained.loading import load_gloria

    return load_gloria(source, device="cpu").train()


def task_classes(cfg: ExperimentConfig) -> list[str]:
    if cfg.data.classes:
        return list(cfg.data.classes)
    return [RSNA_CLASS] if cfg.data.source == "rsna" else []


def build_module(cfg: ExperimentConfig, classes: list[str]) -> L.LightningModule:
    """The task's LightningModule around a freshly built (or loaded) model."""
    model = build_gloria(cfg)
    if cfg.task == "pretrain":
        return PretrainModule(
            model,
            cfg.optim,
            cfg.scheduler,
            gather=cfg.trainer.gather_negatives,
            legacy_word_counts=cfg.model.legacy_word_counts,
            chunk_size=cfg.model.local_chunk_size,
            recompute=cfg.model.local_recompute,
        )
    if cfg.task == "classification":
        from gloria.tasks.classifier import ImageClassifier

        classifier = ImageClassifier(model, num_cls=len(classes), freeze_encoder=cfg.model.freeze_encoder)
        return ClassifyModule(classifier, classes, cfg.optim, cfg.scheduler)
    from gloria.tasks.segmentation_model import build_unet

    return SegmentModule(build_unet(model.img_encoder), cfg.optim, cfg.scheduler)


def transforms_of(cfg: ExperimentConfig, module: L.LightningModule) -> ImageTransformConfig:
    """The preprocessing of the model actually built (a loaded checkpoint brings its own)."""
    model = getattr(module, "model", None)
    if isinstance(model, GLoRIA):
        return model.config.transforms
    return cfg.gloria_config().transforms


# ---------------------------------------------------------------------------------------------- trainer


def build_loggers(cfg: ExperimentConfig, run_dir: Path) -> list[Logger]:
    loggers: list[Logger] = []
    for name in cfg.trainer.loggers:
        if name == "csv":
            loggers.append(CSVLogger(run_dir, name="logs", version=""))
        elif name == "tensorboard":
            loggers.append(TensorBoardLogger(run_dir, name="tensorboard", version=""))
        else:
            try:
                from lightning.pytorch.loggers import WandbLogger

                loggers.append(WandbLogger(project="gloria", name=cfg.name, save_dir=str(run_dir)))
            except ModuleNotFoundError as err:
                raise ValueError("trainer.loggers lists 'wandb' but wandb is not installed") from err
    return loggers


def build_trainer(
    cfg: ExperimentConfig, run_dir: Path, seed: int
) -> tuple[L.Trainer, ModelCheckpoint, LossHistory, AttentionSnapshots | None]:
    t = cfg.trainer
    checkpoint = ModelCheckpoint(
        dirpath=run_dir / "checkpoints",
        filename="best-{epoch:03d}-{step}",
        monitor=t.monitor,
        mode=t.monitor_mode,
        save_top_k=1,
        save_weights_only=True,  # for testing and reuse; resuming reads last.ckpt (optimiser state)
    )
    # Lightning 2.6 writes save_last only when a top-k file was written: a second callback keeps last.ckpt
    last = ModelCheckpoint(
        dirpath=run_dir / "checkpoints",
        filename=LAST_NAME,
        monitor=None,
        save_top_k=1,
        enable_version_counter=False,
    )
    history = LossHistory()
    callbacks: list[Callback] = [checkpoint, last, history, BatchSeed(seed)]
    if cfg.scheduler.name == "plateau":
        callbacks.append(PlateauOnValidation(cfg.scheduler.monitor))
    if not t.enable_progress_bar:
        callbacks.append(ProgressLog(cfg.name, t.monitor, history))
    if t.early_stopping_patience is not None:
        stopper = EarlyStopping(monitor=t.monitor, mode=t.monitor_mode, patience=t.early_stopping_patience)
        callbacks.append(stopper)
    loggers = build_loggers(cfg, run_dir)
    if loggers:
        callbacks.append(LearningRateMonitor(logging_interval="epoch"))
    snapshots = None
    if cfg.task == "pretrain" and cfg.snapshots.enabled:
        snap = cfg.snapshots
        snapshots = AttentionSnapshots(
            run_dir / "snapshots", every_n_epochs=snap.every_n_epochs, num_pairs=snap.num_pairs
        )
        callbacks.append(snapshots)
    trainer = L.Trainer(
        default_root_dir=run_dir,
        max_epochs=t.max_epochs,
        max_steps=t.max_steps,
        accelerator=t.accelerator,
        devices=t.devices,
        num_nodes=t.num_nodes,
        strategy=t.strategy,
        precision=t.precision,
        gradient_clip_val=t.gradient_clip_val,
        accumulate_grad_batches=t.accumulate_grad_batches,
        sync_batchnorm=t.sync_batchnorm,
        limit_train_batches=t.limit_train_batches,
        limit_val_batches=t.limit_val_batches,
        limit_test_batches=t.limit_test_batches,
        val_check_interval=t.val_check_interval,
        check_val_every_n_epoch=t.check_val_every_n_epoch,
        num_sanity_val_steps=t.num_sanity_val_steps,
        log_every_n_steps=t.log_every_n_steps,
        logger=loggers or False,
        callbacks=callbacks,
        enable_progress_bar=t.enable_progress_bar,
        deterministic=t.deterministic,
        use_distributed_sampler=False,  # SeededSampler shards by rank itself (exact resume)
    )
    return trainer, checkpoint, history, snapshots


# ------------------------------------------------------------------------------------------------- runs


def _floats(metrics: Mapping[str, Any]) -> dict[str, float]:
    out: dict[str, float] = {}
    for key, value in metrics.items():
        if (isinstance(value, torch.Tensor) and value.numel() == 1) or isinstance(value, int | float):
            out[key] = float(value)
    return out


def resolve_resume(resume: str | None, run_dir: Path) -> str | None:
    """``"last"`` -> ``<run>/checkpoints/last.ckpt`` (must exist); a path must exist; None: no resume."""
    if resume is None:
        return None
    path = run_dir / "checkpoints" / f"{LAST_NAME}.ckpt" if resume == "last" else Path(resume).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint to resume from not found: {path}")
    return str(path)


def run_single(
    cfg: ExperimentConfig, *, seed: int, run_dir: Path, train: bool, test: bool, resume: str | None
) -> dict[str, Any]:
    """One run (one seed) in ``run_dir``; returns and writes its results JSON."""
    run_dir.mkdir(parents=True, exist_ok=True)
    save_experiment(cfg, run_dir / "experiment.yaml")
    ckpt_path = resolve_resume(resume, run_dir)
    if cfg.trainer.cpu_threads is not None:
        torch.set_num_threads(cfg.trainer.cpu_threads)
    L.seed_everything(seed, workers=True, verbose=False)
    classes = task_classes(cfg)
    if cfg.task == "classification" and not classes:
        raise ValueError("classification needs data.classes (the label columns to predict)")
    module = build_module(cfg, classes)
    datamodule = GloriaDataModule(cfg.task, cfg.data, transforms_of(cfg, module), seed=seed, classes=classes)
    records = datamodule.load()
    trainer, checkpoint, history, snapshots = build_trainer(cfg, run_dir, seed)
    last_path = run_dir / "checkpoints" / f"{LAST_NAME}.ckpt"
    started = time.perf_counter()
    results: dict[str, Any] = {
        "task": cfg.task,
        "name": cfg.name,
        "seed": seed,
        "run_dir": str(run_dir),
        "data": records.info,
        "classes": classes,
    }
    if train:
        trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
        results.update(
            {
                "interrupted": bool(trainer.interrupted),
                "epochs": int(trainer.current_epoch),
                "global_step": int(trainer.global_step),
                "best_checkpoint": checkpoint.best_model_path or None,
                "best_score": float(checkpoint.best_model_score)
                if checkpoint.best_model_score is not None
                else None,
                "last_checkpoint": str(last_path) if last_path.is_file() else None,
                "train_loss_curve": history.history,
                "val_loss_curve": [list(p) for p in history.validation],  # [step, val_loss]
                "fit_metrics": _floats(trainer.callback_metrics),
                "snapshots": [str(p) for p in snapshots.written] if snapshots else [],
            }
        )
    if test and not trainer.interrupted:
        best = checkpoint.best_model_path if train else None
        test_ckpt = best or (ckpt_path if not train else None)
        if test_ckpt is None and train and last_path.is_file():
            test_ckpt = str(last_path)
        outputs = trainer.test(module, datamodule=datamodule, ckpt_path=test_ckpt, weights_only=False)
        results["test_checkpoint"] = test_ckpt
        results["test_metrics"] = _floats(outputs[0]) if outputs else {}
    results["seconds"] = time.perf_counter() - started
    if trainer.global_rank == 0:
        (run_dir / RESULTS_FILE).write_text(json.dumps(results, indent=2, default=str))
    return results


def summarise(runs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Mean and sample standard deviation of every test metric over the runs."""
    keys = sorted({k for r in runs for k in r.get("test_metrics", {})})
    out: dict[str, dict[str, Any]] = {}
    for key in keys:
        values = [r["test_metrics"][key] for r in runs if key in r.get("test_metrics", {})]
        finite = [v for v in values if math.isfinite(v)]
        mean = sum(finite) / len(finite) if finite else float("nan")
        var = sum((v - mean) ** 2 for v in finite) / (len(finite) - 1) if len(finite) > 1 else 0.0
        out[key] = {"mean": mean, "std": math.sqrt(var), "values": values}
    return out


def run_experiment(
    config: ExperimentConfig,
    *,
    train: bool = True,
    test: bool = False,
    train_pct: float | None = None,
    splits: int = 1,
    resume: str | None = None,
    out_dir: str | Path | None = None,
) -> dict[str, Any]:
    """Train and/or test ``config``. ``train_pct`` overrides ``data.train_pct``; ``splits`` > 1 repeats with
    seeds 1..N (each run in ``split_<seed>``) and writes a summary; ``resume`` is a checkpoint path or
    ``"last"``. Returns the results (one run) or ``{"runs": [...], "summary": {...}}``."""
    if not train and not test:
        raise ValueError("nothing to do: ask for --train and/or --test")
    if splits < 1:
        raise ValueError(f"--splits must be >= 1, got {splits}")
    if train_pct is not None:
        config = config.replace([f"data.train_pct={train_pct}"])
    base = Path(out_dir if out_dir is not None else config.out_dir).expanduser() / config.name
    if splits == 1:
        return run_single(config, seed=config.seed, run_dir=base, train=train, test=test, resume=resume)
    if resume not in (None, "last"):
        raise ValueError("with --splits > 1, --resume takes no path (each split resumes its own last.ckpt)")
    runs = []
    for seed in range(1, splits + 1):
        run_dir = base / f"split_{seed}"
        last = run_dir / "checkpoints" / "last.ckpt"
        split_resume = "last" if resume == "last" and last.is_file() else None
        if (run_dir / RESULTS_FILE).is_file() and resume == "last":
            log.info("split %d already finished: %s", seed, run_dir / RESULTS_FILE)
            runs.append(json.loads((run_dir / RESULTS_FILE).read_text()))
            continue
        run = run_single(config, seed=seed, run_dir=run_dir, train=train, test=test, resume=split_resume)
        runs.append(run)
    stats_by_metric = summarise(runs)
    summary = {
        "task": config.task,
        "name": config.name,
        "splits": splits,
        "summary": stats_by_metric,
        "runs": runs,
    }
    (base / RESULTS_FILE).write_text(json.dumps(summary, indent=2, default=str))
    for key, stats in stats_by_metric.items():
        log.info("%s: %.4f +- %.4f over %d splits", key, stats["mean"], stats["std"], splits)
    return summary
