"""Benchmark: a pretraining step fed by a DataLoader with 2 workers, texts tokenised in the training step on
the main process (before issue 16: the dataset gave strings, ``PretrainObjective`` called ``process_text``)
against texts tokenised per item in the workers (``ImageReportDataset(tokenizer=...)``). Same tiny model,
same SynthCXR images and reports, same sampler; the two arms alternate, ``--repeats`` times each.

Time per step = wall time from asking the loader for a batch to the end of the Adam step (median over the
second epoch), and the main process's CPU time of it (the workers' time not counted). Also timed alone:
``process_text`` of one batch of texts on the main process (the work moved out).
Writes bench/results/pipeline.json (commit, torch, threads, load average).

    python bench/bench_pipeline.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"


def git_commit() -> str:
    """HEAD of the checkout, with ``-dirty`` when tracked files differ from it."""
    out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    head = out.stdout.strip()
    dirty = subprocess.run(["git", "diff", "--quiet", "HEAD"], cwd=ROOT).returncode != 0
    return head + ("-dirty" if dirty else "")


def environment(threads: int) -> dict[str, Any]:
    return {
        "commit": git_commit(),
        "torch": torch.__version__,
        "threads": threads,
        "cpus": os.cpu_count(),
        "machine": platform.processor() or platform.machine(),
        "load_average_start": os.getloadavg()[0],
    }


def _records(root: Path) -> list[Any]:
    from gloria.training.experiment import DataSection
    from gloria.training.sources import load_split_records

    data = DataSection(
        source="image_report", root=str(root / "CheXpert-v1.0"), train_csv="master_updated.csv",
        image_root="..", split_column="Split",
    )  # fmt: skip
    return list(load_split_records(data, seed=0).train)


def _steps(
    model: Any, loader: DataLoader[Any], optimizer: torch.optim.Optimizer, epochs: int
) -> tuple[list[float], list[float]]:
    """(wall s, main-process CPU s) of every step: fetch the batch, losses, backward, Adam step."""
    from gloria.training.objective import PretrainObjective

    objective = PretrainObjective(model)
    wall: list[float] = []
    cpu: list[float] = []
    for epoch in range(epochs):
        loader.sampler.set_epoch(epoch)  # type: ignore[attr-defined]
        started, started_cpu = time.perf_counter(), time.process_time()
        for batch in loader:
            loss = objective(batch)["loss"]
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            now, now_cpu = time.perf_counter(), time.process_time()
            wall.append(now - started)
            cpu.append(now_cpu - started_cpu)
            started, started_cpu = now, now_cpu
    return wall, cpu


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer images and repeats (a smoke run)")
    parser.add_argument("--batch", type=int, default=48)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=RESULTS / "pipeline.json")
    args = parser.parse_args(argv)
    logging.disable(logging.WARNING)
    torch.set_num_threads(1)
    env = environment(1)

    from gloria.config import tiny_config
    from gloria.data.synth.config import SynthConfig
    from gloria.data.synth.generate import generate
    from gloria.model import GLoRIA
    from gloria.training.datasets import ImageReportDataset, collate, usable_reports
    from gloria.training.samplers import SeededSampler

    n_images = 160 if args.quick else 400
    repeats = 1 if args.quick else args.repeats
    with tempfile.TemporaryDirectory() as tmp:
        generate(Path(tmp), n_images, seed=0, config=SynthConfig(size=128), progress=False)
        records, _ = usable_reports(_records(Path(tmp)))
        torch.manual_seed(0)
        model = GLoRIA(tiny_config()).train()
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-4, betas=(0.5, 0.999))
        tokenizer = model.text_tokenizer()
        arms = {"main_process": None, "workers": tokenizer}
        per_step: dict[str, list[float]] = {arm: [] for arm in arms}
        per_step_cpu: dict[str, list[float]] = {arm: [] for arm in arms}
        for _ in range(repeats):
            for arm, tok in arms.items():
                dataset = ImageReportDataset(records, model.config.transforms, train=True, tokenizer=tok)
                loader = DataLoader(
                    dataset, batch_size=args.batch, drop_last=True, collate_fn=collate,
                    sampler=SeededSampler(len(dataset), seed=0, shuffle=True, rank=0, world_size=1),
                    num_workers=args.workers, persistent_workers=True,
                )  # fmt: skip
                wall, cpu = _steps(model, loader, optimizer, epochs=2)
                per_step[arm].append(statistics.median(wall[len(wall) // 2 :]))  # second epoch: warm
                per_step_cpu[arm].append(statistics.median(cpu[len(cpu) // 2 :]))
                del loader
        texts = [dataset[(i, 0)]["text"] for i in range(args.batch)]
        tokenise = []
        for _ in range(20):
            started = time.perf_counter()
            model.process_text(texts, "cpu")
            tokenise.append(time.perf_counter() - started)
    before, after = per_step["main_process"], per_step["workers"]
    ratios = [b / a for b, a in zip(before, after)]
    result = {
        "bench": "pipeline",
        **env,
        "load_average_end": os.getloadavg()[0],
        "quick": args.quick,
        "model": "tiny preset (ResNet-18, 4-layer 32-wide BERT), 128 px SynthCXR",
        "images": len(records),
        "batch": args.batch,
        "workers": args.workers,
        "repeats": repeats,
        "step_s_tokenise_in_step": before,
        "step_s_tokenise_in_workers": after,
        "ratio_in_step_over_in_workers": ratios,
        "main_process_cpu_s_tokenise_in_step": per_step_cpu["main_process"],
        "main_process_cpu_s_tokenise_in_workers": per_step_cpu["workers"],
        "process_text_one_batch_s_median": statistics.median(tokenise),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"step, tokenised in the step:    {', '.join(f'{t * 1e3:.0f}' for t in before)} ms")
    print(f"step, tokenised in the workers: {', '.join(f'{t * 1e3:.0f}' for t in after)} ms")
    cpu_before, cpu_after = per_step_cpu["main_process"], per_step_cpu["workers"]
    print(f"main-process CPU per step: {', '.join(f'{t * 1e3:.0f}' for t in cpu_before)} ms in the step, "
          f"{', '.join(f'{t * 1e3:.0f}' for t in cpu_after)} ms in the workers")  # fmt: skip
    print(f"ratio: {', '.join(f'{r:.3f}' for r in ratios)}; process_text of {args.batch} texts "
          f"{statistics.median(tokenise) * 1e3:.1f} ms; wrote {args.out}")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
