"""Benchmark: retrieval Precision@K, chunked (ours) vs the whole score matrix at once (reference).

Global: 10,000 images x 10,000 texts, D=768 (cosine), image->text. Local (words only, two-stage attention
over 19x19 regions, T=97, 3-12 words per text): a size the CPU finishes in about a minute. Both sides must
give the same P@1/5/10/100; each runs in a fresh process (time, peak RSS above the inputs via ru_maxrss).

    python bench/bench_retrieval.py [--quick]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from gloria import provenance

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
D, H, W, T = 768, 19, 19, 97
KS = (1, 5, 10, 100)
CLASSES = 5


def _inputs(n: int, local: bool) -> tuple[Any, torch.Tensor]:
    from gloria.tasks.retrieval import RetrievalInputs

    g = torch.Generator().manual_seed(0)
    labels = torch.arange(n) % CLASSES
    protos = torch.randn(CLASSES, D, generator=g)
    img = protos[labels] + 8.0 * torch.randn(n, D, generator=g)  # weakly class-aligned embeddings
    txt = protos[labels] + 8.0 * torch.randn(n, D, generator=g)
    if not local:
        return RetrievalInputs(img, txt), labels
    counts = torch.randint(3, 13, (n,), generator=g)
    mask = torch.arange(T)[None] <= counts[:, None]
    words = torch.randn(n, D, T, generator=g) * mask[:, None]
    regions = torch.randn(n, D, H, W, generator=g)
    return RetrievalInputs(img, txt, regions, words, mask), labels


def _child(kind: str, n: int, similarity: str, chunk: int, queue: Any) -> None:
    torch.set_num_threads(2)
    from gloria.config import AlignmentConfig
    from gloria.tasks.retrieval import evaluate_retrieval

    inputs, labels = _inputs(n, similarity != "global")
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    res = evaluate_retrieval(
        inputs,
        labels,
        labels,
        direction="image_to_text",
        similarity=similarity,  # type: ignore[arg-type]
        alignment=AlignmentConfig(),
        ks=[k for k in KS if k <= n],
        chunk_size=n if kind == "reference" else chunk,
    )
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    queue.put(
        {"seconds": seconds, "peak_rss_above_inputs_mib": (peak - base) / 1024, "precision": res.precision}
    )


def _run(kind: str, n: int, similarity: str, chunk: int) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(kind, n, similarity, chunk, queue))
    proc.start()
    out = queue.get()
    proc.join()
    return dict(out)


def rows_of(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The summary table of bench/run_all.py: one row per similarity and method."""
    rows = []
    for similarity in ("global", "local"):
        r = results[similarity]
        for method, key in (("full matrix", "full_matrix"), ("chunked", "chunked")):
            rows.append(
                {
                    "similarity": similarity,
                    "size": f"{r['n']}x{r['n']}",
                    "method": method,
                    "seconds": r[key]["seconds"],
                    "peak_rss_above_inputs_mib": r[key]["peak_rss_above_inputs_mib"],
                    **{f"P@{k}": v for k, v in r[key]["precision"].items()},
                }
            )
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2,000 (global) and 40 (local) instead")
    args = parser.parse_args(argv)
    meta = provenance.start(2)
    settings = [("global", 2000 if args.quick else 10000, 500), ("local", 40 if args.quick else 150, 16)]
    results: dict[str, Any] = {"quick": args.quick, "threads": 2, "ks": list(KS)}
    print(f"{'similarity':10s} {'N x N':>13s} {'method':22s} {'seconds':>8s} {'peak MiB':>9s}  P@K")
    for similarity, n, chunk in settings:
        ref = _run("reference", n, similarity, chunk)
        ours = _run("ours", n, similarity, chunk)
        if any(abs(ref["precision"][k] - ours["precision"][k]) > 1e-9 for k in ref["precision"]):
            raise RuntimeError(f"{similarity}: chunked P@K {ours['precision']} != full {ref['precision']}")
        for name, r in (("full matrix", ref), (f"chunked ({chunk} queries)", ours)):
            pk = " ".join(f"{k}:{v:.3f}" for k, v in r["precision"].items())
            mib = r["peak_rss_above_inputs_mib"]
            print(f"{similarity:10s} {f'{n}x{n}':>13s} {name:22s} {r['seconds']:8.2f} {mib:9.1f}  {pk}")
        results[similarity] = {
            "n": n,
            "chunk_queries": chunk,
            "full_matrix": ref,
            "chunked": ours,
            "time_ratio_full_over_chunked": ref["seconds"] / ours["seconds"],
            "memory_ratio_full_over_chunked": ref["peak_rss_above_inputs_mib"]
            / max(ours["peak_rss_above_inputs_mib"], 1e-3),
        }
    results["rows"] = rows_of(results)
    RESULTS.mkdir(parents=True, exist_ok=True)
    provenance.write(RESULTS / "retrieval.json", results, meta)
    return 0


if __name__ == "__main__":
    sys.exit(main())
