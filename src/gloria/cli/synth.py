"""``gloria synth``: write a SynthCXR data set (images, reports, labels, ground truth) in the real formats."""

from __future__ import annotations

import argparse
import json
import logging
from typing import Any

log = logging.getLogger(__name__)


def _prevalence(text: str) -> dict[str, float]:
    """Parse ``kind=p[,kind=p...]`` (e.g. ``effusion=0.3,edema=0.1``)."""
    out: dict[str, float] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        if "=" not in item:
            raise argparse.ArgumentTypeError(f"--prevalence: expected kind=probability, got {item!r}")
        kind, value = item.split("=", 1)
        try:
            out[kind.strip()] = float(value)
        except ValueError as err:
            raise argparse.ArgumentTypeError(
                f"--prevalence: {value!r} is not a number (in {item!r})"
            ) from err
    return out


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "synth",
        help="generate the SynthCXR data set",
        description="Write SynthCXR (CheXpert-, RSNA- and SIIM-style files plus ground truth) under --out. "
        "Re-running the same command fills in missing files; see docs/synthcxr.md.",
    )
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--n", type=int, default=3000, help="number of images (default 3000)")
    parser.add_argument("--seed", type=int, default=0, help="data set seed (default 0)")
    parser.add_argument("--size", type=int, default=256, help="image side in pixels (default 256)")
    parser.add_argument("--dicom-size", type=int, default=None, help="side of the DICOMs (default: --size)")
    parser.add_argument("--workers", type=int, default=1, help="processes (default 1)")
    parser.add_argument(
        "--subtlety", type=float, default=1.0, help="finding contrast multiplier (default 1.0)"
    )
    parser.add_argument(
        "--finding-scale", type=float, default=0.45, help="focal finding radius / zone half-height"
    )
    parser.add_argument("--noise", type=float, default=0.02, help="image noise s.d. (default 0.02)")
    parser.add_argument("--typo-rate", type=float, default=0.01, help="typos per filler word (default 0.01)")
    parser.add_argument("--uncertain-rate", type=float, default=0.12, help="hedged share of findings")
    parser.add_argument("--prevalence", type=_prevalence, default=None, help="e.g. effusion=0.3,edema=0.1")
    parser.add_argument("--preview", default=None, help="also draw 8 example images with boxes to this PNG")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from gloria.data.synth import SynthConfig, generate
    from gloria.data.synth.config import DEFAULT_PREVALENCE

    prevalence = dict(DEFAULT_PREVALENCE)
    prevalence.update(args.prevalence or {})
    cfg = SynthConfig(
        size=args.size,
        dicom_size=args.dicom_size,
        prevalence=prevalence,
        subtlety=args.subtlety,
        finding_scale=args.finding_scale,
        noise=args.noise,
        typo_rate=args.typo_rate,
        uncertain_rate=args.uncertain_rate,
    )
    summary = generate(args.out, args.n, args.seed, cfg, workers=args.workers, progress=not args.no_progress)
    log.info(
        "SynthCXR: %d images in %s (%d/%d chunks generated, %.1f s); rows: %s",
        summary.n,
        summary.out,
        summary.chunks_generated,
        summary.chunks_total,
        summary.seconds,
        json.dumps(summary.counts),
    )
    if args.preview:
        from gloria.data.synth.preview import pick_examples, save_examples

        path = save_examples(pick_examples(args.seed, cfg, pool=min(args.n, 200)), args.preview)
        log.info("SynthCXR: example grid written to %s", path)
    return 0
