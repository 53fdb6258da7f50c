"""Benchmark: memory of the local loss as the batch grows (kept attention vs blocks recomputed in backward),
and gradient caching against one big batch (equal losses and gradients, peak memory of each).

Each measurement runs in a fresh process with ``--threads`` intra-op threads; peak memory is the growth of
the process's high-water mark (VmHWM) over its resident size once the inputs are built, so the numbers of
one measurement never include another's. CPU only; the loss part uses small features (D 128, 7 x 7
regions, 6-16 words per text) so that the kept-attention path still fits at B = 384.
Writes bench/results/loss_memory.json.

    python bench/bench_loss_memory.py [--quick] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "results" / "loss_memory.json"
D, H, W, T = 128, 7, 7, 24
SENTENCES = [
    "small left pleural effusion with adjacent atelectasis",
    "heart size is mildly enlarged",
    "no pneumothorax is seen",
    "patchy consolidation in the right lower lobe concerning for pneumonia",
    "mild pulmonary edema with interstitial markings",
    "endotracheal tube terminates above the carina",
]


def _status_mib(key: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")  # pragma: no cover - non-Linux


def _local_loss(batch: int, recompute: bool, repeats: int, threads: int, queue: Any) -> None:
    """Fresh process: local loss (both directions) forward + backward at B x B pairs."""
    torch.set_num_threads(threads)
    from gloria.alignment.local import free_memory_bytes, kept_attention_bytes, plan_image_block
    from gloria.alignment.losses import local_loss_terms
    from gloria.config import AlignmentConfig

    g = torch.Generator().manual_seed(batch)
    counts = torch.randint(6, 17, (batch,), generator=g)
    mask = torch.arange(T).unsqueeze(0) <= counts.unsqueeze(1)
    regions = torch.randn(batch, D, H, W, generator=g).requires_grad_()
    words = (torch.randn(batch, D, T, generator=g) * mask.unsqueeze(1)).requires_grad_()
    cfg = AlignmentConfig()
    # warm-up on 2 pairs: lazy imports and first-call allocations (checkpoint's) are not the batch's memory
    warm = local_loss_terms(regions[:2], words[:2], mask[:2], cfg, recompute=recompute)
    (warm[0] + warm[1]).backward()
    del warm
    base = _status_mib("VmRSS")
    seconds, value = [], 0.0
    for _ in range(repeats):
        regions.grad = words.grad = None
        start = time.perf_counter()
        l0, l1 = local_loss_terms(regions, words, mask, cfg, recompute=recompute)
        loss = l0 + l1
        loss.backward()
        seconds.append(time.perf_counter() - start)
        value = float(loss.detach())
    assert regions.grad is not None and words.grad is not None
    longest = int(counts.max()) + 1
    kept = kept_attention_bytes(batch, H * W, batch * longest, torch.float32)
    queue.put(
        {
            "B": batch,
            "mode": "blocked_recompute" if recompute else "full_kept",
            "seconds": seconds,
            "peak_growth_mib": _status_mib("VmHWM") - base,
            "kept_attention_mib_upper_bound": kept / 2**20,
            "auto_would_recompute_here": kept > free_memory_bytes(torch.device("cpu")) // 2,
            "images_per_block": plan_image_block(batch, H * W, longest),
            "loss": value,
            "grad_regions_norm": float(regions.grad.norm()),
            "grad_words_norm": float(words.grad.norm()),
        }
    )


def _grad_cache(batch: int, chunks: int, threads: int, grads_path: str, queue: Any) -> None:
    """Fresh process: one step of the ``small`` preset (eval mode: BatchNorm statistics fixed, no dropout),
    one big batch (chunks = 1) or gradient caching in ``chunks``; gradients saved to ``grads_path``."""
    torch.set_num_threads(threads)
    from gloria.config import preset
    from gloria.model import GLoRIA
    from gloria.training.grad_cache import grad_cache_step
    from gloria.training.objective import PretrainObjective

    torch.manual_seed(0)
    cfg = preset("small")
    model = GLoRIA(cfg).eval()
    objective = PretrainObjective(model)
    crop = cfg.transforms.crop_size
    g = torch.Generator().manual_seed(1)
    texts = [SENTENCES[i % len(SENTENCES)] + ("" if i < len(SENTENCES) else f" {i}") for i in range(batch)]
    data = {"image": torch.randn(batch, 3, crop, crop, generator=g), "text": texts}

    def backward(surrogate: torch.Tensor, last: bool) -> None:
        surrogate.backward()

    def step(inputs: dict[str, Any]) -> dict[str, torch.Tensor]:
        if chunks == 1:
            out = objective(inputs)
            out["loss"].backward()
            return {k: v.detach() for k, v in out.items()}
        return grad_cache_step(objective.encode, objective.loss, inputs, chunks, model, backward)

    step({"image": data["image"][: 2 * chunks], "text": texts[: 2 * chunks]})  # warm-up (lazy allocations)
    model.zero_grad(set_to_none=True)
    base = _status_mib("VmRSS")
    start = time.perf_counter()
    losses = step(data)
    seconds = time.perf_counter() - start
    grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    torch.save(grads, grads_path)
    queue.put(
        {
            "B": batch,
            "chunks": chunks,
            "seconds": seconds,
            "peak_growth_mib": _status_mib("VmHWM") - base,
            "losses": {k: float(v) for k, v in losses.items()},
            "params_with_grad": len(grads),
        }
    )


def _fresh(target: Any, *args: Any) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=target, args=(*args, queue))
    proc.start()
    result: dict[str, Any] = queue.get(timeout=1800)
    proc.join()
    return result


def _rel(a: float, b: float) -> float:
    return abs(a - b) / max(abs(b), 1e-30)


def _grad_agreement(path: str, ref_path: str) -> dict[str, float]:
    got, ref = torch.load(path, weights_only=True), torch.load(ref_path, weights_only=True)
    every = torch.cat([ref[n].flatten() for n in ref])
    mine = torch.cat([got[n].flatten() for n in ref])
    top = float(every.abs().max())
    per = [
        float((got[n] - ref[n]).abs().max() / ref[n].abs().max())
        for n in ref
        if float(ref[n].abs().max()) > 1e-6 * top
    ]
    return {
        "all_gradients_rel_err": float((mine - every).abs().max()) / top,
        "worst_parameter_rel_err": max(per),
    }


def _commit() -> str:
    try:
        sha = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return sha + ("+dirty" if dirty else "")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="B = 48, 96 only; gradient caching at B = 16")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    sizes = [48, 96] if args.quick else [48, 96, 192, 384]
    cache_batch = 16 if args.quick else 32
    load_start = os.getloadavg()

    rows = []
    print(f"{'B':>4} {'mode':<18} {'seconds':>16} {'peak MiB':>9} {'loss':>10}", flush=True)
    for batch in sizes:
        pair = []
        for recompute in (False, True):
            r = _fresh(_local_loss, batch, recompute, 2, args.threads)
            pair.append(r)
            secs = "/".join(f"{s:.2f}" for s in r["seconds"])
            print(
                f"{batch:>4} {r['mode']:<18} {secs:>16} {r['peak_growth_mib']:>9.0f} {r['loss']:>10.4f}",
                flush=True,
            )
        full, blocked = pair
        rows.append(
            {
                "B": batch,
                "full_peak_mib": full["peak_growth_mib"],
                "blocked_peak_mib": blocked["peak_growth_mib"],
                "peak_ratio_full_over_blocked": full["peak_growth_mib"] / blocked["peak_growth_mib"],
                "full_seconds": full["seconds"],
                "blocked_seconds": blocked["seconds"],
                "time_ratio_blocked_over_full": min(blocked["seconds"]) / min(full["seconds"]),
                "loss_rel_diff": _rel(blocked["loss"], full["loss"]),
                "grad_regions_norm_rel_diff": _rel(blocked["grad_regions_norm"], full["grad_regions_norm"]),
                "auto_would_recompute_here": full["auto_would_recompute_here"],
                "runs": pair,
            }
        )
    growth = {
        mode: [rows[i + 1][f"{mode}_peak_mib"] / rows[i][f"{mode}_peak_mib"] for i in range(len(rows) - 1)]
        for mode in ("full", "blocked")
    }
    print("peak growth per doubling of B:", {k: [round(v, 2) for v in vs] for k, vs in growth.items()})

    cache = []
    with tempfile.TemporaryDirectory() as tmp:
        paths = {k: str(Path(tmp) / f"grads_{k}.pt") for k in (1, 2, 4)}
        for chunks in (1, 2, 4):
            cache.append(_fresh(_grad_cache, cache_batch, chunks, args.threads, paths[chunks]))
        big = cache[0]
        for r in cache:
            r["loss_rel_err_vs_big_batch"] = {k: _rel(v, big["losses"][k]) for k, v in r["losses"].items()}
            r.update(_grad_agreement(paths[r["chunks"]], paths[1]))
            r["peak_ratio_vs_big_batch"] = r["peak_growth_mib"] / big["peak_growth_mib"]
            r["time_ratio_vs_big_batch"] = r["seconds"] / big["seconds"]
            print(
                f"grad cache B={r['B']} chunks={r['chunks']}: {r['seconds']:.2f} s, "
                f"peak {r['peak_growth_mib']:.0f} MiB (x{r['peak_ratio_vs_big_batch']:.2f}), "
                f"grads rel err {r['all_gradients_rel_err']:.1e}",
                flush=True,
            )

    result = {
        "bench": "loss_memory",
        "quick": args.quick,
        "commit": _commit(),
        "torch": torch.__version__,
        "threads": args.threads,
        "machine": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "load_average_start": list(load_start),
        "load_average_end": list(os.getloadavg()),
        "local_loss_shape": {"D": D, "regions": [H, W], "T": T, "words_per_text": [6, 16]},
        "peak_growth_per_doubling": growth,
        "rows": rows,
        "grad_cache": {
            "model": "small preset (ResNet-18 at 128 px, 4-layer BERT 128 wide), eval mode",
            "runs": {f"chunks_{r['chunks']}": r for r in cache},
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = args.out.with_suffix(".json.tmp")
    tmp_out.write_text(json.dumps(result, indent=2) + "\n")
    tmp_out.replace(args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
