"""``gloria zero-shot``: zero-shot classification on a 5x200-style CSV with a JSON + Markdown report.

Also holds the reader of that CSV's images, tasks and report texts, shared with ``gloria retrieve``.
"""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gloria.cli.embed import add_model_argument, default_cache_dir, load_model

log = logging.getLogger(__name__)


@dataclass
class EvalSet:
    """Rows of a 5x200-style CSV: image files, task per row, report impression per row (may be empty)."""

    paths: list[Path]
    tasks: list[str]
    texts: list[str]


def read_eval_set(csv_path: str | Path, image_root: str | Path | None = None) -> EvalSet:
    """Read ``Path`` / ``task`` (or the release's five task columns) / ``Report Impression``.

    ``Path`` is relative to ``image_root``; by default the CSV's folder or the one above it (CheXpert paths
    start with ``CheXpert-v1.0/``), whichever holds the first image.
    """
    from gloria.data.chexpert_5x200 import REPORT_COLUMN, read_5x200_csv

    frame = read_5x200_csv(csv_path).frame
    if frame.empty:
        raise ValueError(f"{csv_path}: no rows")
    csv_dir = Path(csv_path).resolve().parent
    first = Path(str(frame["Path"].iloc[0]))
    if image_root is not None:
        root = Path(image_root)
    else:
        root = next((d for d in (csv_dir, csv_dir.parent) if (d / first).is_file()), csv_dir)
    paths = [p if p.is_absolute() else root / p for p in map(Path, frame["Path"].astype(str))]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"{csv_path}: {len(missing)} image(s) not found, first {missing[0]}")
    texts = (
        frame[REPORT_COLUMN].fillna("").astype(str).tolist() if REPORT_COLUMN in frame else [""] * len(paths)
    )
    return EvalSet(paths, frame["task"].astype(str).tolist(), texts)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "zero-shot",
        help="zero-shot classification on a 5x200-style CSV",
        description="Score every image against class prompts; report accuracy, macro F1, per-class AUROC, "
        "confusion matrix with bootstrap intervals (results.json, report.md, figures/).",
    )
    add_model_argument(parser)
    parser.add_argument("--data", required=True, help="5x200-style CSV (Path, task or task columns)")
    parser.add_argument("--image-root", default=None, help="folder the CSV's Path values are relative to")
    parser.add_argument("--prompts", default="chexpert", help="'chexpert' (generated) or a YAML/JSON file")
    parser.add_argument("--n-prompts", type=int, default=5, help="prompts per class with --prompts chexpert")
    parser.add_argument(
        "--prompt-seed", type=int, default=6, help="seed of the generated prompts (6: release)"
    )
    parser.add_argument("--ensemble", choices=["max", "mean", "pairs"], default="max")
    parser.add_argument("--negative-template", default="no {finding}", help="negatives for --ensemble pairs")
    parser.add_argument("--legacy", action="store_true", help="the release's formula (batch dependent)")
    parser.add_argument("--calibrate", choices=["temperature", "platt"], default=None)
    parser.add_argument(
        "--val-fraction", type=float, default=0.2, help="share of rows fitting the calibration"
    )
    parser.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--cache", default=None, help="embedding cache folder")
    parser.add_argument("--out", default="zero_shot_results", help="output folder")
    parser.add_argument("--seed", type=int, default=0, help="seed of the bootstrap and calibration split")
    parser.set_defaults(func=run)


def _prompts(args: argparse.Namespace) -> tuple[dict[str, list[str]], dict[str, list[str]] | None]:
    from gloria.tasks.zero_shot import load_prompt_file

    if args.prompts == "chexpert":
        from gloria.prompts import generate_chexpert_class_prompts

        return generate_chexpert_class_prompts(args.n_prompts, seed=args.prompt_seed), None
    return load_prompt_file(args.prompts)


def _spare_prompts(args: argparse.Namespace) -> dict[str, list[str]] | None:
    """The generator's candidates per class (replacements for prompts too long for --legacy)."""
    if args.prompts != "chexpert":
        return None
    from gloria.constants import class_prompt_vocabulary
    from gloria.prompts import class_prompt_candidates

    return {name: class_prompt_candidates(parts) for name, parts in class_prompt_vocabulary().items()}


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from gloria.tasks import embed as E
    from gloria.tasks import zero_shot as Z
    from gloria.tasks.report import Report, add_zero_shot

    data = read_eval_set(args.data, args.image_root)
    positive, negative = _prompts(args)
    unknown = sorted(set(data.tasks) - set(positive))
    if unknown:
        raise ValueError(f"{args.data}: tasks {unknown} have no prompts; prompt classes are {list(positive)}")
    if args.ensemble == "pairs" and negative is None:
        negative = Z.default_negatives(list(positive), args.negative_template)
    model = load_model(args.model, args.device)
    fitted: dict[str, dict[str, list[str]]] = {}
    if args.legacy:
        positive, fitted = Z.fit_legacy_prompts(
            positive, model.config.text.max_length, spare=_spare_prompts(args), seed=args.prompt_seed
        )
        for name, change in fitted.items():
            log.warning(
                "legacy: class %r: %d prompt(s) longer than the release's %d word slots skipped %s, "
                "replaced by %s",
                name,
                len(change["skipped"]),
                model.config.text.max_length - 1,
                change["skipped"],
                change["added"] or "none",
            )
    cache = E.EmbeddingCache(
        Path(args.cache) if args.cache else default_cache_dir(), E.model_fingerprint(model)
    )
    images = E.embed_images(model, data.paths, batch_size=args.batch_size, cache=cache, with_regions=True)
    prompts = Z.encode_class_prompts(model, positive, negative if args.ensemble == "pairs" else None)
    scores = Z.zero_shot_scores(
        images.features(), prompts, model.config.alignment, ensemble=args.ensemble, legacy=args.legacy
    ).numpy()
    labels = np.array([prompts.class_names.index(t) for t in data.tasks])
    out = Path(args.out)
    report = Report("Zero-shot classification", out)
    report.results["settings"] = {
        "model": args.model,
        "data": str(args.data),
        "ensemble": args.ensemble,
        "legacy": args.legacy,
        "prompts": positive,
        "negative_prompts": negative if args.ensemble == "pairs" else None,
        "legacy_prompts_replaced": fitted,
    }
    report.text(
        f"Model `{args.model}`, data `{args.data}`, ensemble `{args.ensemble}`, legacy {args.legacy}."
    )
    for name, change in fitted.items():
        report.text(
            f"Legacy similarity: {len(change['skipped'])} prompt(s) of {name} have more characters than the "
            f"release's {model.config.text.max_length - 1} word slots (the release crashed on them) and were "
            f"skipped: {change['skipped']}; scored instead: {change['added'] or 'none'}."
        )
    test = np.arange(len(labels))
    if args.calibrate:
        rng = np.random.default_rng(args.seed)
        order = rng.permutation(len(labels))
        n_val = max(1, int(args.val_fraction * len(labels)))
        val, test = np.sort(order[:n_val]), np.sort(order[n_val:])
        cal = Z.Calibrator.fit(scores[val], labels[val], args.calibrate)
        calibrated = cal(scores[test])
        from gloria.tasks.metrics import expected_calibration_error

        raw_probs = np.exp(scores[test] - scores[test].max(1, keepdims=True))
        raw_probs /= raw_probs.sum(1, keepdims=True)
        report.results["calibration"] = {
            "method": args.calibrate,
            "params": cal.params.tolist(),
            "fit_rows": len(val),
            "ece_softmax_of_scores": expected_calibration_error(raw_probs, labels[test]),
            "ece_calibrated": expected_calibration_error(calibrated, labels[test]),
        }
        cal_info = report.results["calibration"]
        report.heading(f"Calibration ({args.calibrate})")
        report.text(
            f"Fitted on {len(val)} seeded rows, evaluated on the other {len(test)}: calibration error (ECE) "
            f"{cal_info['ece_softmax_of_scores']:.3f} (softmax of the raw scores) -> "
            f"{cal_info['ece_calibrated']:.3f} (calibrated)."
        )
        ev_cal = Z.evaluate_scores(
            calibrated, labels[test], prompts.class_names, n_boot=args.n_boot, seed=args.seed
        )
        add_zero_shot(report, ev_cal, calibrated, labels[test], name="zero_shot_calibrated")
    evaluation = Z.evaluate_scores(
        scores[test], labels[test], prompts.class_names, n_boot=args.n_boot, seed=args.seed
    )
    add_zero_shot(report, evaluation, scores[test], labels[test])
    out.mkdir(parents=True, exist_ok=True)
    import pandas as pd

    table = pd.DataFrame(scores, columns=prompts.class_names)
    table.insert(0, "task", data.tasks)
    table.insert(0, "Path", [str(p) for p in data.paths])
    table.to_csv(out / "scores.csv", index=False)
    json_path, md_path = report.write()
    log.info("accuracy %s; wrote %s and %s", json.dumps(evaluation["accuracy"]), json_path, md_path)
    return 0
