"""What keeps a run's folder honest: one writer at a time (a lock), the loss history kept across
``--resume`` (the CSV log is continued, not deleted), a NaN loss stopping the run, and a resume refusing
optimiser or scheduler settings that the checkpoint's saved state would silently override.
"""

from __future__ import annotations

import csv
import errno
import logging
import math
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import lightning.pytorch as L
import torch
from lightning.fabric.loggers.csv_logs import _ExperimentWriter
from lightning.pytorch.loggers import CSVLogger

from gloria.training.checkpoint_io import NonFiniteError

log = logging.getLogger(__name__)

LOCK_FILE = ".lock"
RANK_VARIABLES = ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID")


class RunLockedError(RuntimeError):
    """Another process is writing the same run folder."""


def launched_as_other_rank() -> bool:
    """True in the processes a distributed launcher starts for ranks other than 0 (they share rank 0's
    folder and must not take its lock)."""
    return any(os.environ.get(name, "0") not in ("", "0") for name in RANK_VARIABLES)


@contextmanager
def run_lock(run_dir: Path) -> Iterator[None]:
    """Hold ``run_dir/.lock`` (an exclusive ``flock``) while the block runs; refuse when another process
    holds it. The kernel drops the lock when its holder dies (kill -9 included), so a left-over file from a
    dead run never blocks the next one. Ranks > 0 of a distributed run skip it."""
    if launched_as_other_rank():
        yield
        return
    import fcntl

    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            if err.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise
            holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "another process"
            raise RunLockedError(
                f"{run_dir} is in use by {holder} (lock {path}); wait for it to finish or choose another "
                "name= or --out"
            ) from err
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


# ------------------------------------------------------------------------------------------ history


class _ContinuingWriter(_ExperimentWriter):
    """Lightning's CSV writer deletes an existing ``metrics.csv``; this one keeps its rows logged before
    ``keep_before`` (the resumed checkpoint's step: later rows are logged again) and appends."""

    def __init__(self, log_dir: str, keep_before: int | None) -> None:
        self._keep_before = keep_before
        super().__init__(log_dir)

    def _check_log_dir_exists(self) -> None:
        path = Path(self.metrics_file_path)
        if self._keep_before is None or not path.is_file():
            super()._check_log_dir_exists()
            return
        with path.open(newline="") as file:
            reader = csv.DictReader(file)
            keys = list(reader.fieldnames or [])
            rows = [r for r in reader if _step(r) is not None and _step(r) < self._keep_before]  # type: ignore[operator]
        tmp = path.with_name(path.name + ".tmp")
        with tmp.open("w", newline="") as file:
            writer = csv.DictWriter(file, fieldnames=keys)
            writer.writeheader()
            writer.writerows(rows)
        os.replace(tmp, path)
        self.metrics_keys = sorted(keys)
        log.info("continuing %s: %d earlier rows kept (steps < %d)", path, len(rows), self._keep_before)


def _step(row: dict[str, str]) -> int | None:
    try:
        return int(float(row.get("step") or ""))
    except ValueError:
        return None


class ContinuingCSVLogger(CSVLogger):
    """``CSVLogger`` that continues ``metrics.csv`` when resuming from a checkpoint at ``resume_step``."""

    def __init__(self, save_dir: str | Path, *, resume_step: int | None, **kwargs: Any) -> None:
        super().__init__(save_dir, **kwargs)
        self._resume_step = resume_step

    @property
    def experiment(self) -> _ExperimentWriter:
        if self._experiment is None:
            os.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _ContinuingWriter(self.log_dir, self._resume_step)
        return self._experiment


# ------------------------------------------------------------------------------------------ finite loss


class FiniteLoss(L.Callback):
    """Stops training at the first NaN or infinite training loss, naming the step. The error is raised
    before any checkpoint of the step is written, so ``last.ckpt`` and the best checkpoint keep the last
    finite weights (and a run that is NaN from its first step leaves no checkpoint)."""

    def __init__(self) -> None:
        self._step = 0

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        self._step = trainer.global_step  # the step whose loss this batch computes

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if not isinstance(loss, torch.Tensor):
            return
        value = float(loss.detach())
        if not math.isfinite(value):
            paths = [
                getattr(callback, name, "")
                for callback in trainer.checkpoint_callbacks
                for name in ("best_model_path", "last_model_path")
            ]
            kept = {str(path) for path in paths if path and Path(path).is_file()}
            ckpt = ", ".join(sorted(kept)) or "none written yet"
            raise NonFiniteError(
                f"training loss is {value} at step {self._step} (epoch {trainer.current_epoch}, "
                f"batch {batch_idx}); training stopped. Last finite checkpoint: {ckpt}. Try a lower optim.lr "
                "or trainer.gradient_clip_val"
            )


# ------------------------------------------------------------------------------------------ resume

RESUME_FIXED = ("optim", "scheduler")  # restored from the checkpoint's state, so an override would be lost


def check_resume_settings(before: dict[str, Any], now: dict[str, Any], source: Path) -> None:
    """Refuse to resume when ``optim`` or ``scheduler`` settings differ from the run being resumed (the
    checkpoint restores the optimiser and scheduler state, which would silently keep the old values)."""
    changed = []
    for section in RESUME_FIXED:
        old, new = before.get(section), now.get(section)
        if not isinstance(old, dict) or not isinstance(new, dict):
            continue
        for key in sorted(set(old) & set(new)):  # keys of one version only: nothing to compare
            if old[key] != new[key]:
                changed.append(f"{section}.{key}={new.get(key)!r} (the run has {old.get(key)!r})")
    if changed:
        raise ValueError(
            f"--resume cannot change {', '.join(changed)}: the checkpoint restores the optimiser and "
            f"scheduler state recorded in {source}, which would keep the old values. Resume without these "
            "overrides, or start a new run with another name= or --out"
        )
