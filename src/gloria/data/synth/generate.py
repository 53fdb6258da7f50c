"""SynthCXR orchestration: generate a data set in chunks across processes, resumably, with progress.

Chunk k covers images [k * chunk_size, (k + 1) * chunk_size); its ground-truth records are kept in
``.synthcxr_parts/`` so a re-run regenerates only chunks with missing files and rewrites the tables.
"""

from __future__ import annotations

import json
import logging
import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import cv2
from tqdm.auto import tqdm

from gloria.data.synth.case import make_case
from gloria.data.synth.config import SynthConfig
from gloria.data.synth.records import case_record
from gloria.data.synth.writers import atomic_write_bytes, case_paths, write_case_files, write_tables

log = logging.getLogger(__name__)

MANIFEST_FILE = "synthcxr.json"
PARTS_DIR = ".synthcxr_parts"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class SynthSummary:
    """What a ``generate`` call did: sizes, chunks regenerated, files written, timing and table rows."""

    out: Path
    n: int
    seed: int
    chunks_total: int
    chunks_generated: int
    files_written: int
    seconds: float
    counts: dict[str, int] = field(default_factory=dict)
    label_positives: dict[str, int] = field(default_factory=dict)


def _run_chunk(
    out: str, seed: int, cfg_dict: dict[str, Any], start: int, end: int
) -> tuple[list[dict[str, Any]], int]:
    """Worker: generate images [start, end), write their missing files; returns (records, files written)."""
    cv2.setNumThreads(1)
    cfg = SynthConfig.from_dict(cfg_dict)
    root = Path(out)
    records: list[dict[str, Any]] = []
    written = 0
    for index in range(start, end):
        case = make_case(seed, index, cfg)
        record = case_record(case, cfg)
        written += write_case_files(case, record, root, cfg)
        records.append(record)
    return records, written


def _part_path(out: Path, chunk: int) -> Path:
    return out / PARTS_DIR / f"part-{chunk:06d}.jsonl"


def _load_complete_part(out: Path, chunk: int, expected: int) -> list[dict[str, Any]] | None:
    """Records of a finished chunk whose files all exist, else None (the chunk must be regenerated)."""
    path = _part_path(out, chunk)
    if not path.exists():
        return None
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
    if len(records) != expected:
        return None
    if not all((out / rel).exists() for r in records for rel in case_paths(r)):
        return None
    return records


def _check_manifest(out: Path, seed: int, cfg: SynthConfig) -> None:
    path = out / MANIFEST_FILE
    if not path.exists():
        return
    try:
        old = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from err
    if old.get("seed") != seed or old.get("config") != cfg.to_dict() or old.get("version") != FORMAT_VERSION:
        raise ValueError(
            f"{path}: the folder holds a SynthCXR set with another seed or config "
            f"(seed {old.get('seed')} vs {seed}); use a new --out folder or delete this one"
        )


def generate(
    out: str | Path,
    n: int,
    seed: int = 0,
    config: SynthConfig | None = None,
    *,
    workers: int = 1,
    progress: bool = True,
) -> SynthSummary:
    """Generate (or complete) a SynthCXR set of ``n`` images under ``out``; see docs/synthcxr.md."""
    if n < 1:
        raise ValueError(f"generate: n must be >= 1, got {n}")
    if workers < 1:
        raise ValueError(f"generate: workers must be >= 1, got {workers}")
    cfg = config or SynthConfig()
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    _check_manifest(root, seed, cfg)
    t0 = time.perf_counter()
    size = cfg.chunk_size
    chunks = [(k, k * size, min(n, (k + 1) * size)) for k in range((n + size - 1) // size)]
    records: dict[int, list[dict[str, Any]]] = {}
    todo = []
    for k, start, end in chunks:
        done = _load_complete_part(root, k, end - start)
        if done is None:
            todo.append((k, start, end))
        else:
            records[k] = done
    log.info("SynthCXR: %d images, %d of %d chunks to generate in %s", n, len(todo), len(chunks), root)
    written = 0
    bar = tqdm(total=sum(e - s for _, s, e in todo), unit="img", desc="synthcxr", disable=not progress)

    def finish(k: int, result: tuple[list[dict[str, Any]], int]) -> None:
        nonlocal written
        recs, files = result
        written += files
        records[k] = recs
        text = "".join(json.dumps(r, sort_keys=True) + "\n" for r in recs)
        atomic_write_bytes(_part_path(root, k), text.encode("utf-8"))
        bar.update(len(recs))

    cfg_dict = cfg.to_dict()
    if workers == 1 or len(todo) <= 1:
        for k, start, end in todo:
            finish(k, _run_chunk(str(root), seed, cfg_dict, start, end))
    else:
        with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
            futures = {pool.submit(_run_chunk, str(root), seed, cfg_dict, s, e): k for k, s, e in todo}
            for future in as_completed(futures):
                finish(futures[future], future.result())
    bar.close()
    all_records = [r for k, _, _ in chunks for r in records[k]]
    counts = write_tables(all_records, root, seed, cfg)
    positives: dict[str, int] = {}
    for r in all_records:
        for label, value in r["labels"].items():
            if value == 1.0:
                positives[label] = positives.get(label, 0) + 1
    manifest = {"version": FORMAT_VERSION, "seed": seed, "n": n, "config": cfg_dict, "counts": counts}
    atomic_write_bytes(
        root / MANIFEST_FILE, (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode("utf-8")
    )
    seconds = time.perf_counter() - t0
    log.info("SynthCXR: wrote %d files in %.1f s (%s)", written, seconds, os.fspath(root))
    return SynthSummary(
        root, n, seed, len(chunks), len(todo), written, seconds, counts, dict(sorted(positives.items()))
    )
