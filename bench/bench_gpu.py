"""Benchmark on a CUDA device: the GLoRIA loss at the release's scale (ours vs the release's loop), and
release-size pretraining steps (ResNet-50 with the 299-px resize + a BERT-base-size text tower, batch 48)
in float32 and under bfloat16 / float16 autocast. Times come from CUDA-synchronised wall clocks (best of
several repeats after a warm-up), memory from ``torch.cuda.max_memory_allocated``. Without a CUDA device it
says so and writes nothing.

    python bench/bench_gpu.py [--quick] [--out bench/results/gpu.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from gloria import provenance

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_loss import make_batch, our_loss, rel_err, release_loop_loss  # noqa: E402
from bench_train import SENTENCES, _release_size_config  # noqa: E402

OUT = HERE / "results" / "gpu.json"


def _sync_time(fn: Callable[[], Any], reps: int) -> tuple[float, Any]:
    """Best synchronised wall time of ``fn`` over ``reps`` runs after one warm-up, and its last output."""
    out = fn()
    torch.cuda.synchronize()
    best = float("inf")
    for _ in range(reps):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        out = fn()
        torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    return best, out


def _loss_and_grads(fn: Callable[[dict[str, Tensor]], Tensor], x: dict[str, Tensor]) -> dict[str, Any]:
    leaves = {k: v.detach().clone().requires_grad_(True) for k, v in x.items() if k != "counts"}
    loss = fn({**leaves, "counts": x["counts"]})
    loss.backward()
    return {"loss": loss.detach(), "grads": {k: v.grad for k, v in leaves.items()}}


def _peak_mib(fn: Callable[[], Any]) -> float:
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    fn()
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - base) / 2**20


def bench_loss(batches: Sequence[int], reps: int) -> list[dict[str, Any]]:
    rows = []
    for B in batches:
        x = {k: v.cuda() for k, v in make_batch(B).items()}
        ours_s, ours = _sync_time(lambda x=x: _loss_and_grads(our_loss, x), reps)
        loop_s, ref = _sync_time(lambda x=x: _loss_and_grads(release_loop_loss, x), max(1, reps // 2))
        errs = [rel_err(ours["grads"][k], ref["grads"][k]) for k in ref["grads"]]
        err = max(rel_err(ours["loss"], ref["loss"]), *errs)
        row = {
            "B": B,
            "loop_ms": 1e3 * loop_s,
            "ours_ms": 1e3 * ours_s,
            "speedup": loop_s / ours_s,
            "max_rel_err": err,
            "loop_peak_mib": _peak_mib(lambda x=x: _loss_and_grads(release_loop_loss, x)),
            "ours_peak_mib": _peak_mib(lambda x=x: _loss_and_grads(our_loss, x)),
        }
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


def bench_train_step(batch: int, steps: int) -> list[dict[str, Any]]:
    from gloria.model import GLoRIA
    from gloria.training.distributed import gathered_gloria_loss

    torch.manual_seed(0)
    cfg = _release_size_config()
    model = GLoRIA(cfg).cuda().train()
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-5, betas=(0.5, 0.999), weight_decay=1e-6)
    crop = cfg.transforms.crop_size
    images = torch.randn(batch, 3, crop, crop, device="cuda")
    tokens = model.process_text([SENTENCES[i % len(SENTENCES)] for i in range(batch)], "cuda")
    rows = []
    for precision, dtype in (("32-true", None), ("bf16-mixed", torch.bfloat16), ("16-mixed", torch.float16)):
        scaler = torch.amp.GradScaler("cuda", enabled=dtype is torch.float16)

        def step(dtype: torch.dtype | None = dtype, scaler: torch.amp.GradScaler = scaler) -> float:
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast("cuda", dtype=dtype or torch.float32, enabled=dtype is not None):
                image = model.encode_images(images)
                text = model.encode_texts(tokens)
                loss = gathered_gloria_loss(image, text, model.alignment)["loss"]
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            return float(loss.detach())

        seconds, loss = _sync_time(step, steps)
        row = {
            "precision": precision,
            "batch": batch,
            "step_ms": 1e3 * seconds,
            "pairs_per_s": batch / seconds,
            "peak_mib": _peak_mib(step),
            "loss": loss,
        }
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="B=48 only, fewer repeats")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("bench_gpu: no CUDA device here; nothing measured, nothing written", flush=True)
        return 0
    meta = provenance.start(None)
    torch.backends.cuda.matmul.allow_tf32 = False  # float32 numbers comparable with the CPU benchmarks
    reps = 3 if args.quick else 10
    loss_rows = bench_loss([48] if args.quick else [48, 96, 192], reps)
    train_rows = bench_train_step(48, reps)
    result = {
        "device": torch.cuda.get_device_name(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "command": "python bench/bench_gpu.py" + (" --quick" if args.quick else ""),
        "note": "loss: local + global forward + backward at the release's scale (D=768, 19x19, T=97); "
        "train: one release-size pretraining step (encoders, loss, backward, Adam)",
        "rows": {
            **{f"loss B={r['B']}": r for r in loss_rows},
            **{f"train {r['precision']}": r for r in train_rows},
        },
    }
    provenance.write(args.out, result, meta)
    print(f"wrote {args.out}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
