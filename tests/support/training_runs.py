"""Helpers for the training tests: a tiny SynthCXR set generated once per session, and the override lists
that make an end-to-end run take seconds (tiny preset, few batches, CSV logging only)."""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as L
import pytest
import torch

from gloria.data.synth.config import SynthConfig
from gloria.data.synth.generate import generate

SYNTH_N = 48
SYNTH_SIZE = 64

FAST = [
    "trainer.accelerator=cpu",
    "trainer.loggers=[csv]",
    "trainer.enable_progress_bar=false",
    "trainer.log_every_n_steps=1",
    "trainer.limit_val_batches=1",
    "trainer.limit_test_batches=1",
]


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 48-image SynthCXR set at 64 px (CheXpert-style tree, reports CSV, RSNA and SIIM DICOMs)."""
    out = tmp_path_factory.mktemp("synthcxr")
    generate(out, SYNTH_N, seed=0, config=SynthConfig(size=SYNTH_SIZE), progress=False)
    return out


def config_path(name: str) -> Path:
    path = Path(__file__).resolve().parents[2] / "configs" / name
    assert path.is_file(), path
    return path


@pytest.fixture()
def one_thread():
    """One intra-op thread: on a shared 2-core box, two spinning OpenMP threads are many times slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


class InterruptAtEpoch(L.Callback):
    """Raises KeyboardInterrupt at the start of ``epoch`` (what Ctrl-C or a pre-empted job does)."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.current_epoch == self.epoch:
            raise KeyboardInterrupt
