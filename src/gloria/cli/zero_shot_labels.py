"""``gloria zero-shot-labels``: binary / multi-label zero-shot on any CSV of image paths and label columns,
each class scored on its own; per-class and macro AUROC, AUPRC, F1, MCC with bootstrap intervals.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from gloria.cli.embed import add_model_argument, default_cache_dir, load_model

log = logging.getLogger(__name__)


def add_label_arguments(parser: argparse.ArgumentParser) -> None:
    """The eval-set and scoring options (shared with ``gloria benchmark``'s defaults)."""
    parser.add_argument("--data", required=True, help="CSV with a path column and one column per class")
    parser.add_argument("--prompts", required=True, help="YAML/JSON: {class: [prompts]} or positive/negative")
    parser.add_argument(
        "--classes", default=None, help="comma-separated classes (default: the prompt file's)"
    )
    parser.add_argument("--path-col", default="path", help="image path column")
    parser.add_argument(
        "--image-root", default=None, help="base of relative paths (default: the CSV's folder)"
    )
    parser.add_argument(
        "--uncertain", choices=["zeros", "ones", "ignore"], default="ignore", help="-1 labels"
    )
    parser.add_argument("--scoring", choices=["pairs", "positive"], default="pairs")
    parser.add_argument(
        "--negative-template", default="no {finding}", help="negatives when the file has none"
    )
    parser.add_argument("--threshold-rule", choices=["mcc", "f1"], default="mcc", help="chosen on valid rows")
    parser.add_argument("--valid-fraction", type=float, default=0.2, help="valid rows without a split column")
    parser.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples")
    parser.add_argument("--seed", type=int, default=0, help="seed of the valid draw and the bootstrap")


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "zero-shot-labels",
        help="binary / multi-label zero-shot on any labelled CSV",
        description="Score each class on its own (positive vs negative prompts, or positives alone); "
        "thresholds chosen on a validation split; results.json, report.md and scores.csv.",
    )
    add_model_argument(parser)
    add_label_arguments(parser)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--cache", default=None, help="embedding cache folder")
    parser.add_argument("--out", default="zero_shot_labels_results", help="output folder")
    parser.set_defaults(func=run)


def evaluate(model: Any, args: argparse.Namespace, cache: Any = None) -> Any:
    """Read the eval set and prompts named by ``args`` and run the zero-shot evaluation."""
    from gloria.tasks import zero_shot as Z
    from gloria.tasks import zero_shot_labels as L

    positive, negative = Z.load_prompt_file(args.prompts)
    classes = [c.strip() for c in args.classes.split(",")] if args.classes else list(positive)
    if args.scoring == "pairs" and negative is None:
        negative = Z.default_negatives(classes, args.negative_template)
    data = L.read_label_csv(
        args.data,
        classes,
        path_col=args.path_col,
        image_root=args.image_root,
        uncertain=args.uncertain,
        valid_fraction=args.valid_fraction,
        seed=args.seed,
    )
    return data, L.run_label_zero_shot(
        model,
        data,
        positive,
        negative,
        scoring=args.scoring,
        rule=args.threshold_rule,
        n_boot=args.n_boot,
        seed=args.seed,
        batch_size=getattr(args, "batch_size", 32),
        cache=cache,
    )


def run(args: argparse.Namespace) -> int:
    import pandas as pd

    from gloria.tasks import embed as E
    from gloria.tasks.report import Report

    model = load_model(args)
    cache = E.EmbeddingCache(
        Path(args.cache) if args.cache else default_cache_dir(), E.model_fingerprint(model)
    )
    data, result = evaluate(model, args, cache)
    out = Path(args.out)
    report = Report("Zero-shot classification (binary / multi-label)", out)
    report.results = {"model": args.model, "data": str(args.data), **result.evaluation}
    report.text(
        f"Model `{args.model}`, data `{args.data}`, scoring `{args.scoring}`, uncertain labels "
        f"`{args.uncertain}`, thresholds maximise {args.threshold_rule} on {result.evaluation['n_valid']} "
        f"valid rows; {result.evaluation['n_test']} test rows."
    )
    rows = [
        {
            "class": name,
            **{m: entry[m] for m in ("auroc", "auprc", "f1", "mcc")},
            "positives": entry["positives"],
        }
        for name, entry in result.evaluation["classes"].items()
    ]
    rows.append({"class": "macro", **result.evaluation["macro"], "positives": ""})
    report.table(rows)
    out.mkdir(parents=True, exist_ok=True)
    table = pd.DataFrame(result.scores, columns=data.class_names)
    table.insert(0, "valid", data.valid)
    table.insert(0, "path", [str(p) for p in data.paths])
    table.to_csv(out / "scores.csv", index=False)
    json_path, md_path = report.write()
    log.info("macro AUROC %s; wrote %s and %s", result.evaluation["macro"]["auroc"], json_path, md_path)
    return 0
