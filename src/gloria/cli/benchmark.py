"""``gloria benchmark --model M --suite suite.yaml``: run the suite's evaluations and write one table
(``benchmark.md`` + ``benchmark.json``): our numbers with intervals, each data set's sha256, the published
reference numbers and their papers, and the run's environment (commit, torch, threads, load average).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from gloria.cli.embed import add_model_argument, default_cache_dir, load_model

log = logging.getLogger(__name__)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "benchmark",
        help="run a benchmark suite (zero-shot, grounding) into one table",
        description="Run the evaluations of a suite YAML and write benchmark.md and benchmark.json.",
    )
    add_model_argument(parser)
    parser.add_argument(
        "--suite", required=True, help="suite YAML, or a packaged suite's name: synthcxr (SynthCXR, offline)"
    )
    parser.add_argument("--root", default=None, help="folder the suite's data paths are relative to")
    parser.add_argument("--only", default="", help="comma-separated evaluation names (default: all)")
    parser.add_argument("--n-boot", type=int, default=None, help="bootstrap resamples (default: the suite's)")
    parser.add_argument("--cache", default=None, help="embedding cache folder")
    parser.add_argument("--out", default="benchmark_results", help="output folder")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from gloria import provenance
    from gloria.tasks import embed as E
    from gloria.tasks.benchmark import load_suite, run_suite
    from gloria.tasks.report import Report

    environment = provenance.start(root=Path(__file__).parent)  # commit, torch, threads, load average
    suite = load_suite(args.suite, args.root)
    if args.n_boot is not None:
        suite.n_boot = args.n_boot
    model = load_model(args)
    cache = E.EmbeddingCache(
        Path(args.cache) if args.cache else default_cache_dir(), E.model_fingerprint(model)
    )
    only = [n.strip() for n in args.only.split(",") if n.strip()]
    result = run_suite(model, suite, cache=cache, only=only)
    report = Report("Benchmark", Path(args.out))
    report.results = {"model": args.model, "suite": str(args.suite), "environment": environment, **result}
    report.text(
        f"Model `{args.model}`, suite `{args.suite}`; 95% percentile bootstrap intervals over "
        f"{suite.n_boot} resamples. Reference numbers are the published ones on the real data set of the "
        "source column; a SynthCXR number is not comparable with them."
    )
    report.table(result["rows"])
    for name, entry in result["evaluations"].items():
        skipped = entry["result"].get("skipped") if isinstance(entry["result"], dict) else None
        if skipped:
            report.text(
                f"`{name}`: classes left out of the macro means: "
                + "; ".join(f"{c} ({why})" for c, why in skipped.items())
            )
    report.write()
    (report.out_dir / "results.json").replace(report.out_dir / "benchmark.json")
    (report.out_dir / "report.md").replace(report.out_dir / "benchmark.md")
    log.info("wrote %s and %s", report.out_dir / "benchmark.md", report.out_dir / "benchmark.json")
    return 0
