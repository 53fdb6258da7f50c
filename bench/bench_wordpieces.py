"""Benchmark: word-piece aggregation, the release's per-token Python loop (reference) vs our index-add.

Reference, structured like the release (method.md section 2): per text, walk the tokens, keep a bank of piece
vectors, ``torch.stack(...).sum`` each word, append [SEP], pad with zero vectors and "[PAD]".
Ours: ``gloria.encoders.wordpieces.WordPieceAggregator``. Both on [B, L, T, H] = [48, 4, 97, 768] float32.

    python bench/bench_wordpieces.py [--quick]
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from transformers import BertTokenizer

from gloria import provenance
from gloria.encoders.text import resolve_vocab_file
from gloria.encoders.wordpieces import WordPieceAggregator

RESULTS = Path(__file__).resolve().parent / "results"
WORDS = [
    "no",
    "acute",
    "cardiopulmonary",
    "process",
    "the",
    "heart",
    "size",
    "is",
    "normal",
    "lungs",
    "are",
    "clear",
    "there",
    "is",
    "a",
    "small",
    "left",
    "pleural",
    "effusion",
    "with",
    "adjacent",
    "atelectasis",
    "mild",
    "pulmonary",
    "edema",
    "bibasilar",
    "opacities",
    "consolidation",
    "pneumothorax",
    "cardiomegaly",
    "unchanged",
    "since",
    "prior",
    "examination",
    "xyzqq",
    "hyperinflated",
    "emphysematous",
    "retrocardiac",
]


def reference_loop(embeddings: torch.Tensor, ids: torch.Tensor, idx_to_word: dict[int, str]) -> tuple:
    """The release's structure: embeddings [B, L, T, H] -> ([B, L, T, H], words per text)."""
    _, L, T, H = embeddings.shape
    per_token = embeddings.permute(0, 2, 1, 3)  # [B, T, L, H]
    out, all_words = [], []
    for embs, caption in zip(per_token, ids):
        agg, bank, word_bank, words = [], [], [], []
        for emb, token_id in zip(embs, caption):
            word = idx_to_word[token_id.item()]
            if word == "[SEP]":
                agg.append(torch.stack(bank).sum(dim=0))
                words.append("".join(word_bank))
                agg.append(emb)
                words.append(word)
                break
            if not word.startswith("##"):
                if word_bank:
                    agg.append(torch.stack(bank).sum(dim=0))
                    words.append("".join(word_bank))
                bank, word_bank = [emb], [word]
            else:
                bank.append(emb)
                word_bank.append(word[2:])
        stacked = torch.stack(agg)  # [n, L, H]
        pad = T - stacked.shape[0]
        out.append(torch.cat([stacked, torch.zeros(pad, L, H, dtype=stacked.dtype)]))
        all_words.append(words + ["[PAD]"] * pad)
    return torch.stack(out).permute(0, 2, 1, 3), all_words


def make_ids(tokenizer: BertTokenizer, batch: int, length: int, seed: int = 0) -> torch.Tensor:
    rng = random.Random(seed)
    texts = [" ".join(rng.choices(WORDS, k=rng.randint(3, 60))) for _ in range(batch)]
    return tokenizer(texts, padding="max_length", truncation=True, max_length=length, return_tensors="pt")[
        "input_ids"
    ]


def _vm(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def peak_rss_mib(fn: Callable[[], Any], warmup: Callable[[], Any]) -> float | None:
    """Peak resident memory of one call of ``fn`` above the level before it, measured in a forked child
    (fresh heap state: Linux VmHWM after resetting it through /proc/self/clear_refs); None elsewhere.
    ``warmup`` (the same code on one short text) first loads the kernels, which is not the method's memory."""
    if not hasattr(os, "fork") or not Path("/proc/self/clear_refs").exists():
        return None
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        value = -1.0
        try:
            warmup()
            Path("/proc/self/clear_refs").write_text("5")
            before = _vm("VmRSS")
            fn()
            peak = _vm("VmHWM")
            if before is not None and peak is not None:
                value = max(peak - before, 0) / 2**20
        finally:
            os.write(write_end, str(value).encode())
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        text = pipe.read()
    os.waitpid(pid, 0)
    value = float(text) if text else -1.0
    return None if value < 0 else round(value, 1)


def timed(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    result = fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="B=8 and fewer repeats (seconds)")
    args = parser.parse_args(argv)
    meta = provenance.start(1)
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(1)
    B, L, T, H = (8 if args.quick else 48), 4, 97, 768
    repeats = 2 if args.quick else 5

    tokenizer = BertTokenizer(vocab=str(resolve_vocab_file("cxr_vocab.txt")), do_lower_case=True)
    idx_to_word = {i: t for t, i in tokenizer.get_vocab().items()}
    ids = make_ids(tokenizer, B, T)
    torch.manual_seed(0)
    hidden = torch.randn(B, L, T, H)
    aggregator = WordPieceAggregator.from_tokenizer(tokenizer)

    # memory first, each in a forked child, before any run has left freed buffers in this process's heap
    small_h, small_ids = hidden[:1, :, :8].clone(), ids[:1, :8].clone()
    mem_ref = peak_rss_mib(
        lambda: reference_loop(hidden, ids, idx_to_word),
        lambda: reference_loop(small_h, small_ids, idx_to_word),
    )
    mem_ours = peak_rss_mib(lambda: aggregator(hidden, ids), lambda: aggregator(small_h, small_ids))
    t_ref, (ref_vectors, ref_words) = timed(lambda: reference_loop(hidden, ids, idx_to_word), repeats)
    t_ours, ours = timed(lambda: aggregator(hidden, ids), repeats)
    max_abs = float((ours.vectors - ref_vectors).abs().max())
    words_equal = ours.word_strings == ref_words
    with torch.no_grad():  # float64 exactness check on the same inputs
        h64 = hidden.double()
        max_abs64 = float(
            (aggregator(h64, ids).vectors - reference_loop(h64, ids, idx_to_word)[0]).abs().max()
        )

    rows = [
        {"impl": "release loop", "seconds": round(t_ref, 5), "peak_rss_mib": mem_ref},
        {"impl": "ours (index_add)", "seconds": round(t_ours, 5), "peak_rss_mib": mem_ours},
    ]
    result = {
        "shape_BLTH": [B, L, T, H],
        "quick": args.quick,
        "threads": 1,
        "load_average_1min": round(os.getloadavg()[0], 2),  # other work on the machine skews timings
        "speedup": round(t_ref / t_ours, 1),
        "max_abs_diff_float32": max_abs,
        "max_abs_diff_float64": max_abs64,
        "word_strings_equal": words_equal,
        "rows": rows,
    }
    print(f"word-piece aggregation, [B, L, T, H] = {[B, L, T, H]}, 1 thread")
    print(f"{'impl':<20}{'seconds':>10}{'peak RSS MiB':>14}")
    for row in rows:
        mem = "n/a" if row["peak_rss_mib"] is None else f"{row['peak_rss_mib']:.1f}"
        print(f"{row['impl']:<20}{row['seconds']:>10.4f}{mem:>14}")
    print(f"speedup x{result['speedup']}; max|diff| f32 {max_abs:.2e}, f64 {max_abs64:.2e}")
    print(f"word strings equal: {words_equal}")
    RESULTS.mkdir(exist_ok=True)
    provenance.write(RESULTS / "wordpieces.json", result, meta)
    return 0 if words_equal and max_abs64 < 1e-10 else 1


if __name__ == "__main__":
    raise SystemExit(main())
