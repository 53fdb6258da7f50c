"""``gloria embed``: image (and text) embeddings to NPZ, batched, resumable through a content-hash cache.

Also holds the ``--model`` handling shared by the evaluation commands (zero-shot, retrieve, attend).
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def add_model_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        required=True,
        help="registered name, release .ckpt, converted directory, a `gloria train` checkpoint "
        "(runs/NAME/checkpoints/last.ckpt), or preset:NAME (random weights: smoke tests only)",
    )
    parser.add_argument("--device", default=None, help="cpu, cuda, ... (default: cuda when available)")
    add_checkpoint_arguments(parser)


def add_checkpoint_arguments(parser: argparse.ArgumentParser) -> None:
    """``--text-model`` and ``--trust``: how a checkpoint is read (every command that reads one)."""
    parser.add_argument(
        "--text-model",
        default=None,
        help="local directory of the text model of a release .ckpt (config.json + vocab.txt); default: its "
        "bert_type (a local directory or the local Hugging Face cache)",
    )
    parser.add_argument(
        "--trust",
        action="store_true",
        help="allow full unpickling of the checkpoint (runs code from the file; trusted sources only)",
    )


def load_model(args: argparse.Namespace) -> Any:
    """The GLoRIA model named by ``--model`` in eval mode (``gloria.load_gloria``)."""
    from gloria.pretrained.loading import load_gloria

    return load_gloria(args.model, args.device, text_model=args.text_model, trust=args.trust)


def embedding_cache(args: argparse.Namespace, model: Any) -> Any:
    """The embedding cache of ``--cache`` (default ``default_cache_dir()``) for ``model``; None with
    ``--no-cache``."""
    from gloria.tasks.embed import EmbeddingCache, model_fingerprint

    if getattr(args, "no_cache", False):
        return None
    return EmbeddingCache(Path(args.cache) if args.cache else default_cache_dir(), model_fingerprint(model))


def default_cache_dir() -> Path:
    """``$GLORIA_EMBED_CACHE`` or ``~/.cache/gloria/embeddings``."""
    env = os.environ.get("GLORIA_EMBED_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "gloria" / "embeddings"


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "embed",
        help="export image/text embeddings (NPZ)",
        description="Encode images (a folder of JPEG/PNG/DICOM or a CSV with a Path column) and optionally "
        "texts into one NPZ. Each image is encoded once per content hash and model; rerunning resumes.",
    )
    add_model_argument(parser)
    parser.add_argument("--images", required=True, help="folder of images or CSV with a Path column")
    parser.add_argument(
        "--image-root",
        default=None,
        help="folder a CSV's relative Path values start from (default: the "
        "CSV's folder or the one above it, whichever holds the first image)",
    )
    parser.add_argument("--texts", default=None, help="CSV with a text column (text, Report Impression, ...)")
    parser.add_argument("--out", required=True, help="output .npz file")
    parser.add_argument("--regions", action="store_true", help="also store region features [N, D, h, w]")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument(
        "--cache", default=None, help="cache folder (default $GLORIA_EMBED_CACHE or ~/.cache)"
    )
    parser.add_argument("--no-cache", action="store_true", help="do not read or write the cache")
    parser.add_argument("--no-progress", action="store_true")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from gloria.tasks import embed as E

    paths = E.list_images(args.images, args.image_root)
    texts = E.read_texts(args.texts) if args.texts else None
    model = load_model(args)
    cache = embedding_cache(args, model)
    result = E.run_embed(
        model,
        paths,
        texts,
        batch_size=args.batch_size,
        cache=cache,
        with_regions=args.regions,
        progress=not args.no_progress,
    )
    out = result.save(args.out)
    log.info(
        "wrote %s: %d images (%d from cache), %d texts", out, len(paths), result.cache_hits, len(texts or [])
    )
    return 0
