"""``gloria retrieve``: image->text and text->image retrieval on a 5x200-style CSV (hit = same class)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from gloria.cli.embed import add_model_argument, embedding_cache, load_model

log = logging.getLogger(__name__)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "retrieve",
        help="retrieval evaluation (Precision@K) on a 5x200-style CSV",
        description="Each image queries the report texts and each text queries the images; Precision@K with "
        "a hit when the candidate has the query's class. Scores are computed in chunks (bounded memory).",
    )
    add_model_argument(parser)
    parser.add_argument("--data", required=True, help="5x200-style CSV with Path, task and Report Impression")
    parser.add_argument("--image-root", default=None, help="folder the CSV's Path values are relative to")
    parser.add_argument(
        "--similarity", nargs="+", choices=["global", "local", "both"], default=["global", "local", "both"]
    )
    parser.add_argument(
        "--direction",
        nargs="+",
        choices=["image_to_text", "text_to_image"],
        default=["image_to_text", "text_to_image"],
    )
    parser.add_argument(
        "--ks", type=int, nargs="+", default=[1, 5, 10, 100], help="K values (default 1 5 10 100)"
    )
    parser.add_argument("--chunk-size", type=int, default=256, help="queries scored at once")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--cache", default=None, help="embedding cache folder")
    parser.add_argument("--out", default="retrieval_results", help="output folder")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from gloria.data.eval_set import read_eval_set
    from gloria.tasks import retrieval as R
    from gloria.tasks.report import Report, add_retrieval

    data = read_eval_set(args.data, args.image_root)
    if any(not t.strip() for t in data.texts):  # checked before the model is loaded
        row = next(i for i, t in enumerate(data.texts) if not t.strip())
        raise ValueError(f"{args.data}: row {row + 2} has no report text (retrieval needs one per row)")
    model = load_model(args)
    cache = embedding_cache(args, model)
    result = R.run_retrieval(
        model,
        data,
        directions=args.direction,
        similarities=args.similarity,
        ks=args.ks,
        chunk_size=args.chunk_size,
        batch_size=args.batch_size,
        cache=cache,
        progress=True,
    )
    report = Report("Retrieval", Path(args.out))
    report.results["settings"] = {"model": args.model, "data": str(args.data), "classes": result.classes}
    report.text(f"Model `{args.model}`, data `{args.data}`, {len(data.paths)} images and texts.")
    add_retrieval(report, result.rows, chance=result.chance)
    json_path, md_path = report.write()
    log.info("wrote %s and %s", json_path, md_path)
    return 0
