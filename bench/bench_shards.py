"""Benchmark: training samples per second from JPEG files (the CSV path: decode, resize, crop, normalise and
tokenise in every access) against litdata shards (image stored once at the model's imsize as uint8), both
through a DataLoader with 2 workers, the same records, sampler and batch size; arms alternate.

Images: synthetic 12-bit radiographs (``bench_data.synthetic_radiograph``) saved as 8-bit JPEGs at
``--size`` px (MIMIC-CXR-JPG's are about 2,500 px). The one-off shard writing is timed apart.
Writes bench/results/shards.json (commit, torch, threads, load average).

    python bench/bench_shards.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import torch
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_data import synthetic_radiograph
from bench_pipeline import RESULTS, environment

REPORTS = [
    "Small left pleural effusion. Heart size is normal.",
    "No pneumothorax. Mild pulmonary edema with interstitial markings.",
    "Patchy consolidation in the right lower lobe. Tubes are unchanged.",
]


def _samples_per_s(dataset: Any, batch: int, workers: int) -> float:
    from gloria.training.datasets import collate
    from gloria.training.samplers import SeededSampler

    loader = DataLoader(
        dataset, batch_size=batch, collate_fn=collate, num_workers=workers,
        sampler=SeededSampler(len(dataset), seed=0, shuffle=True, rank=0, world_size=1),
    )  # fmt: skip
    started = time.perf_counter()
    count = sum(int(b["image"].shape[0]) for b in loader)  # workers' start-up included, as in an epoch
    return count / (time.perf_counter() - started)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer, smaller images (a smoke run)")
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--n", type=int, default=480)
    parser.add_argument("--batch", type=int, default=48)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=RESULTS / "shards.json")
    args = parser.parse_args(argv)
    logging.disable(logging.WARNING)
    torch.set_num_threads(1)
    env = environment(1)

    from gloria.config import preset, tiny_config
    from gloria.data.records import ImageReportRecord
    from gloria.data.shards import ShardDataset, write_shards
    from gloria.model import GLoRIA
    from gloria.training.datasets import ImageReportDataset, ShardImageReportDataset

    n, size = (96, 512) if args.quick else (args.n, args.size)
    repeats = 1 if args.quick else args.repeats
    transforms = preset("gloria_resnet50").transforms  # 256 px, 224 crop: the release's
    tokenizer = GLoRIA(tiny_config()).text_tokenizer()
    with tempfile.TemporaryDirectory() as tmp:
        records = []
        for i in range(n):
            path = Path(tmp) / "images" / f"img{i}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(path), (synthetic_radiograph(i, size) >> 4).astype("uint8"))
            record = ImageReportRecord(path=path, report=REPORTS[i % 3], split="train", patient_id=f"p{i}")
            records.append(record)
        jpeg_bytes = sum(r.path.stat().st_size for r in records)
        started = time.perf_counter()
        shards = Path(tmp) / "shards"
        write_shards({"train": records}, shards, imsize=transforms.imsize, num_workers=args.workers)
        write_s = time.perf_counter() - started
        shard_bytes = sum(p.stat().st_size for p in (shards / "train").glob("*.bin"))
        arms = {
            "jpeg_files": ImageReportDataset(records, transforms, train=True, tokenizer=tokenizer),
            "shards": ShardImageReportDataset(
                ShardDataset.open(str(shards / "train")), transforms, train=True, tokenizer=tokenizer
            ),
        }
        rates: dict[str, list[float]] = {arm: [] for arm in arms}
        for _ in range(repeats):
            for arm, dataset in arms.items():
                rates[arm].append(_samples_per_s(dataset, args.batch, args.workers))
    ratios = [s / j for s, j in zip(rates["shards"], rates["jpeg_files"])]
    result = {
        "bench": "shards",
        **env,
        "load_average_end": os.getloadavg()[0],
        "quick": args.quick,
        "images": n,
        "jpeg_size_px": size,
        "imsize": transforms.imsize,
        "batch": args.batch,
        "workers": args.workers,
        "repeats": repeats,
        "samples_per_s_jpeg_files": rates["jpeg_files"],
        "samples_per_s_shards": rates["shards"],
        "ratio_shards_over_jpeg": ratios,
        "shard_write_s": write_s,
        "jpeg_mib": jpeg_bytes / 2**20,
        "shard_mib": shard_bytes / 2**20,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    for arm, values in rates.items():
        print(f"{arm}: {', '.join(f'{v:.0f}' for v in values)} samples/s")
    median = statistics.median(ratios)
    print(f"ratio shards / JPEG: {', '.join(f'{r:.2f}' for r in ratios)} (median {median:.2f}); "
          f"shards written in {write_s:.1f} s; wrote {args.out}")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
