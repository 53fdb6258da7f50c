"""On a CUDA device (skipped without one): the batched local similarity and the loss agree with the CPU,
bfloat16 / float16 autocast keeps the alignment maths in float32, and pretraining runs end to end on the GPU
in mixed precision with a resume that continues exactly."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch

from gloria.alignment.local import local_scores
from gloria.config import tiny_config
from gloria.model import GLoRIA
from gloria.training import runner
from gloria.training.distributed import gathered_gloria_loss
from gloria.training.experiment import load_experiment
from support.training_runs import InterruptAtEpoch, config_path, synth_root

__all__ = ["synth_root"]
pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


@pytest.fixture(autouse=True)
def _no_tf32():
    before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


def _inputs(device: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    regions = torch.randn(6, 16, 5, 5, generator=gen, dtype=torch.float64)
    words = torch.randn(6, 16, 12, generator=gen, dtype=torch.float64)
    counts = torch.tensor([3, 11, 5, 7, 2, 9])
    mask = torch.arange(12).unsqueeze(0) <= counts.unsqueeze(1)
    return regions.to(device), words.to(device), mask.to(device)


def test_local_scores_on_cuda_match_the_cpu_values_and_gradients() -> None:
    out = {}
    for device in ("cpu", "cuda"):
        regions, words, mask = (t.clone() for t in _inputs(device))
        regions.requires_grad_(True)
        words.requires_grad_(True)
        z = local_scores(regions, words, mask, attention_temperature=4.0, word_temperature=5.0)
        (z * torch.linspace(-1, 1, z.numel(), dtype=z.dtype, device=device).view_as(z)).sum().backward()
        out[device] = (z.detach().cpu(), regions.grad.cpu(), words.grad.cpu())
    for cpu, cuda in zip(out["cpu"], out["cuda"], strict=True):
        torch.testing.assert_close(cuda, cpu, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_mixed_precision_loss_on_cuda_is_close_to_float32(dtype: torch.dtype) -> None:
    torch.manual_seed(0)
    model = GLoRIA(tiny_config()).cuda().eval()
    images = torch.randn(4, 3, 64, 64, device="cuda")
    tokens = model.process_text(
        ["small left effusion", "heart is enlarged", "no pneumothorax", "mild edema"], "cuda"
    )
    with torch.no_grad():
        full = gathered_gloria_loss(model.encode_images(images), model.encode_texts(tokens), model.alignment)
        with torch.autocast("cuda", dtype=dtype):
            image, text = model.encode_images(images), model.encode_texts(tokens)
            half = gathered_gloria_loss(image, text, model.alignment)
    assert image.regions.dtype == dtype  # the encoders ran in half precision ...
    for key in ("loss", "local_loss", "global_loss"):
        assert half[key].dtype == torch.float32  # ... the alignment maths did not
        assert math.isfinite(float(half[key]))
        assert float(half[key]) == pytest.approx(float(full[key]), rel=0.05)


@pytest.mark.parametrize("precision", ["bf16-mixed", "16-mixed"])
def test_pretraining_on_the_gpu_resumes_exactly(
    synth_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, precision: str
) -> None:
    cfg = load_experiment(
        config_path("synth_pretrain_tiny.yaml"),
        [f"data.root={synth_root}/CheXpert-v1.0", "trainer.max_epochs=3", "trainer.limit_train_batches=2",
         "data.batch_size=4", "snapshots.enabled=false", "trainer.accelerator=gpu",
         f"trainer.precision={precision}", "trainer.deterministic=true", "trainer.loggers=[csv]",
         "trainer.enable_progress_bar=false", "trainer.limit_val_batches=1", "trainer.limit_test_batches=1"]
    )  # fmt: skip
    full = runner.run_experiment(cfg, out_dir=tmp_path / "full")
    assert full["epochs"] == 3 and all(math.isfinite(v) for v in full["train_loss_curve"])
    build = runner.build_trainer

    def with_interrupt(*args: Any, **kwargs: Any) -> Any:
        trainer, checkpoint, history, snapshots = build(*args, **kwargs)
        trainer.callbacks.append(InterruptAtEpoch(2))
        return trainer, checkpoint, history, snapshots

    monkeypatch.setattr(runner, "build_trainer", with_interrupt)
    with pytest.raises(SystemExit):
        runner.run_experiment(cfg, out_dir=tmp_path / "cut")
    monkeypatch.setattr(runner, "build_trainer", build)
    resumed = runner.run_experiment(cfg, out_dir=tmp_path / "cut", resume="last")
    assert resumed["global_step"] == full["global_step"] == 6
    assert resumed["train_loss_curve"] == pytest.approx(full["train_loss_curve"][4:], rel=1e-5)
