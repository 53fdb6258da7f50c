"""Benchmark: zero-shot scoring from precomputed embeddings, ours vs a per-text loop like the release's.

Release size: D=768, 19x19 regions, T=97 slots; 1,000 images x 5 classes x 5 prompts (3-12 words each).
Reference: for each prompt, the two-stage attention of its words over every image, cosine per word,
log-sum-exp (the default formula of method.md 5, written as the release's loop over texts). Ours:
``gloria.tasks.zero_shot.zero_shot_scores`` (batched, chunked local scores). Both must give the same class
scores. Each side runs in a fresh process: time and peak RSS above the inputs (``ru_maxrss``).
Also: end-to-end images/s on CPU with the tiny preset (read PNG, preprocess, encode, score).
Writes bench/results/zero_shot[_quick]_threads<N>.json (N = --threads).

    python bench/bench_zero_shot.py [--quick] [--threads 2] [--reps 3] [--out PATH]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from gloria import provenance

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
D, H, W, T = 768, 19, 19, 97
CLASSES, PROMPTS = 5, 5


def _inputs(n_images: int) -> tuple[Any, Any, Any]:
    from gloria.config import AlignmentConfig
    from gloria.tasks.embed import EncodedTexts
    from gloria.tasks.zero_shot import ClassPrompts
    from gloria.types import ImageFeatures, TextFeatures

    g = torch.Generator().manual_seed(0)
    images = ImageFeatures(
        regions=torch.randn(n_images, D, H, W, generator=g), embedding=torch.randn(n_images, D, generator=g)
    )
    K = CLASSES * PROMPTS
    counts = torch.randint(3, 13, (K,), generator=g)
    mask = torch.arange(T)[None] <= counts[:, None]  # CLS + words
    words = torch.randn(K, D, T, generator=g) * mask[:, None]
    text = TextFeatures(words, torch.randn(K, D, generator=g), mask, counts, [[] for _ in range(K)])
    owner = torch.arange(K) // PROMPTS
    prompts = ClassPrompts(
        [f"class{c}" for c in range(CLASSES)],
        [""] * K,
        EncodedTexts(text, [1] * K),
        owner,
        torch.zeros(K, dtype=torch.bool),
    )
    return images, prompts, AlignmentConfig()


def reference_scores(images: Any, prompts: Any, cfg: Any) -> torch.Tensor:
    """Per-text loop (the release's structure) with the default formula; then z-score, mean, max per class.

    Written as a careful user would: the region-major copy of the regions is made once, outside the loop
    (an einsum over ``[N, D, R]`` inside it re-copies the whole region tensor for every prompt)."""
    text = prompts.encoded.features
    N = images.regions.shape[0]
    values = images.regions.reshape(N, D, H * W)  # [N, D, R]
    keys = values.transpose(1, 2).contiguous()  # [N, R, D], once
    local_cols, global_cols = [], []
    for k in range(text.words.shape[0]):
        w = text.words[k][:, text.word_mask[k]]  # [D, n]
        a = keys @ w  # [N, R, n]
        alpha = (cfg.attention_temperature * a.softmax(dim=2)).softmax(dim=1)
        ctx = torch.bmm(values, alpha)  # [N, D, n]
        cos = torch.nn.functional.cosine_similarity(ctx, w[None].expand_as(ctx), dim=1, eps=1e-8)
        local_cols.append(cfg.logit_temperature * torch.logsumexp(cfg.word_temperature * cos, dim=1))
        global_cols.append(
            torch.nn.functional.cosine_similarity(images.embedding, text.embedding[k][None], dim=1)
        )
    loc, glob = torch.stack(local_cols, 1), torch.stack(global_cols, 1)

    def z(x: torch.Tensor) -> torch.Tensor:
        return (x - x.mean(1, keepdim=True)) / x.std(1, keepdim=True, correction=0)

    both = (z(loc) + z(glob)) / 2
    return both.reshape(N, CLASSES, PROMPTS).amax(dim=2)


def _child(kind: str, n_images: int, threads: int, queue: Any) -> None:
    torch.set_num_threads(threads)
    images, prompts, cfg = _inputs(n_images)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    with torch.no_grad():
        if kind == "reference":
            scores = reference_scores(images, prompts, cfg)
        else:
            from gloria.tasks.zero_shot import zero_shot_scores

            scores = zero_shot_scores(images, prompts, cfg, chunk_size=256)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    queue.put(
        {"seconds": seconds, "peak_rss_above_inputs_mib": (peak - base) / 1024, "scores": scores.numpy()}
    )


def _run(kind: str, n_images: int, threads: int) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(kind, n_images, threads, queue))
    proc.start()
    out = queue.get()
    proc.join()
    return dict(out)


def end_to_end(n_images: int) -> dict[str, float]:
    """Tiny preset on CPU: PNG files -> preprocess -> encode -> zero-shot scores; images per second."""
    import cv2
    import numpy as np

    from gloria.config import tiny_config
    from gloria.model import GLoRIA
    from gloria.tasks import embed as E
    from gloria.tasks import zero_shot as Z

    torch.manual_seed(0)
    model = GLoRIA(tiny_config()).eval()
    rng = np.random.default_rng(0)
    prompts = {"Edema": ["mild pulmonary edema", "edema"], "Cardiomegaly": ["cardiomegaly", "enlarged heart"]}
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for i in range(n_images):
            p = Path(tmp) / f"{i}.png"
            cv2.imwrite(str(p), rng.integers(0, 255, (256, 256), dtype=np.uint8))
            paths.append(p)
        start = time.perf_counter()
        feats = E.embed_images(model, paths, batch_size=32, with_regions=True, progress=False).features()
        encoded = Z.encode_class_prompts(model, prompts)
        Z.zero_shot_scores(feats, encoded, model.config.alignment)
        seconds = time.perf_counter() - start
    return {"images": n_images, "seconds": seconds, "images_per_s": n_images / seconds}


def rows_of(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The summary table of bench/run_all.py: one row per method."""
    return [
        {
            "method": "reference per-text loop",
            "seconds_median": result["reference"]["seconds"]["median"],
            "peak_rss_above_inputs_mib": result["reference"]["peak_rss_above_inputs_mib"],
        },
        {
            "method": "ours zero_shot_scores",
            "seconds_median": result["ours"]["seconds"]["median"],
            "peak_rss_above_inputs_mib": result["ours"]["peak_rss_above_inputs_mib"],
            "speedup_median": result["speedup"]["median"],
        },
        {"method": "end to end, tiny preset", "images_per_s": result["end_to_end_tiny_cpu"]["images_per_s"]},
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100 images instead of 1,000")
    parser.add_argument("--threads", type=int, default=2, help="torch threads of each side")
    parser.add_argument("--reps", type=int, default=3, help="reference/ours pairs, run alternately")
    parser.add_argument("--out", type=Path, default=None, help="JSON path (default: by mode, threads)")
    args = parser.parse_args(argv)
    meta = provenance.start(args.threads, root=ROOT)
    out = args.out or RESULTS / f"zero_shot{'_quick' if args.quick else ''}_threads{args.threads}.json"
    n = 100 if args.quick else 1000
    refs, ours_runs = [], []
    for _ in range(args.reps):  # alternate, so machine load falls on both sides alike
        refs.append(_run("reference", n, args.threads))
        ours_runs.append(_run("ours", n, args.threads))
    err = float(abs(refs[0]["scores"] - ours_runs[0]["scores"]).max())
    e2e = end_to_end(32 if args.quick else 128)
    ref_s = provenance.spread([r["seconds"] for r in refs])
    ours_s = provenance.spread([r["seconds"] for r in ours_runs])
    ratio = provenance.spread([r["seconds"] / o["seconds"] for r, o in zip(refs, ours_runs)])
    print(f"zero-shot scoring: {n} images x {CLASSES} classes x {PROMPTS} prompts, D={D}, {H}x{W}, T={T}")
    print(f"{'method':28s} {'seconds (min-max)':>18s} {'peak MiB':>9s}")
    for name, sec, runs in (
        ("reference per-text loop", ref_s, refs),
        ("ours (zero_shot_scores)", ours_s, ours_runs),
    ):
        mib = max(r["peak_rss_above_inputs_mib"] for r in runs)
        print(f"{name:28s} {sec['min']:8.2f}-{sec['max']:<8.2f} {mib:9.1f}")
    print(
        f"speed-up (reference / ours, per pair): {ratio['min']:.2f}-{ratio['max']:.2f}x "
        f"(median {ratio['median']:.2f}); max |score difference|: {err:.2e}"
    )
    print(f"end to end, tiny preset, CPU: {e2e['images_per_s']:.1f} images/s ({e2e['images']} images)")

    def side(runs: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "seconds": provenance.spread([r["seconds"] for r in runs]),
            "peak_rss_above_inputs_mib": max(r["peak_rss_above_inputs_mib"] for r in runs),
        }

    result = {
        "setting": {
            "images": n,
            "classes": CLASSES,
            "prompts_per_class": PROMPTS,
            "D": D,
            "regions": [H, W],
            "T": T,
        },
        "reference": side(refs),
        "ours": side(ours_runs),
        "speedup": ratio,
        "max_abs_score_difference": err,
        "end_to_end_tiny_cpu": e2e,
        "quick": args.quick,
        "threads": args.threads,
        "reps": args.reps,
    }
    result["rows"] = rows_of(result)
    provenance.write(out, result, meta)
    return 0


if __name__ == "__main__":
    sys.exit(main())
