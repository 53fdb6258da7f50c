"""The SynthCXR benchmark suite on the model a ``gloria demo`` run pretrained, into one committed JSON.

Run: gloria demo --quick --out demo_out && python scripts/benchmark_demo.py --demo-out demo_out
     [--suite configs/benchmarks/synthcxr.yaml] [--out bench/results/benchmark_synthcxr_demo_quick.json]
Loads the pretraining's best checkpoint (``runs/pretrained/``) with the run's experiment file, writes it as a
model folder, runs ``gloria benchmark`` on the demo's SynthCXR folder (``prepare synthcxr`` first) and copies
``benchmark.json`` (commit, torch, threads, load average inside) to ``--out``.
"""

from __future__ import annotations

import argparse
import logging
import shutil
from collections.abc import Sequence
from pathlib import Path

import torch
import yaml
from safetensors.torch import save_file

from gloria.cli.main import main as gloria_main
from gloria.training.experiment import load_experiment
from gloria.training.runner import build_gloria

log = logging.getLogger("benchmark_demo")


def best_checkpoint(run_dir: Path) -> Path:
    found = sorted(run_dir.rglob("*.ckpt"))
    best = [p for p in found if "best" in p.name or "epoch" in p.name] or found
    if not best:
        raise SystemExit(f"no checkpoint under {run_dir}: did the demo finish its pretraining?")
    return best[0]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--demo-out", type=Path, required=True)
    parser.add_argument("--suite", type=Path, default=Path("configs/benchmarks/synthcxr.yaml"))
    parser.add_argument("--out", type=Path, default=Path("bench/results/benchmark_synthcxr_demo_quick.json"))
    parser.add_argument("--n-boot", type=int, default=1000)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(1)
    run_dir = args.demo_out / "runs" / "pretrained"
    checkpoint = best_checkpoint(run_dir)
    cfg = load_experiment(run_dir / "experiment.yaml", [f"model.checkpoint={checkpoint}"])
    model = build_gloria(cfg).eval()
    model_dir = args.demo_out / "benchmark_model"
    model_dir.mkdir(parents=True, exist_ok=True)
    save_file(
        {k: v.contiguous() for k, v in model.state_dict().items()}, str(model_dir / "model.safetensors")
    )
    (model_dir / "config.yaml").write_text(yaml.safe_dump(model.config.to_dict()))
    log.info("model from %s written to %s", checkpoint, model_dir)
    synth = args.demo_out / "synthcxr"
    if gloria_main(["prepare", "synthcxr", "--root", str(synth)]) != 0:
        return 1
    bench_out = args.demo_out / "benchmark"
    argv_bench = ["benchmark", "--model", str(model_dir), "--suite", str(args.suite), "--root", str(synth)]
    argv_bench += ["--out", str(bench_out), "--n-boot", str(args.n_boot), "--device", "cpu"]
    argv_bench += ["--cache", str(args.demo_out / "embed_cache")]
    if gloria_main(argv_bench) != 0:
        return 1
    args.out.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(bench_out / "benchmark.json", args.out)
    shutil.copyfile(bench_out / "benchmark.md", args.out.with_suffix(".md"))
    log.info("wrote %s", args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
