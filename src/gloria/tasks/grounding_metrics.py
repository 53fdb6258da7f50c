"""Phrase grounding on boxes and masks: per phrase, its word-region map in original pixels scored by CNR
(BioViL's |mean in - mean out| / sqrt(var in + var out)), IoU and Dice at several thresholds (mIoU / mDice
their means), and the pointing game, beside the image-blind baselines of ``gloria.tasks.grounding``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from gloria.tasks import metrics as M
from gloria.tasks.grounding import READOUTS, GroundingCase, Readout, evaluate_grounding, score_map, tokens

log = logging.getLogger(__name__)

# fractions of each map's range (min to max) a pixel must reach to count as predicted (BioViL-T's mIoU
# averages IoU over such thresholds)
THRESHOLDS: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5)
HEADLINE: tuple[str, ...] = ("cnr", "miou", "mdice", "pointing")


def score_thresholds(
    heatmap: NDArray[np.floating],
    mask: NDArray[np.bool_],
    tolerance: int,
    thresholds: Sequence[float] = THRESHOLDS,
) -> dict[str, float]:
    """``score_map``'s metrics plus IoU / Dice at every threshold (``iou@0.3``) and their means."""
    out = score_map(heatmap, mask, tolerance)
    ious, dices = [], []
    for t in thresholds:
        iou, dice = M.iou_dice(M.threshold_map(heatmap, t), mask)
        out[f"iou@{t:g}"], out[f"dice@{t:g}"] = iou, dice
        ious.append(iou)
        dices.append(dice)
    out["miou"], out["mdice"] = float(np.mean(ious)), float(np.mean(dices))
    return out


def phrase_cases(frame: pd.DataFrame, image_root: str | Path | None = None) -> list[GroundingCase]:
    """One case per (image, phrase) of a phrase-box frame (``gloria.data.phrase_boxes``): the union of its
    boxes (or masks) in original pixels, every word of the phrase as the words to map, the phrase's words
    as the location words of the side/level prior. Relative paths are resolved against ``image_root``."""
    from gloria.data.rle import rle_decode

    root = Path(image_root) if image_root is not None else Path()
    cases = []
    for (path, text), rows in frame.groupby(["path", "label_text"], sort=False):
        W, H = int(rows["image_width"].iloc[0]), int(rows["image_height"].iloc[0])
        mask = np.zeros((H, W), dtype=bool)
        for row in rows.itertuples(index=False):
            rle = getattr(row, "mask_rle", None)
            if isinstance(rle, str) and rle.strip():
                mask |= rle_decode(rle, H, W).astype(bool)
            else:
                box = (float(row.x), float(row.y), float(row.w), float(row.h))  # type: ignore[arg-type]
                mask |= M.box_to_mask(box, H, W)
        p = Path(str(path))
        words = tokens(str(text))
        cases.append(
            GroundingCase(
                p if p.is_absolute() else root / p,
                str(text),
                str(rows["category"].iloc[0]),
                mask,
                words,
                words,
            )
        )
    return cases


def split_cases(
    frame: pd.DataFrame, image_root: str | Path | None = None
) -> tuple[list[GroundingCase], list[GroundingCase] | None]:
    """(test cases, training cases or None): with a ``split`` column, ``train`` rows fit the priors."""
    if "split" not in frame.columns:
        return phrase_cases(frame, image_root), None
    train = frame["split"].astype(str).str.lower() == "train"
    if not (~train).any():
        raise M.NotScorableError(
            "every row of the phrase-box table is in the train split: nothing to evaluate"
        )
    fit = phrase_cases(frame[train], image_root) if train.any() else None
    return phrase_cases(frame[~train], image_root), fit


def summarise_cases(
    per_case: dict[str, list[dict[str, float]]], *, n_boot: int = 1000, seed: int = 0
) -> dict[str, dict[str, Any]]:
    """Per method, every metric's mean over cases with a percentile bootstrap interval (NaN cases skipped)."""
    out: dict[str, dict[str, Any]] = {}
    for method, rows in per_case.items():
        table = pd.DataFrame(rows)
        entry: dict[str, Any] = {"n": len(rows)}
        for col in table.columns:
            values = table[col].to_numpy(dtype=np.float64)

            def mean(idx: NDArray[np.int64], v: NDArray[np.float64] = values) -> float:
                picked = v[idx]
                picked = picked[np.isfinite(picked)]
                return float(picked.mean()) if picked.size else float("nan")

            entry[col] = M.bootstrap_ci(mean, len(values), n_boot=n_boot, seed=seed).as_dict()
        out[method] = entry
    return out


def per_category(per_case: dict[str, list[dict[str, float]]], labels: Sequence[str]) -> dict[str, Any]:
    """Per method: the headline metrics' mean per category (``categories``, with the phrase count) and the
    unweighted mean over categories (``category_mean``, the average MS-CXR papers report)."""
    out: dict[str, Any] = {}
    for method, rows in per_case.items():
        table = pd.DataFrame(rows)[list(HEADLINE)].assign(category=list(labels))
        means = table.groupby("category", sort=True)[list(HEADLINE)].mean()
        counts = table["category"].value_counts()
        out[method] = {
            "categories": {
                str(c): {**{k: float(v) for k, v in means.loc[c].items()}, "n": int(counts[c])}
                for c in means.index
            },
            "category_mean": {k: float(means[k].mean()) for k in HEADLINE},
        }
    return out


def run_grounding(
    model: Any,
    frame: pd.DataFrame,
    *,
    image_root: str | Path | None = None,
    readouts: Sequence[Readout] = READOUTS,
    thresholds: Sequence[float] = THRESHOLDS,
    fit_fraction: float = 0.5,
    n_boot: int = 1000,
    seed: int = 0,
    batch_size: int = 32,
    progress: bool = False,
) -> dict[str, Any]:
    """Grounding of every phrase of ``frame``: model readouts and baselines, means with intervals."""
    cases, fit = split_cases(frame, image_root)

    def scorer(heat: NDArray[np.floating], mask: NDArray[np.bool_], tol: int) -> dict[str, float]:
        return score_thresholds(heat, mask, tol, thresholds)

    result = evaluate_grounding(
        model,
        cases,
        readouts=readouts,
        fit_fraction=fit_fraction,
        seed=seed,
        n_examples=0,
        batch_size=batch_size,
        progress=progress,
        fit_cases=fit,
        scorer=scorer,
    )
    methods = summarise_cases(result.per_case, n_boot=n_boot, seed=seed)
    labels = [c.label for c in result.test_cases]
    return {
        "per_category": per_category(result.per_case, labels),
        "n_cases": len(cases) if fit is not None else methods[next(iter(methods))]["n"],
        "n_fit": len(fit) if fit is not None else len(cases) - methods[next(iter(methods))]["n"],
        "prior_fit": "train split" if fit is not None else f"seeded {fit_fraction:g} of the cases",
        "thresholds": list(thresholds),
        "methods": methods,
    }
