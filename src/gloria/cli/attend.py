"""``gloria attend``: word and phrase attention maps on the original image pixels (PNG overlay), or, with
``--evaluate``, grounding metrics on SynthCXR masks or RSNA boxes next to image-blind baselines."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gloria.cli.embed import add_model_argument, load_model

if TYPE_CHECKING:
    import numpy as np

log = logging.getLogger(__name__)

MAX_MAP_SIDE = 1024  # the maps and the overlay are drawn at most this large (longer side), so memory stays
# bounded for any image: a 12000 x 12000 input is read once (144 MB) and the maps are 1024 px, not 12000 px


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "attend",
        help="attention maps of a text over an image (PNG), or grounding evaluation",
        description="Per-word and whole-phrase maps mapped back to the original image (resize, pad and crop "
        "undone). With --evaluate ROOT (SynthCXR or RSNA-style): pointing game, IoU/Dice, CNR vs baselines.",
    )
    parser.add_argument("image", nargs="?", help="JPEG/PNG/DICOM image")
    add_model_argument(parser)
    parser.add_argument("--text", help='phrase, e.g. "small left pleural effusion"')
    parser.add_argument(
        "--readout", choices=["two_stage", "two_stage_no_cls", "first_stage", "cosine"], default="two_stage"
    )
    parser.add_argument("--out", required=True, help="PNG file (single image) or folder (--evaluate)")
    parser.add_argument(
        "--save-maps",
        default=None,
        help=f"also write the maps [words+1, H, W] to this .npz (H, W: the image's, longer side at most "
        f"{MAX_MAP_SIDE})",
    )
    parser.add_argument(
        "--evaluate", default=None, metavar="ROOT", help="data folder to evaluate grounding on"
    )
    parser.add_argument(
        "--dataset",
        choices=["synth", "rsna"],
        default="synth",
        help="--evaluate ROOT is SynthCXR (ground-truth masks + report words) or RSNA-style (boxes)",
    )
    parser.add_argument("--max-cases", type=int, default=None, help="evaluate on at most this many findings")
    parser.add_argument("--seed", type=int, default=0)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.evaluate:
        return _evaluate(args)
    if not args.image or not args.text:
        raise ValueError("attend needs IMAGE and --text (or --evaluate ROOT)")
    if Path(args.out).is_dir():
        raise ValueError(
            f"--out {args.out} is a folder; give the PNG file to write (e.g. {args.out}/map.png)"
        )
    import numpy as np
    import torch

    from gloria.data.cache import resize_longer_side
    from gloria.data.images import read_image
    from gloria.data.transforms import ImagePreprocessor
    from gloria.tasks.embed import embed_texts
    from gloria.tasks.grounding import phrase_map, word_maps
    from gloria.viz import plots
    from gloria.viz.maps import normalise_for_display, to_original

    model = load_model(args)
    cfg = model.config
    gray = read_image(args.image)
    pre = ImagePreprocessor(cfg.transforms)
    with torch.no_grad():
        image = model.encode_images(pre(gray)[None].to(model.device))
        text = embed_texts(model, [args.text]).features
        maps = word_maps(
            image.regions.to(text.words.dtype),
            text.words,
            text.word_mask,
            readout=args.readout,
            attention_temperature=cfg.alignment.attention_temperature,
            cosine_temperature=cfg.alignment.logit_temperature,
            local_feature_scale=cfg.alignment.local_feature_scale,
        )[0]
    n_words = int(text.word_mask[0].sum()) - 1  # slots 1..n
    if n_words < 1:
        raise ValueError(f"--text {args.text!r} has no words after cleaning")
    slots = list(range(1, n_words + 1))
    names = [text.word_strings[0][j] for j in slots]
    stacked = torch.cat([phrase_map(maps, slots)[None], maps[slots]])  # [1 + n, h, w]
    if max(gray.shape) > MAX_MAP_SIDE:  # maps at a bounded resolution; the model saw the full image
        log.info("image %s is %d x %d: maps drawn at most %d px", args.image, *gray.shape[::-1], MAX_MAP_SIDE)
        gray = resize_longer_side(gray, MAX_MAP_SIDE)
    geom = pre.geometry(*gray.shape)
    full = to_original(stacked, geom)  # [1 + n, H, W]
    titles = [f"phrase ({args.readout})", *names]
    fig = plots.attention_overlays(gray, [normalise_for_display(m) for m in full], titles)
    out = plots.save(fig, args.out)
    if args.save_maps:
        np.savez(args.save_maps, maps=full, titles=np.array(titles, dtype=str))
    log.info("wrote %s (%d words, max of phrase map at row/col %s)", out, n_words, _argmax(full[0]))
    return 0


def _argmax(m: np.ndarray) -> tuple[int, int]:
    import numpy as np

    r, c = np.unravel_index(int(np.nanargmax(m)), m.shape)
    return int(r), int(c)


def _mask_box(mask: np.ndarray) -> tuple[float, float, float, float]:
    import numpy as np

    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    return float(cols[0]), float(rows[0]), float(cols[-1] - cols[0] + 1), float(rows[-1] - rows[0] + 1)


def _evaluate(args: argparse.Namespace) -> int:
    from gloria.data.images import read_image
    from gloria.tasks.grounding import evaluate_grounding, rsna_grounding_cases, synth_grounding_cases
    from gloria.tasks.report import Report, add_grounding
    from gloria.viz import plots
    from gloria.viz.maps import normalise_for_display

    if args.dataset == "rsna":
        cases = rsna_grounding_cases(args.evaluate, limit=args.max_cases)
    else:
        cases = synth_grounding_cases(args.evaluate)[: args.max_cases]
    model = load_model(args)
    result = evaluate_grounding(model, cases, seed=args.seed)
    report = Report("Grounding", Path(args.out))
    report.results["settings"] = {
        "model": args.model,
        "data": str(args.evaluate),
        "dataset": args.dataset,
        "cases": len(cases),
    }
    report.text(
        f"Model `{args.model}` on `{args.evaluate}`: half of the findings (seeded) fit the location priors, "
        "all methods are scored on the other half. `pointing_tol` dilates the truth by one region."
    )
    add_grounding(report, result.summary)
    for k, (case, maps) in enumerate(result.examples):
        gray = read_image(case.image_path)
        names = list(maps)
        fig = plots.attention_overlays(
            gray,
            [normalise_for_display(maps[n]) for n in names],
            names,
            boxes=[_mask_box(case.mask)],
            columns=4,
        )
        report.figure(fig, f"example_{k}", f"{case.label}: {case.text}")
    json_path, md_path = report.write()
    log.info("wrote %s and %s", json_path, md_path)
    return 0
