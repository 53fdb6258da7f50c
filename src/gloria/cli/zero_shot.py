"""``gloria zero-shot``: zero-shot classification on a 5x200-style CSV with a JSON + Markdown report
(the evaluation is ``gloria.tasks.zero_shot.run_zero_shot``; this module parses arguments and writes)."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

from gloria.cli.embed import add_model_argument, embedding_cache, load_model

log = logging.getLogger(__name__)


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
    from gloria.data.eval_set import read_eval_set
    from gloria.tasks import zero_shot as Z
    from gloria.tasks.report import Report, add_zero_shot

    data = read_eval_set(args.data, args.image_root)
    positive, negative = _prompts(args)
    unknown = sorted(set(data.tasks) - set(positive))
    if unknown:
        raise ValueError(f"{args.data}: tasks {unknown} have no prompts; prompt classes are {list(positive)}")
    model = load_model(args)
    fitted: dict[str, dict[str, list[str]]] = {}
    if args.legacy:  # the release's word slots count characters: prompts too long for them are skipped
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
    cache = embedding_cache(args, model)
    result = Z.run_zero_shot(
        model,
        data,
        positive,
        negative,
        ensemble=args.ensemble,
        legacy=args.legacy,
        negative_template=args.negative_template,
        calibrate=args.calibrate,
        val_fraction=args.val_fraction,
        n_boot=args.n_boot,
        seed=args.seed,
        batch_size=args.batch_size,
        cache=cache,
    )
    if args.ensemble == "pairs" and negative is None:
        negative = Z.default_negatives(list(positive), args.negative_template)
    out = Path(args.out)
    report = Report("Zero-shot classification", out)
    report.results["settings"] = {
        "model": args.model,
        "data": str(args.data),
        "ensemble": args.ensemble,
        "legacy": args.legacy,
        "prompts": positive,
        "negative_prompts": negative if args.ensemble == "pairs" else None,
        "legacy_prompts_replaced": fitted or None,
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
    test_labels = result.labels[result.test_rows]
    if result.calibration is not None and result.calibrated is not None:
        cal = result.calibration
        report.results["calibration"] = cal
        report.heading(f"Calibration ({args.calibrate})")
        report.text(
            f"Fitted on {cal['fit_rows']} seeded rows, evaluated on the other {len(result.test_rows)}: "
            f"calibration error (ECE) {cal['ece_softmax_of_scores']:.3f} (softmax of the raw scores) -> "
            f"{cal['ece_calibrated']:.3f} (calibrated)."
        )
        assert result.calibrated_evaluation is not None
        add_zero_shot(
            report, result.calibrated_evaluation, result.calibrated, test_labels, name="zero_shot_calibrated"
        )
    add_zero_shot(report, result.evaluation, result.scores[result.test_rows], test_labels)
    out.mkdir(parents=True, exist_ok=True)
    result.scores_table(data).to_csv(out / "scores.csv", index=False)
    json_path, md_path = report.write()
    log.info("accuracy %s; wrote %s and %s", json.dumps(result.evaluation["accuracy"]), json_path, md_path)
    return 0
