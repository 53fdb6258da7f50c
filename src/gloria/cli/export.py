"""``gloria export``: write the image and text towers as ONNX or TorchScript files plus a manifest."""

from __future__ import annotations

import argparse
import logging
from typing import Any

from gloria.cli.embed import add_checkpoint_arguments

log = logging.getLogger(__name__)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "export",
        help="export the image and text towers to ONNX or TorchScript",
        description=(
            "Write image.onnx/text.onnx (or image.pt/text.pt) and export.json. The image tower maps images "
            "to regions and an embedding; the text tower maps token ids to word vectors, an embedding and "
            "the word mask (tokenisation and word strings stay outside the graph)."
        ),
    )
    parser.add_argument(
        "--model",
        required=True,
        help="registered name, release .ckpt, converted directory, a `gloria train` pretraining checkpoint "
        "(or a preset name such as 'tiny' for random weights)",
    )
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--format", choices=["onnx", "torchscript"], default="onnx")
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset (>= 16)")
    add_checkpoint_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from gloria.config import PRESETS, preset
    from gloria.pretrained import registry
    from gloria.pretrained.export import export_model
    from gloria.pretrained.loading import load_gloria

    name = args.model
    if name in PRESETS and name not in registry.MODELS and not Path(name).exists():
        from gloria.model import GLoRIA

        log.warning("exporting the %r preset with random weights", name)
        model = GLoRIA(preset(name)).eval()
    else:
        model = load_gloria(name, "cpu", text_model=args.text_model, trust=args.trust)
    paths = export_model(model, args.out, args.format, opset=args.opset)
    log.info("wrote %s", ", ".join(str(p) for p in paths.values()))
    return 0
