"""Faults and hostile input around training (issue 14): run names outside --out, two runs in one folder, the
history after --resume, a full disk while saving, NaN losses and weights, resume overrides, YAML alias bombs,
unclear errors. Each test reproduces the fault; the promise it checks is listed in docs/promises.md."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from gloria.cli.main import main
from gloria.training import runner
from gloria.training.checkpoint_io import NonFiniteError, SafeCheckpointIO, atomic_torch_save
from gloria.training.experiment import load_experiment
from gloria.training.pretrain_module import PretrainModule
from gloria.training.run_guards import RunLockedError, run_lock
from support.training_runs import FAST, config_path, one_thread, synth_root

__all__ = ["one_thread", "synth_root"]

TINY = config_path("synth_pretrain_tiny.yaml")
SRC = str(Path(__file__).resolve().parents[1] / "src")


def _overrides(synth_root: Path, *extra: str) -> list[str]:
    return [f"data.root={synth_root}/CheXpert-v1.0", "trainer.limit_train_batches=2", "data.batch_size=4",
            "snapshots.enabled=false", "trainer.early_stopping_patience=null", *FAST, *extra]  # fmt: skip


# ------------------------------------------------------------------------------------------ config


@pytest.mark.parametrize("name", ["/tmp/elsewhere", "../../x", "a/b", "..", ""])
def test_run_name_outside_out_is_refused(name: str, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    out = tmp_path / "out"
    code = main(["train", "-c", str(TINY), "--out", str(out), f"name={name}"])
    assert code == 1
    assert "config key 'name' must be a single folder name" in caplog.text
    assert not out.exists() and not (tmp_path / "x").exists()


@pytest.mark.parametrize(
    ("override", "key"),
    [("optim.lr=.nan", "optim.lr"), ("optim.lr=.inf", "optim.lr"),
     ("optim.betas=[0.5, .nan]", "optim.betas[1]"), ("trainer.devices=0", "trainer.devices")],
)  # fmt: skip
def test_non_finite_or_zero_settings_are_refused(
    override: str, key: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    assert main(["train", "-c", str(TINY), "--out", str(tmp_path), override]) == 1
    assert f"'{key}'" in caplog.text and str(TINY) in caplog.text
    assert "Traceback" not in caplog.text


def test_devices_zero_flag_is_refused(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    assert main(["train", "-c", str(TINY), "--out", str(tmp_path), "--devices", "0"]) == 1
    assert "'trainer.devices' must be >= 1" in caplog.text


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_accelerator_gpu_without_gpu_is_a_clear_error(
    synth_root: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    args = ["train", "-c", str(TINY), "--out", str(tmp_path), *_overrides(synth_root), "--accelerator", "gpu"]
    assert main(args) == 1
    assert "no CUDA GPU is visible" in caplog.text


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kilobytes


def test_yaml_alias_bomb_is_refused_before_expanding(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]  # 10**9 leaves
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("\n".join([*lines, "task: pretrain"]) + "\n")
    assert bomb.stat().st_size < 600
    before = _peak_rss_mb()
    started = time.perf_counter()
    assert main(["train", "-c", str(bomb), "--out", str(tmp_path)]) == 1
    assert time.perf_counter() - started < 5.0
    assert _peak_rss_mb() - before < 50  # refused while parsing: no expansion
    assert "YAML alias *a0 is not accepted" in caplog.text and "bomb.yaml" in caplog.text


def test_self_referencing_anchor_is_a_clear_error(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cyclic = tmp_path / "cyclic.yaml"
    cyclic.write_text("task: pretrain\nmodel: &m\n  config: *m\n")
    assert main(["train", "-c", str(cyclic), "--out", str(tmp_path)]) == 1
    assert "cyclic.yaml" in caplog.text and "alias *m" in caplog.text and "line 3" in caplog.text


def test_yaml_syntax_error_names_file_and_line(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("task: pretrain\noptim: {lr: [1,\n")
    assert main(["train", "-c", str(broken)]) == 1
    assert "broken.yaml: not valid YAML" in caplog.text and "line" in caplog.text


def test_debug_flag_shows_the_traceback(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO")
    missing = str(tmp_path / "none.yaml")
    assert main(["train", "-c", missing]) == 1  # one line, no traceback
    assert "none.yaml" in caplog.text and "Traceback" not in caplog.text and "--debug" in caplog.text
    with pytest.raises(FileNotFoundError, match=r"none\.yaml"):  # --debug: the exception itself
        main(["--debug", "train", "-c", missing])


def test_read_only_output_folder_is_a_clear_error(
    synth_root: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    if os.geteuid() == 0:
        pytest.skip("root writes into read-only folders")
    out = tmp_path / "ro"
    out.mkdir()
    out.chmod(0o500)
    try:
        assert main(["train", "-c", str(TINY), "--out", str(out), *_overrides(synth_root)]) == 1
    finally:
        out.chmod(0o700)
    assert "Permission denied" in caplog.text and str(out) in caplog.text


def test_output_folder_that_is_a_file_is_a_clear_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "results.txt"
    blocker.write_text("not a folder")
    assert main(["train", "-c", str(TINY), "--out", str(blocker)]) == 1
    assert str(blocker) in caplog.text and "Traceback" not in caplog.text


# ------------------------------------------------------------------------------------------ the run lock

HOLD = """
import sys, time
from pathlib import Path
from gloria.training.run_guards import run_lock
with run_lock(Path(sys.argv[1])):
    print("locked", flush=True)
    time.sleep(120)
"""


def _holder(run_dir: Path) -> subprocess.Popen[str]:
    env = {
        k: v for k, v in os.environ.items() if k not in ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID")
    }
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(run_dir)],
        stdout=subprocess.PIPE,
        text=True,
        env={**env, "PYTHONPATH": SRC},
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
    return proc


def test_second_run_in_the_same_folder_is_refused(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    run_dir = tmp_path / "out" / "synth_pretrain_tiny"
    proc = _holder(run_dir)
    try:
        with pytest.raises(RunLockedError, match=f"pid {proc.pid}"), run_lock(run_dir):
            pass
        code = main(["train", "-c", str(TINY), "--out", str(tmp_path / "out"), "snapshots.enabled=false"])
        assert code == 1 and f"in use by pid {proc.pid}" in caplog.text
        assert not (run_dir / "experiment.yaml").exists()  # nothing of the second run was written
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    # the holder died by kill -9: its lock file stays, but the lock went with it (no stale lock)
    assert (run_dir / ".lock").is_file()
    with run_lock(run_dir):
        assert f"pid {os.getpid()}" in (run_dir / ".lock").read_text()


# ------------------------------------------------------------------------------------------ checkpoints

FULL_DISK = """
import resource, signal, sys, torch
from gloria.training.checkpoint_io import atomic_torch_save
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write fails with EFBIG, as on a full disk with ENOSPC
resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[2]), int(sys.argv[2])))
try:
    atomic_torch_save({"state_dict": {"w": torch.ones(500_000)}, "global_step": 2}, sys.argv[1])
except OSError as err:
    print("OSError", err)
    sys.exit(3)
"""


def test_full_disk_while_saving_keeps_the_previous_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "checkpoints" / "last.ckpt"
    atomic_torch_save({"state_dict": {"w": torch.zeros(10)}, "global_step": 1}, path)
    before = path.read_bytes()
    limit = 1_000_000  # the new checkpoint is about 2 MB: the write fails halfway
    proc = subprocess.run(
        [sys.executable, "-c", FULL_DISK, str(path), str(limit)],
        capture_output=True, text=True, env={**os.environ, "PYTHONPATH": SRC}, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 3, proc.stderr
    assert "could not write checkpoint" in proc.stdout and "previous file is kept" in proc.stdout
    assert path.read_bytes() == before
    assert torch.load(path, weights_only=True)["global_step"] == 1
    assert sorted(p.name for p in path.parent.iterdir()) == ["last.ckpt"]  # no temporary file left


def test_checkpoint_io_refuses_nan_weights(tmp_path: Path) -> None:
    path = tmp_path / "last.ckpt"
    io = SafeCheckpointIO()
    io.save_checkpoint({"state_dict": {"w": torch.ones(3)}, "global_step": 4, "epoch": 1}, path)
    with pytest.raises(NonFiniteError, match=r"weight 'w' is NaN or infinite at step 5"):
        io.save_checkpoint({"state_dict": {"w": torch.tensor([1.0, float("nan")])}, "global_step": 5}, path)
    assert torch.equal(torch.load(path, weights_only=True)["state_dict"]["w"], torch.ones(3))


def test_trainer_writes_checkpoints_through_the_safe_io(synth_root: Path, tmp_path: Path) -> None:
    cfg = load_experiment(TINY, _overrides(synth_root))
    trainer, *_ = runner.build_trainer(cfg, tmp_path, 0)
    assert isinstance(trainer.strategy.checkpoint_io, SafeCheckpointIO)


# ------------------------------------------------------------------------------------------ NaN loss


def _nan_from(step: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """The training loss turns NaN from global step ``step`` (what a diverging run does)."""
    original = PretrainModule.training_step

    def step_fn(self, batch, batch_idx):  # type: ignore[no-untyped-def]
        loss = original(self, batch, batch_idx)
        return loss * float("nan") if self.trainer.global_step >= step else loss

    monkeypatch.setattr(PretrainModule, "training_step", step_fn)


@pytest.mark.usefixtures("one_thread")
def test_nan_loss_stops_the_run_and_keeps_the_last_finite_checkpoint(
    synth_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    _nan_from(3, monkeypatch)  # epoch 0 = steps 0, 1 (checkpointed); NaN in epoch 1, at its second batch
    args = ["train", "-c", str(TINY), "--out", str(tmp_path), *_overrides(synth_root, "trainer.max_epochs=3")]
    assert main(args) == 1
    assert "training loss is nan at step 3 (epoch 1, batch 1)" in caplog.text
    last = tmp_path / "synth_pretrain_tiny" / "checkpoints" / "last.ckpt"
    ckpt = torch.load(last, weights_only=True)
    assert ckpt["global_step"] == 2
    assert all(torch.isfinite(v).all() for v in ckpt["state_dict"].values() if v.is_floating_point())
    assert "Last finite checkpoint:" in caplog.text and str(last) in caplog.text


@pytest.mark.usefixtures("one_thread")
def test_nan_from_the_start_leaves_no_checkpoint(
    synth_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _nan_from(0, monkeypatch)
    cfg = load_experiment(TINY, _overrides(synth_root, "trainer.max_epochs=2"))
    with pytest.raises(NonFiniteError, match="at step 0"):
        runner.run_experiment(cfg, out_dir=tmp_path)
    checkpoints = tmp_path / cfg.name / "checkpoints"
    assert not checkpoints.exists() or not list(checkpoints.iterdir())


# ------------------------------------------------------------------------------------------ resume


@pytest.mark.usefixtures("one_thread")
def test_resume_refuses_an_optimiser_override(
    synth_root: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    base = ["train", "-c", str(TINY), "--out", str(tmp_path), *_overrides(synth_root, "trainer.max_epochs=1")]
    assert main(base) == 0
    recorded = (tmp_path / "synth_pretrain_tiny" / "experiment.yaml").read_text()
    assert main([*base, "trainer.max_epochs=2", "optim.lr=0.01", "--resume"]) == 1
    assert "--resume cannot change optim.lr=0.01 (the run has 0.001)" in caplog.text
    assert (tmp_path / "synth_pretrain_tiny" / "experiment.yaml").read_text() == recorded  # not rewritten
    assert main([*base, "trainer.max_epochs=2", "--resume"]) == 0  # more epochs are fine


@pytest.mark.parametrize("content", [b"", b"\x00garbage" * 100, b"PK\x03\x04" + os.urandom(300)])
def test_resume_from_a_broken_file_is_a_clear_error(
    content: bytes, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    broken = tmp_path / "broken.ckpt"
    broken.write_bytes(content)
    assert main(["train", "-c", str(TINY), "--out", str(tmp_path), "--resume", str(broken)]) == 1
    assert str(broken) in caplog.text and "Traceback" not in caplog.text


def test_truncated_checkpoint_is_a_clear_error(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    good = tmp_path / "good.ckpt"
    torch.save({"state_dict": {"w": torch.ones(1000)}, "global_step": 3}, good)
    cut = tmp_path / "cut.ckpt"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    assert main(["train", "-c", str(TINY), "--out", str(tmp_path), "--resume", str(cut)]) == 1
    assert str(cut) in caplog.text


def test_error_from_a_data_loader_worker_is_one_line() -> None:
    from torch._utils import ExceptionWrapper

    from gloria.cli.main import error_message

    try:
        raise ValueError("truncated JPEG /data/x.jpg: no end-of-image marker (the file is cut short)")
    except ValueError:
        wrapped = ExceptionWrapper(where="in DataLoader worker process 0")
    with pytest.raises(ValueError) as info:
        wrapped.reraise()
    assert "Traceback" in str(info.value)  # what torch hands over
    assert error_message(info.value) == (
        "ValueError: truncated JPEG /data/x.jpg: no end-of-image marker (the file is cut short)"
    )
