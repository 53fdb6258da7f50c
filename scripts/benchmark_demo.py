"""The SynthCXR benchmark suite on the model a ``gloria demo`` run pretrained, into one committed JSON.

Run: gloria demo --quick --out demo_out && python scripts/benchmark_demo.py --demo-out demo_out
     [--suite synthcxr] [--n-boot 1000] [--out bench/results/benchmark_synthcxr_demo_quick.json]
The demo's report already holds the suite at the demo's bootstrap size (stage 8); this runs it again with
``--n-boot`` resamples on the model folder the demo wrote (``demo_out/model``, read by the one loader), on the
demo's SynthCXR folder (``prepare synthcxr`` first), and copies ``benchmark.json`` (commit, torch, threads,
load average inside) and ``benchmark.md`` to ``--out``.
"""

from __future__ import annotations

import argparse
import logging
import shutil
from collections.abc import Sequence
from pathlib import Path

import torch

from gloria.cli.main import main as gloria_main

log = logging.getLogger("benchmark_demo")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--demo-out", type=Path, required=True)
    parser.add_argument("--suite", default="synthcxr", help="suite YAML or packaged suite name")
    parser.add_argument("--out", type=Path, default=Path("bench/results/benchmark_synthcxr_demo_quick.json"))
    parser.add_argument("--n-boot", type=int, default=1000)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(1)
    model_dir = args.demo_out / "model"
    if not (model_dir / "config.yaml").is_file():
        log.error("no model folder %s: did the demo finish its pretraining?", model_dir)
        return 1
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
