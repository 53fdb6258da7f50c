"""Training callbacks: per-batch reseeding (exact resume), the loss curve for the results JSON, progress log
lines where no progress bar is drawn, and word-to-region attention snapshots (PNG) of validation pairs during
pretraining (method.md section 3).
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections import deque
from pathlib import Path
from typing import Any

import lightning.pytorch as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback

from gloria.alignment.attention import scaled_local_features, two_stage_attention
from gloria.model import GLoRIA
from gloria.training.samplers import draw_seed

log = logging.getLogger(__name__)


class BatchSeed(Callback):
    """Reseed Python, NumPy and torch before every training batch from (seed, epoch, batch index, rank).

    Dropout masks and any other global-RNG draw then depend only on the position in training, never on what
    ran before (validation, checkpointing, a data-loader start, a restart): an interrupted and resumed run
    draws exactly what an uninterrupted one draws.
    """

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        position = batch_idx * 4096 + trainer.global_rank
        value = draw_seed(self.seed, trainer.current_epoch, position) % (2**32)
        random.seed(value)
        np.random.seed(value)
        torch.manual_seed(value)


class PlateauOnValidation(Callback):
    """Steps ReduceLROnPlateau on ``monitor`` right after each validation, before checkpoints are written.

    Lightning steps epoch schedulers after the end-of-epoch checkpoint, so a run resumed from that checkpoint
    would miss one step; stepping here (checkpoint callbacks run last) keeps the saved state complete. The
    modules' ``lr_scheduler_step`` leaves plateau schedulers alone.
    """

    def __init__(self, monitor: str) -> None:
        self.monitor = monitor

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        metric = trainer.callback_metrics.get(self.monitor)
        if metric is None:
            log.warning("scheduler monitor %r was not logged; the learning rate is not stepped", self.monitor)
            return
        for config in trainer.lr_scheduler_configs:
            if isinstance(config.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                config.scheduler.step(float(metric))


class LossHistory(Callback):
    """Keeps the training loss of every optimiser step (``history``) and the validation loss after every
    validation (``validation``: ``[step, val_loss]``) for the results JSON. Both are part of the checkpoint,
    so a resumed run reports the whole curves, not only the resumed steps."""

    def __init__(self) -> None:
        self.history: list[float] = []
        self.validation: list[tuple[int, float]] = []

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        value = trainer.callback_metrics.get("val_loss")
        if not trainer.sanity_checking and isinstance(value, torch.Tensor):
            self.validation.append((int(trainer.global_step), float(value.detach())))

    def state_dict(self) -> dict[str, Any]:
        return {"history": list(self.history), "validation": [list(v) for v in self.validation]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = [float(v) for v in state_dict.get("history", [])]
        self.validation = [(int(step), float(v)) for step, v in state_dict.get("validation", [])]

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if isinstance(loss, torch.Tensor):
            self.history.append(float(loss.detach()))


ETA_WINDOW = 50  # steps whose pace gives the time left (validations in between included)


def seconds_per_step(
    marks: list[tuple[float, int]], now: float, step: int, started: float, start_step: int
) -> float | None:
    """Seconds per optimiser step over the last ``ETA_WINDOW`` steps (``marks``: (time, step) at batch ends,
    oldest first) up to ``now``: a moving pace, not the first steps' (which drifts when the pace changes);
    the average since the start before the window fills."""
    if marks and step > marks[0][1] and len(marks) >= 2:
        return (now - marks[0][0]) / (step - marks[0][1])
    done = step - start_step
    return (now - started) / done if done > 0 else None


class ProgressLog(Callback):
    """Log lines of training progress where no progress bar is drawn (``trainer.enable_progress_bar:
    false``): step and epoch, the mean training loss since the last line, the monitored validation value, and
    the time left, at most every ``every_s`` seconds and after each validation. Rank zero only. The losses
    are those ``history`` keeps (it must come before this callback in the trainer's list).
    """

    def __init__(self, name: str, monitor: str, history: LossHistory, *, every_s: float = 20.0) -> None:
        self.name = name
        self.monitor = monitor
        self.history = history
        self.every_s = every_s
        self._started = 0.0
        self._last = 0.0
        self._start_step = 0
        self._seen = 0  # losses of history.history already reported
        self._marks: deque[tuple[float, int]] = deque(maxlen=ETA_WINDOW)  # (time, step) of recent steps

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._started = self._last = time.perf_counter()
        self._start_step = trainer.global_step  # a resumed run counts its speed from here
        self._seen = len(self.history.history)
        self._marks.clear()

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self._marks.append((time.perf_counter(), trainer.global_step))
        if time.perf_counter() - self._last >= self.every_s:
            self._emit(trainer, validated=False)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._emit(trainer, validated=True)

    def _emit(self, trainer: L.Trainer, *, validated: bool) -> None:
        now = time.perf_counter()
        self._last = now
        losses = self.history.history[self._seen :]
        self._seen = len(self.history.history)
        if not trainer.is_global_zero:
            return
        step, total = trainer.global_step, trainer.estimated_stepping_batches
        parts = [f"{self.name}: step {step}/{total:.0f}, epoch {trainer.current_epoch + 1}"]
        if losses:
            parts.append(f"train loss {sum(losses) / len(losses):.4g}")
        value = trainer.callback_metrics.get(self.monitor)
        if validated and value is not None:
            parts.append(f"{self.monitor} {float(value):.4g}")
        per_step = seconds_per_step(list(self._marks), now, step, self._started, self._start_step)
        if per_step is not None and math.isfinite(total) and total > step:
            parts.append(f"about {per_step * (total - step):.0f} s left")
        log.info(", ".join(parts))


class AttentionSnapshots(Callback):
    """Every ``every_n_epochs`` validation, write ``snapshots/epoch_NNN.png``: for the first ``num_pairs``
    validation pairs, the image and the attention maps [h, w] of its sentence's first words (rank 0 only).
    """

    def __init__(self, out_dir: str | Path, *, every_n_epochs: int = 1, num_pairs: int = 4, words: int = 4):
        self.out_dir = Path(out_dir)
        self.every_n_epochs = every_n_epochs
        self.num_pairs = num_pairs
        self.words = words
        self.written: list[Path] = []

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or trainer.global_rank != 0:
            return
        if trainer.current_epoch % self.every_n_epochs:
            return
        datamodule = getattr(trainer, "datamodule", None)
        if datamodule is None:
            return
        dataset = datamodule.dataset("valid")
        items = [dataset[i] for i in range(min(self.num_pairs, len(dataset)))]
        if not items:
            return
        model = getattr(pl_module, "model", None)
        if not isinstance(model, GLoRIA):
            return
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                images = torch.stack([it["image"] for it in items]).to(pl_module.device)
                tokens = model.process_text([it["text"] for it in items], pl_module.device)
                image = model.encode_images(images)
                text = model.encode_texts(tokens)
                scale = model.alignment.local_feature_scale
                _, attention = two_stage_attention(
                    scaled_local_features(text.words, scale),
                    scaled_local_features(image.regions, scale),
                    text.word_mask,
                    model.alignment.attention_temperature,
                )  # [K, T, h, w]
        finally:
            model.train(was_training)
        path = self.out_dir / f"epoch_{trainer.current_epoch:03d}.png"
        self._plot(path, images.cpu(), attention.float().cpu(), text.word_strings, text.word_mask.cpu())
        self.written.append(path)
        log.info("attention snapshot: %s", path)

    def _plot(
        self,
        path: Path,
        images: torch.Tensor,
        attention: torch.Tensor,
        word_strings: list[list[str]],
        word_mask: torch.Tensor,
    ) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import torch.nn.functional as F

        rows, cols = images.shape[0], 1 + self.words
        fig, axes = plt.subplots(rows, cols, figsize=(2.0 * cols, 2.0 * rows), squeeze=False)
        size = images.shape[-2:]
        for i in range(rows):
            gray = images[i, 0].numpy()
            axes[i, 0].imshow(gray, cmap="gray")
            axes[i, 0].set_title("image", fontsize=7)
            slots = [j for j in range(1, attention.shape[1]) if bool(word_mask[i, j])][: self.words]
            for c in range(1, cols):
                ax = axes[i, c]
                if c - 1 < len(slots):
                    j = slots[c - 1]
                    heat = F.interpolate(attention[i, j][None, None], size=tuple(size), mode="bilinear")[0, 0]
                    ax.imshow(gray, cmap="gray")
                    ax.imshow(heat.numpy(), cmap="jet", alpha=0.45)
                    ax.set_title(word_strings[i][j] if j < len(word_strings[i]) else f"slot {j}", fontsize=7)
            for ax in axes[i]:
                ax.axis("off")
        fig.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=80)
        plt.close(fig)
