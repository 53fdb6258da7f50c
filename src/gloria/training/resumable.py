"""Resume anywhere (issue 16 item 6): the training loader's position goes into every checkpoint, and
``last.ckpt`` is also written every N optimiser steps and at the last step of a ``max_steps`` run.

Data order and per-sample draws are functions of (seed, epoch, position) (``SeededSampler``, ``BatchSeed``),
so the loader's whole state is two integers: the epoch and how many batches of it the checkpointed run has
consumed. Lightning saves ``state_dict()`` of a train loader that has one and hands it back to
``load_state_dict()`` before the resumed run draws its first batch.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import lightning.pytorch as L
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loops.progress import _ProcessedTracker
from torch.utils.data import DataLoader

from gloria.training.samplers import SeededSampler

log = logging.getLogger(__name__)

STATE_VERSION = 1


def batches_done(trainer: L.Trainer) -> int:
    """Batches of the current epoch that a run resumed from a checkpoint written now will not repeat.

    Lightning's restart rule: a checkpoint written in ``on_train_batch_end`` (batch started and processed,
    not yet completed) counts that batch as done; anywhere else the completed batches count.
    """
    p = cast(_ProcessedTracker, trainer.fit_loop.epoch_loop.batch_progress.current)
    if p.ready == p.started == p.processed == p.completed + 1:
        return int(p.processed)
    return int(p.completed)


class ResumableLoader(DataLoader[Any]):
    """A ``DataLoader`` over a ``SeededSampler`` whose ``state_dict`` is {epoch, batches consumed}.

    ``progress`` returns (batches done in the current epoch, batches per epoch) of the running trainer;
    without it (outside a fit) the state is the start of the sampler's epoch.
    """

    def __init__(self, *args: Any, progress: Callable[[], tuple[int, int]] | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        if not isinstance(self.sampler, SeededSampler):
            raise TypeError(f"ResumableLoader needs a SeededSampler, got {type(self.sampler).__name__}")
        self.progress = progress

    def state_dict(self) -> dict[str, int]:
        assert isinstance(self.sampler, SeededSampler)
        epoch, done = self.sampler.epoch, 0
        if self.progress is not None:
            done, per_epoch = self.progress()
            if done >= per_epoch:  # the epoch is consumed: a resumed run starts the next one
                epoch, done = epoch + 1, 0
        return {"version": STATE_VERSION, "epoch": epoch, "batches": done, "batch_size": self.batch_size or 1}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        assert isinstance(self.sampler, SeededSampler)
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"train loader state of an unknown version in the checkpoint: {state!r}")
        if state["batch_size"] != (self.batch_size or 1):
            raise ValueError(
                f"the checkpoint's train loader had batch size {state['batch_size']}, this run has "
                f"{self.batch_size}: a mid-epoch resume needs the same data.batch_size"
            )
        self.sampler.resume_at(int(state["epoch"]), int(state["batches"]) * int(state["batch_size"]))
        log.info("train data resumes at epoch %d, batch %d", state["epoch"], state["batches"])


def _validation_follows(trainer: L.Trainer) -> bool:
    """Whether Lightning validates right after the current training batch (``val_check_interval``)."""
    loop = trainer.fit_loop.epoch_loop
    fetcher = getattr(trainer.fit_loop, "_data_fetcher", None)
    return fetcher is not None and bool(loop._should_check_val_fx(fetcher))


class LastCheckpoint(ModelCheckpoint):
    """``last.ckpt``: at every epoch end, every ``every_n_steps`` optimiser steps and at a ``max_steps``
    stop. A step save on a batch that validation follows (the last of an epoch, or a ``val_check_interval``
    step) is left to the save after that validation, so the early-stopping and plateau states are the ones
    an uninterrupted run carries on with (a run resumed from a save before it would skip that validation)."""

    def __init__(self, dirpath: Path, filename: str, *, every_n_steps: int | None = None) -> None:
        super().__init__(
            dirpath=dirpath, filename=filename, monitor=None, save_top_k=1, enable_version_counter=False
        )
        self.every_n_steps = every_n_steps

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        if self._should_skip_saving_checkpoint(trainer):
            return
        if trainer.fit_loop.epoch_loop.batch_progress.is_last_batch or _validation_follows(trainer):
            return  # saved after the validation instead (this callback's parent does it)
        step = trainer.global_step
        periodic = self.every_n_steps is not None and step > 0 and step % self.every_n_steps == 0
        final = 0 < trainer.max_steps <= step
        if periodic or final:
            self._save_none_monitor_checkpoint(trainer, self._monitor_candidates(trainer))
