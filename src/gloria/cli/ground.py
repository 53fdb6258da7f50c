"""``gloria ground``: phrase grounding on a phrase-box (or mask) CSV in the MS-CXR format: CNR, mIoU, mDice
and the pointing game of each model readout beside the image-blind baselines, with bootstrap intervals.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from gloria.cli.embed import add_model_argument, load_model

log = logging.getLogger(__name__)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "ground",
        help="phrase grounding on boxes or masks (MS-CXR format CSV)",
        description="Map each phrase's words to image regions (original pixels) and score them against its "
        "boxes or masks; baselines: class prior, class + side/level words, random map.",
    )
    add_model_argument(parser)
    parser.add_argument(
        "--data",
        required=True,
        help="CSV: dicom_id, category, label_text, x, y, w, h, "
        "image_width, image_height, path [, mask_rle, split]",
    )
    parser.add_argument(
        "--image-root", default=None, help="base of relative paths (default: the CSV's folder)"
    )
    parser.add_argument("--thresholds", default="0.1,0.2,0.3,0.4,0.5", help="fractions of each map's range")
    parser.add_argument("--readouts", default="two_stage,cosine", help="comma-separated readouts")
    parser.add_argument(
        "--fit-fraction", type=float, default=0.5, help="cases fitting the priors (no split col)"
    )
    parser.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--out", default="grounding_results", help="output folder")
    parser.set_defaults(func=run)


def parse_floats(text: str, name: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError as err:
        raise ValueError(f"{name}: expected comma-separated numbers, got {text!r}") from err
    if not values or not all(0.0 <= v <= 1.0 for v in values):
        raise ValueError(f"{name}: need numbers in [0, 1], got {text!r}")
    return values


def parse_readouts(text: str) -> list[Any]:
    from gloria.tasks.grounding import READOUTS

    names = [r.strip() for r in text.split(",") if r.strip()]
    unknown = [r for r in names if r not in READOUTS]
    if unknown or not names:
        raise ValueError(f"--readouts: unknown {unknown or text!r}; choose from {list(READOUTS)}")
    return names


def ground(model: Any, data: str | Path, args: argparse.Namespace) -> dict[str, Any]:
    """Read the table named by ``data`` and run the grounding evaluation with ``args``' settings."""
    from gloria.data.phrase_boxes import read_phrase_boxes
    from gloria.tasks.grounding_metrics import run_grounding

    frame = read_phrase_boxes(data)
    root = Path(args.image_root) if args.image_root else Path(data).resolve().parent
    return run_grounding(
        model,
        frame,
        image_root=root,
        readouts=parse_readouts(args.readouts),
        thresholds=parse_floats(args.thresholds, "--thresholds"),
        fit_fraction=args.fit_fraction,
        n_boot=args.n_boot,
        seed=args.seed,
        batch_size=args.batch_size,
    )


def run(args: argparse.Namespace) -> int:
    from gloria.tasks.grounding_metrics import HEADLINE
    from gloria.tasks.report import Report

    model = load_model(args)
    result = ground(model, args.data, args)
    report = Report("Phrase grounding", Path(args.out))
    report.results = {"model": args.model, "data": str(args.data), **result}
    report.text(
        f"Model `{args.model}`, data `{args.data}`: {result['n_cases']} phrases scored, priors fitted on "
        f"{result['n_fit']} ({result['prior_fit']}); thresholds {result['thresholds']} of each map's range."
    )
    report.table(
        [{"method": m, **{k: v[k] for k in HEADLINE}, "n": v["n"]} for m, v in result["methods"].items()]
    )
    for method, entry in result["per_category"].items():
        report.heading(f"{method}: per category")
        rows = [{"category": c, **v} for c, v in entry["categories"].items()]
        report.table([*rows, {"category": "mean over categories", **entry["category_mean"], "n": ""}])
    json_path, md_path = report.write()
    log.info("wrote %s and %s", json_path, md_path)
    return 0
