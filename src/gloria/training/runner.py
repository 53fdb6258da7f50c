"""Runs an experiment end to end with Lightning: builds data, model, module and trainer; trains (optionally
resuming), tests the best checkpoint, repeats over ``--splits`` seeds 1..N and writes a results JSON per run
plus a summary (mean and standard deviation over splits).
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as L
import torch
from lightning.pytorch.callbacks import Callback, EarlyStopping, LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.loggers import Logger, TensorBoardLogger

from gloria.config import ImageTransformConfig
from gloria.data.synth.writers import atomic_write_bytes
from gloria.model import GLoRIA
from gloria.pretrained.safe_pickle import check_checkpoint, safe_torch_load
from gloria.pretrained.trained import MODEL_INFO_KEY, model_info
from gloria.provenance import mean_sd
from gloria.safe_yaml import load_yaml_file
from gloria.training.callbacks import (
    AttentionSnapshots,
    BatchSeed,
    LossHistory,
    PlateauOnValidation,
    ProgressLog,
)
from gloria.training.checkpoint_io import SafeCheckpointIO
from gloria.training.classify_module import ClassifyModule
from gloria.training.datamodules import GloriaDataModule
from gloria.training.experiment import (
    ExperimentConfig,
    check_run_name,
    save_experiment,
)
from gloria.training.pretrain_module import PretrainModule
from gloria.training.resumable import LastCheckpoint
from gloria.training.run_guards import ContinuingCSVLogger, FiniteLoss, check_resume_settings, run_lock
from gloria.training.segment_module import SegmentModule
from gloria.training.sources import RSNA_CLASS
from gloria.training.speed import apply_encoder_options, resolve_precision

log = logging.getLogger(__name__)

RESULTS_FILE = "results.json"
LAST_NAME = "last"  # checkpoints/last.ckpt, rewritten after every epoch (and every N steps)


# ------------------------------------------------------------------------------------------------ model


def build_gloria(cfg: ExperimentConfig, *, trust: bool = False) -> GLoRIA:
    """The GLoRIA model of the experiment (train mode): the preset (+ overrides), or the weights of
    ``model.checkpoint``, read by the one loader (``gloria.load_gloria``: a registered name, a release
    ``.ckpt``, a converted directory or a ``gloria train`` pretraining checkpoint)."""
    source = cfg.model.checkpoint
    if source is None:
        return GLoRIA(cfg.gloria_config())
    from gloria.pretrained.loading import load_gloria

    log.info("model weights from %s", source)
    return load_gloria(source, "cpu", trust=trust).train()


def task_classes(cfg: ExperimentConfig) -> list[str]:
    if cfg.data.classes:
        return list(cfg.data.classes)
    return [RSNA_CLASS] if cfg.data.source == "rsna" else []


def build_module(cfg: ExperimentConfig, classes: list[str], *, trust: bool = False) -> L.LightningModule:
    """The task's LightningModule around a freshly built (or loaded) model."""
    return module_for(cfg, build_gloria(cfg, trust=trust), classes)


def module_for(cfg: ExperimentConfig, model: GLoRIA, classes: list[str]) -> L.LightningModule:
    """The task's LightningModule around ``model`` (classification and segmentation use its image tower)."""
    m = cfg.model
    options = {"activation_checkpointing": m.activation_checkpointing, "channels_last": m.channels_last}
    apply_encoder_options(model, **options, compile=m.compile)
    if cfg.task == "pretrain":
        return PretrainModule(
            model,
            cfg.optim,
            cfg.scheduler,
            loss=cfg.loss,
            grad_cache_chunks=cfg.trainer.grad_cache_chunks,
            gradient_clip_val=cfg.trainer.gradient_clip_val,
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


class ModelInfo(Callback):
    """Writes ``gloria_model`` (task, model config, classes) into every checkpoint, so that
    ``gloria.load_model`` rebuilds the model from the file alone."""

    def __init__(self, info: dict[str, Any]) -> None:
        self.info = info

    def on_save_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        checkpoint[MODEL_INFO_KEY] = self.info


# ---------------------------------------------------------------------------------------------- trainer


def build_loggers(cfg: ExperimentConfig, run_dir: Path, resume_step: int | None = None) -> list[Logger]:
    """The configured loggers; resuming from ``resume_step`` continues ``logs/metrics.csv``."""
    loggers: list[Logger] = []
    for name in cfg.trainer.loggers:
        if name == "csv":
            loggers.append(ContinuingCSVLogger(run_dir, name="logs", version="", resume_step=resume_step))
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
    cfg: ExperimentConfig,
    run_dir: Path,
    seed: int,
    resume_step: int | None = None,
    *,
    extra: Sequence[Callback] = (),
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
    # (also every trainer.checkpoint_every_n_steps steps and at a max_steps stop: resume anywhere)
    last = LastCheckpoint(run_dir / "checkpoints", LAST_NAME, every_n_steps=t.checkpoint_every_n_steps)
    history = LossHistory()
    callbacks: list[Callback] = [checkpoint, last, history, BatchSeed(seed), FiniteLoss(), *extra]
    if cfg.scheduler.name == "plateau":
        callbacks.append(PlateauOnValidation(cfg.scheduler.monitor))
    if not t.enable_progress_bar:
        callbacks.append(ProgressLog(cfg.name, t.monitor, history))
    if t.early_stopping_patience is not None:
        # checked after each validation only: a run ending at max_steps before its first validation (a
        # quick run shorter than one epoch) then finishes instead of failing on the missing metric
        stopper = EarlyStopping(
            monitor=t.monitor,
            mode=t.monitor_mode,
            patience=t.early_stopping_patience,
            check_on_train_epoch_end=False,
        )
        callbacks.append(stopper)
    loggers = build_loggers(cfg, run_dir, resume_step)
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
        precision=resolve_precision(t.precision, t.accelerator),  # type: ignore[arg-type]
        # gradient caching optimises manually and clips in the module (Lightning refuses both there)
        gradient_clip_val=t.gradient_clip_val if t.grad_cache_chunks == 1 else None,
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
        plugins=[SafeCheckpointIO()],  # atomic writes in the target folder, never NaN weights
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


def check_accelerator(cfg: ExperimentConfig) -> None:
    """``trainer.accelerator`` gpu/cuda on a machine without a visible GPU: a clear error, not Lightning's."""
    wanted = cfg.trainer.accelerator.lower()
    if wanted in ("gpu", "cuda") and not torch.cuda.is_available():
        raise ValueError(
            f"trainer.accelerator={cfg.trainer.accelerator!r} (or --accelerator) but no CUDA GPU is visible "
            "here; use --accelerator cpu or auto"
        )


def _resume_step(ckpt_path: str, *, trust: bool = False) -> int:
    """The global step of the checkpoint to resume from, read with the safe reader (``trust``: in full);
    an unreadable or hostile file raises ``ValueError``."""
    raw = safe_torch_load(ckpt_path, trust=trust)
    if not isinstance(raw, Mapping):
        raise ValueError(f"{ckpt_path} is not a training checkpoint (no 'global_step')")
    step = raw.get("global_step", 0)
    if isinstance(step, torch.Tensor):
        step = int(step)
    if not isinstance(step, int):
        raise ValueError(f"{ckpt_path}: 'global_step' is not an integer ({step!r})")
    return step


def check_resume_config(cfg: ExperimentConfig, ckpt_path: str, run_dir: Path) -> None:
    """Compare ``cfg`` with the ``experiment.yaml`` of the run that wrote the checkpoint (when there is
    one): optimiser and scheduler overrides would be silently undone by the restored state."""
    ckpt = Path(ckpt_path)
    candidates = [ckpt.parent.parent / "experiment.yaml", run_dir / "experiment.yaml"]
    recorded = next((p for p in candidates if p.is_file()), None)
    if recorded is None:
        return
    before = load_yaml_file(recorded)
    if isinstance(before, dict):
        check_resume_settings(before, cfg.to_dict(), recorded)


def run_single(
    cfg: ExperimentConfig,
    *,
    seed: int,
    run_dir: Path,
    train: bool,
    test: bool,
    resume: str | None,
    trust: bool = False,
    callbacks: Sequence[Callback] = (),
) -> dict[str, Any]:
    """One run (one seed) in ``run_dir``; returns and writes its results JSON. The folder is locked while
    the run writes to it: a second run of the same folder is refused. ``callbacks`` are added to the
    trainer's own (e.g. a script's checkpoints at chosen steps).

    Every checkpoint read (``model.checkpoint``, the resume point, the tested one) goes through the safe
    reader; ``trust`` (``--trust``) is the only way to unpickle one in full."""
    with run_lock(run_dir):
        return _run_single(
            cfg,
            seed=seed,
            run_dir=run_dir,
            train=train,
            test=test,
            resume=resume,
            trust=trust,
            callbacks=callbacks,
        )


def _run_single(
    cfg: ExperimentConfig,
    *,
    seed: int,
    run_dir: Path,
    train: bool,
    test: bool,
    resume: str | None,
    trust: bool,
    callbacks: Sequence[Callback] = (),
) -> dict[str, Any]:
    check_accelerator(cfg)
    ckpt_path = resolve_resume(resume, run_dir)
    resume_step = None
    if ckpt_path is not None:
        resume_step = _resume_step(ckpt_path, trust=trust)
        if train:
            check_resume_config(cfg, ckpt_path, run_dir)
    save_experiment(cfg, run_dir / "experiment.yaml")
    if cfg.trainer.cpu_threads is not None:
        torch.set_num_threads(cfg.trainer.cpu_threads)
    L.seed_everything(seed, workers=True, verbose=False)
    classes = task_classes(cfg)
    if cfg.task == "classification" and not classes:
        raise ValueError("classification needs data.classes (the label columns to predict)")
    model = build_gloria(cfg, trust=trust)
    module = module_for(cfg, model, classes)
    info = model_info(cfg.task, model.config, classes=classes, freeze_encoder=cfg.model.freeze_encoder)
    tokenizer = model.text_tokenizer() if cfg.task == "pretrain" else None  # tokenised in the loader workers
    datamodule = GloriaDataModule(
        cfg.task, cfg.data, transforms_of(cfg, module), seed=seed, classes=classes, tokenizer=tokenizer
    )
    records = datamodule.load()
    n_train = len(datamodule.shards["train"]) if "train" in datamodule.shards else len(records.train)
    if train and cfg.task == "pretrain" and n_train < 2:
        raise ValueError(
            f"pretraining needs at least 2 training image-report pairs (the contrastive loss compares each "
            f"image with the other reports: one pair gives a loss of exactly 0); data.train_csv "
            f"{cfg.data.shards or cfg.data.train_csv!r} gives {n_train} after splitting"
        )
    trainer, checkpoint, history, snapshots = build_trainer(
        cfg, run_dir, seed, resume_step, extra=[ModelInfo(info), *callbacks]
    )
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
        if ckpt_path is not None:
            check_checkpoint(ckpt_path, trust=trust)
        trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=not trust)
        if not checkpoint.best_model_path and not trainer.interrupted:
            log.warning(
                "no %s was logged before the run stopped (step %d): no best checkpoint; %s holds the weights",
                cfg.trainer.monitor,
                trainer.global_step,
                last_path,
            )
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
        if test_ckpt is not None:
            check_checkpoint(test_ckpt, trust=trust)
        outputs = trainer.test(module, datamodule=datamodule, ckpt_path=test_ckpt, weights_only=not trust)
        results["test_checkpoint"] = test_ckpt
        results["test_metrics"] = _floats(outputs[0]) if outputs else {}
    results["seconds"] = time.perf_counter() - started
    if trainer.global_rank == 0:
        atomic_write_bytes(run_dir / RESULTS_FILE, json.dumps(results, indent=2, default=str).encode())
    return results


def summarise(runs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Mean and sample standard deviation of every test metric over the runs."""
    keys = sorted({k for r in runs for k in r.get("test_metrics", {})})
    out: dict[str, dict[str, Any]] = {}
    for key in keys:
        values = [r["test_metrics"][key] for r in runs if key in r.get("test_metrics", {})]
        mean, std = mean_sd([v for v in values if math.isfinite(v)])
        out[key] = {"mean": mean, "std": std, "values": values}
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
    trust: bool = False,
    callbacks: Sequence[Callback] = (),
) -> dict[str, Any]:
    """Train and/or test ``config``. ``train_pct`` overrides ``data.train_pct``; ``splits`` > 1 repeats with
    seeds 1..N (each run in ``split_<seed>``) and writes a summary; ``resume`` is a checkpoint path or
    ``"last"``; ``callbacks`` join the trainer's own (one run only: a callback keeps state across a fit).
    Returns the results (one run) or ``{"runs": [...], "summary": {...}}``."""
    if not train and not test:
        raise ValueError("nothing to do: ask for --train and/or --test")
    if splits < 1:
        raise ValueError(f"--splits must be >= 1, got {splits}")
    if train_pct is not None:
        config = config.replace([f"data.train_pct={train_pct}"])
    check_run_name(config.name)  # the run folder stays inside the output folder
    base = Path(out_dir if out_dir is not None else config.out_dir).expanduser() / config.name
    if splits == 1:
        return run_single(
            config,
            seed=config.seed,
            run_dir=base,
            train=train,
            test=test,
            resume=resume,
            trust=trust,
            callbacks=callbacks,
        )
    if callbacks:
        raise ValueError("callbacks are for one run (splits=1): their state would carry across splits")
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
        run = run_single(
            config, seed=seed, run_dir=run_dir, train=train, test=test, resume=split_resume, trust=trust
        )
        runs.append(run)
    stats_by_metric = summarise(runs)
    summary = {
        "task": config.task,
        "name": config.name,
        "splits": splits,
        "summary": stats_by_metric,
        "runs": runs,
    }
    atomic_write_bytes(base / RESULTS_FILE, json.dumps(summary, indent=2, default=str).encode())
    for key, stats in stats_by_metric.items():
        log.info("%s: %.4f +- %.4f over %d splits", key, stats["mean"], stats["std"], splits)
    return summary
