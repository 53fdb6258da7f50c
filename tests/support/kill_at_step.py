"""Run a training experiment and SIGKILL the process right after optimiser step K (what a pre-empted node or
``kill -9`` does: no shutdown, no checkpoint written on the way out).

    python tests/support/kill_at_step.py K CONFIG OUT_DIR [key=value ...]
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

import lightning.pytorch as L
import torch

from gloria.training import runner
from gloria.training.experiment import load_experiment


class KillAtStep(L.Callback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGKILL)


def main(argv: list[str]) -> None:
    step, config, out_dir, *overrides = argv
    torch.set_num_threads(1)
    build = runner.build_trainer

    def with_kill(*args: Any, **kwargs: Any) -> Any:
        trainer, checkpoint, history, snapshots = build(*args, **kwargs)
        trainer.callbacks.append(KillAtStep(int(step)))  # after the checkpoint callbacks
        return trainer, checkpoint, history, snapshots

    runner.build_trainer = with_kill  # type: ignore[assignment]
    runner.run_experiment(load_experiment(config, overrides), out_dir=out_dir)


if __name__ == "__main__":
    main(sys.argv[1:])
