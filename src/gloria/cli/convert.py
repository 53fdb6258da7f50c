"""``gloria convert``: a release ``.ckpt`` or a ``gloria train`` pretraining checkpoint -> a safe directory
(safetensors + YAML config + metadata)."""

from __future__ import annotations

import argparse
import logging
from typing import Any

from gloria.cli.embed import add_checkpoint_arguments

log = logging.getLogger(__name__)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "convert",
        help="convert a checkpoint (release or gloria train) to model.safetensors + config.yaml + metadata",
        description=(
            "Read a 2021 release checkpoint or a `gloria train` pretraining checkpoint without running code "
            "from it, check every tensor against the "
            "model, and write a directory that gloria.load_gloria(DIR) loads without any pickle."
        ),
    )
    parser.add_argument(
        "checkpoint",
        help="release checkpoint (pretrained/chexpert_resnet50.ckpt) or runs/NAME/checkpoints/last.ckpt",
    )
    parser.add_argument("--out", required=True, help="output directory")
    add_checkpoint_arguments(parser)
    parser.add_argument("--sha256", default=None, help="expected sha256 of the checkpoint (checked)")
    parser.add_argument("--force", action="store_true", help="replace an existing converted directory")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from gloria.pretrained.convert import convert_checkpoint

    out = convert_checkpoint(
        args.checkpoint,
        args.out,
        text_model=args.text_model,
        trust=args.trust,
        sha256=args.sha256,
        overwrite=args.force,
    )
    log.info("wrote %s; load it with gloria.load_gloria(%r)", out, str(out))
    return 0
