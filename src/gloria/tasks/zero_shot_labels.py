"""Zero-shot on any label set: binary and multi-label tasks, each class scored on its own from its positive
(and optional negative) prompts, over an eval CSV with a path column and 1 / 0 / -1 / blank label columns.

A prompt's logit is the model's training logit, ``(logit_temperature * cosine + local similarity) / 2``, so
a class's score never depends on another class's prompts or on the other images: ``pairs`` is the two-way
softmax of CheXzero, sigmoid(max positive logit - max negative logit); ``positive`` is the max positive
logit alone. The multi-class 5x200 task stays in ``gloria.tasks.zero_shot``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from numpy.typing import NDArray
from torch import Tensor

from gloria.alignment.similarity import cosine_matrix, default_local_similarity
from gloria.config import AlignmentConfig
from gloria.tasks.embed import EmbeddingCache, EncodedTexts
from gloria.tasks.label_metrics import ThresholdRule, evaluate_labels
from gloria.tasks.zero_shot import ClassPrompts
from gloria.types import ImageFeatures

log = logging.getLogger(__name__)

Scoring = Literal["pairs", "positive"]
SCORINGS: tuple[Scoring, ...] = ("pairs", "positive")
LabelPolicy = Literal["zeros", "ones", "ignore"]
LABEL_POLICIES: tuple[LabelPolicy, ...] = ("zeros", "ones", "ignore")
SPLIT_COLUMN = "split"
VALID_NAMES = frozenset({"valid", "val", "validation"})


@dataclass
class LabelSet:
    """An eval set: N image files, C class names, labels [N, C] (1 / 0 / NaN = left out), valid [N] rows
    that choose the thresholds (the rest are the test rows), and the uncertain-label policy applied."""

    paths: list[Path]
    class_names: list[str]
    labels: NDArray[np.float64]
    valid: NDArray[np.bool_]
    uncertain: LabelPolicy


def read_label_csv(
    csv_path: str | Path,
    classes: Sequence[str],
    *,
    path_col: str = "path",
    image_root: str | Path | None = None,
    uncertain: LabelPolicy = "ignore",
    valid_fraction: float = 0.2,
    seed: int = 0,
    require_images: bool = True,
) -> LabelSet:
    """Read an eval CSV: ``path_col`` (relative to ``image_root``, default the CSV's folder) and one column
    per class holding 1, 0, -1 (uncertain) or blank (not mentioned: negative).

    ``uncertain``: -1 -> 0 (``zeros``), -1 -> 1 (``ones``) or left out of that class (``ignore``). A
    ``split`` column marks the validation rows (``valid``/``val``/``validation``) and the test rows
    (``test``); rows of any other split (``train``) are left out. Without it a seeded ``valid_fraction``
    of the rows is drawn. Errors name the file, row, column and value.
    """
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise FileNotFoundError(f"eval CSV not found: {csv_path}")
    if uncertain not in LABEL_POLICIES:
        raise ValueError(f"uncertain policy {uncertain!r} is not one of {list(LABEL_POLICIES)}")
    frame = pd.read_csv(csv_path, dtype={path_col: str})
    missing = [c for c in (path_col, *classes) if c not in frame.columns]
    if missing:
        raise ValueError(f"{csv_path}: missing column(s) {missing}; have {list(frame.columns)}")
    if SPLIT_COLUMN in frame.columns:
        split = frame[SPLIT_COLUMN].astype(str).str.lower()
        frame = frame[split.isin(VALID_NAMES | {"test"})]  # index kept: errors name the file's row
    if frame.empty:
        raise ValueError(f"{csv_path}: no rows (to evaluate)")
    labels = np.empty((len(frame), len(classes)), dtype=np.float64)
    for c, name in enumerate(classes):
        values = pd.to_numeric(frame[name], errors="coerce")
        bad = (values.isna() & frame[name].notna()) | (values.notna() & ~values.isin([1.0, 0.0, -1.0]))
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise ValueError(
                f"{csv_path}: row {int(frame.index[row]) + 2} column {name!r}: value {frame[name].iloc[row]} "
                "is not 1, 0, -1 or blank"
            )
        column = values.fillna(0.0).to_numpy(dtype=np.float64)
        replacement = {"zeros": 0.0, "ones": 1.0, "ignore": np.nan}[uncertain]
        labels[:, c] = np.where(column == -1.0, replacement, column)
    root = Path(image_root) if image_root is not None else csv_path.resolve().parent
    paths = [p if p.is_absolute() else root / p for p in map(Path, frame[path_col])]
    if require_images:
        absent = [p for p in paths if not p.is_file()]
        if absent:
            raise FileNotFoundError(f"{csv_path}: {len(absent)} image(s) not found, first {absent[0]}")
    if SPLIT_COLUMN in frame.columns:
        valid = frame[SPLIT_COLUMN].astype(str).str.lower().isin(VALID_NAMES).to_numpy()
    else:
        if not 0.0 < valid_fraction < 1.0:
            raise ValueError(f"valid_fraction must be in (0, 1), got {valid_fraction}")
        order = np.random.default_rng(seed).permutation(len(frame))
        valid = np.zeros(len(frame), dtype=bool)
        valid[order[: max(1, round(valid_fraction * len(frame)))]] = True
    return LabelSet(paths, list(classes), labels, valid, uncertain)


def concat_label_sets(first: LabelSet, second: LabelSet) -> LabelSet:
    """Rows of ``first`` then ``second`` (e.g. a prepared ``*_valid.csv`` and ``*_test.csv``): same classes
    and uncertain policy required."""
    if first.class_names != second.class_names or first.uncertain != second.uncertain:
        raise ValueError(
            f"cannot join eval sets of classes {first.class_names} / {second.class_names} and policies "
            f"{first.uncertain!r} / {second.uncertain!r}"
        )
    return LabelSet(
        [*first.paths, *second.paths],
        first.class_names,
        np.concatenate([first.labels, second.labels]),
        np.concatenate([first.valid, second.valid]),
        first.uncertain,
    )


@torch.no_grad()
def prompt_logits(
    images: ImageFeatures, texts: EncodedTexts, alignment: AlignmentConfig, *, chunk_size: int = 256
) -> Tensor:
    """Logits [N, P] of N images (regions [N,D,h,w], embedding [N,D]) against P prompts: the mean of the
    global logit ``logit_temperature * cosine`` and the default local similarity (already scaled)."""
    feats = texts.features
    out = []
    for start in range(0, images.embedding.shape[0], chunk_size):
        regions = images.regions[start : start + chunk_size].to(feats.words.device, feats.words.dtype)
        emb = images.embedding[start : start + chunk_size].to(feats.embedding.device, feats.embedding.dtype)
        glob = alignment.logit_temperature * cosine_matrix(emb, feats.embedding)
        local = default_local_similarity(regions, feats.words, feats.word_mask, alignment)
        out.append((glob + local) / 2)
    return torch.cat(out).cpu()


def class_scores(logits: Tensor, prompts: ClassPrompts, scoring: Scoring = "pairs") -> Tensor:
    """Per-class scores [N, C] from prompt logits [N, P]: ``pairs`` sigmoid(max pos - max neg) in (0, 1),
    ``positive`` the max positive logit. Each class uses its own prompts only."""
    if scoring not in SCORINGS:
        raise ValueError(f"scoring must be one of {list(SCORINGS)}, got {scoring!r}")
    cols = []
    for c, name in enumerate(prompts.class_names):
        own = prompts.owner == c
        pos = logits[:, own & ~prompts.negative]
        if pos.shape[1] == 0:
            raise ValueError(f"class {name!r} has no positive prompt")
        if scoring == "positive":
            cols.append(pos.amax(dim=1))
            continue
        neg = logits[:, own & prompts.negative]
        if neg.shape[1] == 0:
            raise ValueError(f"scoring 'pairs': class {name!r} needs negative prompts")
        cols.append(torch.sigmoid(pos.amax(dim=1) - neg.amax(dim=1)))
    return torch.stack(cols, dim=1)


def label_scores(
    images: ImageFeatures, prompts: ClassPrompts, alignment: AlignmentConfig, scoring: Scoring = "pairs"
) -> Tensor:
    """Scores [N, C] of N images for the C classes of ``prompts`` (encoded by ``encode_class_prompts``)."""
    return class_scores(prompt_logits(images, prompts.encoded, alignment), prompts, scoring)


def prompts_for(
    classes: Sequence[str],
    positive: Mapping[str, Sequence[str]],
    negative: Mapping[str, Sequence[str]] | None,
    scoring: Scoring,
) -> tuple[dict[str, list[str]], dict[str, list[str]] | None]:
    """The prompt maps restricted to ``classes``; ValueError naming a class without the prompts it needs."""
    absent = [c for c in classes if c not in positive]
    if absent:
        raise ValueError(f"no positive prompts for class(es) {absent}; prompt classes are {list(positive)}")
    pos = {c: list(positive[c]) for c in classes}
    if scoring == "positive":
        return pos, None
    lacking = [c for c in classes if not negative or c not in negative]
    if negative is None or lacking:
        raise ValueError(f"scoring 'pairs' needs negative prompts for class(es) {lacking}")
    return pos, {c: list(negative[c]) for c in classes}


@dataclass
class LabelZeroShot:
    """Scores [N, C] of an eval set and their evaluation (``gloria.tasks.label_metrics.evaluate_labels``)."""

    scores: NDArray[np.float64]
    evaluation: dict[str, object]


def run_label_zero_shot(
    model: Any,
    data: LabelSet,
    positive: Mapping[str, Sequence[str]],
    negative: Mapping[str, Sequence[str]] | None = None,
    *,
    scoring: Scoring = "pairs",
    rule: ThresholdRule = "mcc",
    n_boot: int = 1000,
    seed: int = 0,
    batch_size: int = 32,
    cache: EmbeddingCache | None = None,
    images_per_chunk: int = 512,
) -> LabelZeroShot:
    """Embed the images, score every class on its own and evaluate (thresholds from the valid rows).

    Images are embedded and scored ``images_per_chunk`` at a time, so the region grids of a large set
    (NIH, PadChest) are never all in memory at once.
    """
    from gloria.tasks.embed import embed_images
    from gloria.tasks.zero_shot import encode_class_prompts

    pos, neg = prompts_for(data.class_names, positive, negative, scoring)
    prompts = encode_class_prompts(model, pos, neg)
    parts = []
    for start in range(0, len(data.paths), images_per_chunk):
        chunk = data.paths[start : start + images_per_chunk]
        images = embed_images(model, chunk, batch_size=batch_size, cache=cache, with_regions=True)
        parts.append(label_scores(images.features(), prompts, model.config.alignment, scoring).double())
    scores = torch.cat(parts).numpy()
    evaluation = evaluate_labels(
        scores, data.labels, data.class_names, valid=data.valid, rule=rule, n_boot=n_boot, seed=seed
    )
    evaluation.update(
        {"scoring": scoring, "uncertain": data.uncertain, "prompts": pos, "negative_prompts": neg}
    )
    return LabelZeroShot(scores, evaluation)
