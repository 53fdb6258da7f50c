"""Benchmark: zero-shot scoring from precomputed embeddings, ours vs a per-text loop like the release's.

Release size: D=768, 19x19 regions, T=97 slots; 1,000 images x 5 classes x 5 prompts (3-12 words each).
Reference: for each prompt, the two-stage attention of its words over every image, cosine per word,
log-sum-exp (the default formula of method.md 5, written as the release's loop over texts). Ours:
``gloria.tasks.zero_shot.zero_shot_scores`` (batched, chunked local scores). Both must give the same class
scores. Each side runs in a fresh process: time and peak RSS above the inputs (``ru_maxrss``).
Also: end-to-end images/s on CPU with the tiny preset (read PNG, preprocess, encode, score).

    python bench/bench_zero_shot.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

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
    """Per-text loop (the release's structure) with the default formula; then z-score, mean, max per class."""
    text = prompts.encoded.features
    N = images.regions.shape[0]
    values = images.regions.reshape(N, D, H * W)  # [N, D, R]
    local_cols, global_cols = [], []
    for k in range(text.words.shape[0]):
        w = text.words[k][:, text.word_mask[k]]  # [D, n]
        a = torch.einsum("ndr,dj->nrj", values, w)  # [N, R, n]
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


def _child(kind: str, n_images: int, queue: Any) -> None:
    torch.set_num_threads(2)
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


def _run(kind: str, n_images: int) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(kind, n_images, queue))
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
        {"method": "reference per-text loop", **result["reference"]},
        {"method": "ours zero_shot_scores", **result["ours"], "speedup": result["speedup"]},
        {"method": "end to end, tiny preset", "images_per_s": result["end_to_end_tiny_cpu"]["images_per_s"]},
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100 images instead of 1,000")
    args = parser.parse_args(argv)
    n = 100 if args.quick else 1000
    ref = _run("reference", n)
    ours = _run("ours", n)
    err = float(abs(ref["scores"] - ours["scores"]).max())
    e2e = end_to_end(32 if args.quick else 128)
    rows = [
        ("reference per-text loop", ref["seconds"], ref["peak_rss_above_inputs_mib"]),
        ("ours (zero_shot_scores)", ours["seconds"], ours["peak_rss_above_inputs_mib"]),
    ]
    print(f"zero-shot scoring: {n} images x {CLASSES} classes x {PROMPTS} prompts, D={D}, {H}x{W}, T={T}")
    print(f"{'method':28s} {'seconds':>9s} {'peak MiB':>9s}")
    for name, sec, mib in rows:
        print(f"{name:28s} {sec:9.2f} {mib:9.1f}")
    ratio = ref["seconds"] / ours["seconds"]
    print(f"speed-up (reference / ours): {ratio:.2f}x; max |score difference|: {err:.2e}")
    print(f"end to end, tiny preset, CPU: {e2e['images_per_s']:.1f} images/s ({e2e['images']} images)")
    result = {
        "setting": {
            "images": n,
            "classes": CLASSES,
            "prompts_per_class": PROMPTS,
            "D": D,
            "regions": [H, W],
            "T": T,
        },
        "reference": {k: v for k, v in ref.items() if k != "scores"},
        "ours": {k: v for k, v in ours.items() if k != "scores"},
        "speedup": ratio,
        "max_abs_score_difference": err,
        "end_to_end_tiny_cpu": e2e,
        "quick": args.quick,
        "threads": 2,
    }
    result["rows"] = rows_of(result)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "zero_shot.json").write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
