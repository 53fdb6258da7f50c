"""``gloria train``: pretraining, linear probe and segmentation from an experiment YAML (the release's
``run.py`` flags ``--train --test --train_pct F --splits N`` plus ``--resume`` and ``key=value`` overrides).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

HELP = "train / test an experiment (configs/*.yaml): pretrain, classification, segmentation"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-c", "--config", required=True, help="experiment YAML (see configs/)")
    parser.add_argument("--train", action="store_true", help="train (default when --test is not given)")
    parser.add_argument("--test", action="store_true", help="test the best checkpoint (or --resume CKPT)")
    parser.add_argument("--train_pct", type=float, default=None, help="fraction of training rows (seeded)")
    parser.add_argument("--splits", type=int, default=1, help="repeat with seeds 1..N; mean and spread")
    parser.add_argument(
        "--resume",
        nargs="?",
        const="last",
        default=None,
        metavar="CKPT",
        help="resume from CKPT, or from the run's checkpoints/last.ckpt when no path is given",
    )
    parser.add_argument("--out", default=None, help="output folder (default: the config's out_dir)")
    parser.add_argument("--devices", default=None, help="Lightning devices (e.g. 1, 4, auto)")
    parser.add_argument("--num_nodes", type=int, default=None, help="machines (DDP over nodes)")
    parser.add_argument("--accelerator", default=None, help="cpu, gpu, auto")
    parser.add_argument(
        "--trust",
        action="store_true",
        help="allow full unpickling of the checkpoints read (model.checkpoint, --resume): runs code from "
        "the files; only for files from a trusted source",
    )
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, dotted keys")


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("train", help=HELP, description=HELP)
    add_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from gloria.training.experiment import load_experiment
    from gloria.training.runner import run_experiment

    overrides = list(args.overrides)
    resume = args.resume
    if resume is not None and "=" in resume and not Path(resume).exists():
        overrides.insert(0, resume)  # "--resume key=value": argparse took the override as the checkpoint
        resume = "last"
    if args.devices is not None:
        overrides.append(f"trainer.devices={args.devices}")
    if args.num_nodes is not None:
        overrides.append(f"trainer.num_nodes={args.num_nodes}")
    if args.accelerator is not None:
        overrides.append(f"trainer.accelerator={args.accelerator}")
    cfg = load_experiment(args.config, overrides)
    train = args.train or not args.test
    results = run_experiment(
        cfg,
        train=train,
        test=args.test,
        train_pct=args.train_pct,
        splits=args.splits,
        resume=resume,
        out_dir=args.out,
        trust=args.trust,
    )
    metrics = results.get("summary") or results.get("test_metrics") or results.get("fit_metrics") or {}
    log.info("results: %s", json.dumps(metrics, default=str)[:2000])
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """The release's ``run.py`` entry: the same flags as ``gloria train``; errors are logged, exit code 1."""
    parser = argparse.ArgumentParser(prog="run.py", description=HELP)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error")
    add_arguments(parser)
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    from gloria.cli.main import run_reporting_errors

    return run_reporting_errors(run, args, debug=args.debug)
