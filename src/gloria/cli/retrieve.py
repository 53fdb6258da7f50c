"""``gloria retrieve``: image->text and text->image retrieval on a 5x200-style CSV (hit = same class)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from gloria.cli.embed import add_model_argument, default_cache_dir, load_model
from gloria.cli.zero_shot import read_eval_set

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
    from collections import Counter

    from gloria.tasks import embed as E
    from gloria.tasks import retrieval as R
    from gloria.tasks.report import Report, add_retrieval

    data = read_eval_set(args.data, args.image_root)
    empty = [i for i, t in enumerate(data.texts) if not t.strip()]
    if empty:
        raise ValueError(f"{args.data}: row {empty[0] + 2} has no report text (retrieval needs one per row)")
    model = load_model(args)
    cache = E.EmbeddingCache(
        Path(args.cache) if args.cache else default_cache_dir(), E.model_fingerprint(model)
    )
    images = E.embed_images(model, data.paths, batch_size=args.batch_size, cache=cache, with_regions=True)
    texts = E.embed_texts(model, data.texts, batch_size=args.batch_size).features
    feats = images.features()
    device = texts.words.device  # score where the model runs; image features come from the CPU cache
    feats = type(feats)(regions=feats.regions.to(device), embedding=feats.embedding.to(device))
    inputs = R.RetrievalInputs.from_features(feats, texts)
    classes = sorted(set(data.tasks))
    labels = [classes.index(t) for t in data.tasks]
    ks = [k for k in args.ks if k <= len(labels)]
    if len(ks) < len(args.ks):
        log.warning(
            "dropped K values larger than the %d candidates: %s", len(labels), sorted(set(args.ks) - set(ks))
        )
    results = R.evaluate_grid(
        inputs,
        labels,
        directions=args.direction,
        similarities=args.similarity,
        alignment=model.config.alignment,
        ks=ks,
        chunk_size=args.chunk_size,
        progress=True,
    )
    counts = Counter(labels)
    chance = sum(c * c for c in counts.values()) / len(labels) ** 2
    report = Report("Retrieval", Path(args.out))
    report.results["settings"] = {"model": args.model, "data": str(args.data), "classes": classes}
    report.text(f"Model `{args.model}`, data `{args.data}`, {len(labels)} images and texts.")
    add_retrieval(report, results, chance=chance)
    json_path, md_path = report.write()
    log.info("wrote %s and %s", json_path, md_path)
    return 0
