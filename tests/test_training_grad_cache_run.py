"""Gradient caching through the real entry point (run.py): one process, and Lightning DDP over two CPU
processes (slow), with clipping in the module."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from gloria.cli.train import main as run_py_main
from support.training_runs import FAST, config_path, one_thread, synth_root

__all__ = ["one_thread", "synth_root"]
pytestmark = pytest.mark.usefixtures("one_thread")


def test_pretrain_tiny_with_grad_caching_through_run_py(synth_root: Path, tmp_path: Path) -> None:
    rc = run_py_main(
        ["-c", str(config_path("synth_pretrain_tiny.yaml")), "--train", "--out", str(tmp_path),
         f"data.root={synth_root}/CheXpert-v1.0", "trainer.max_epochs=1", "trainer.limit_train_batches=3",
         "data.batch_size=6", "trainer.grad_cache_chunks=3", "trainer.gradient_clip_val=1.0",
         "snapshots.enabled=false", *FAST]
    )  # fmt: skip
    assert rc == 0
    res = json.loads((tmp_path / "synth_pretrain_tiny" / "results.json").read_text())
    assert res["global_step"] == 3
    assert len(res["train_loss_curve"]) == 3 and all(math.isfinite(v) for v in res["train_loss_curve"])


@pytest.mark.slow
def test_pretrain_ddp_two_cpu_processes_with_grad_caching(synth_root: Path, tmp_path: Path) -> None:
    """Lightning DDP (gloo), negatives gathered, 2 chunks per process: only the last chunk synchronises."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    cmd = [sys.executable, str(root / "run.py"), "-c", str(config_path("synth_pretrain_tiny.yaml")),
           "--train", "--out", str(tmp_path), f"data.root={synth_root}/CheXpert-v1.0",
           "trainer.max_epochs=1", "trainer.limit_train_batches=2", "data.batch_size=4", "trainer.devices=2",
           "trainer.strategy=ddp", "trainer.grad_cache_chunks=2", "snapshots.enabled=false",
           *FAST]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    res = json.loads((tmp_path / "synth_pretrain_tiny" / "results.json").read_text())
    assert res["global_step"] == 2 and all(math.isfinite(v) for v in res["train_loss_curve"])
