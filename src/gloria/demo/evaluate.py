"""Demo stages 3, 4 and 7 on one model: zero-shot classification and retrieval on the 5x200-style set,
word-to-region grounding on held-out SynthCXR findings (the evaluation modules of ``gloria.tasks``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from gloria.model import GLoRIA
from gloria.tasks import embed as E
from gloria.tasks import grounding as G
from gloria.tasks import retrieval as R
from gloria.tasks import zero_shot as Z
from gloria.types import TextFeatures

log = logging.getLogger(__name__)

ZERO_SHOT_CSV = "CheXpert-v1.0/chexpert_5x200.csv"


@dataclass
class EvalSet:
    """The 5x200-style rows: image files, task (class) per row, report impression per row."""

    paths: list[Path]
    tasks: list[str]
    texts: list[str]


def read_zero_shot_set(synth_root: Path) -> EvalSet:
    """SynthCXR's ``chexpert_5x200.csv`` (paths relative to the set's root); at least two classes needed."""
    from gloria.data.chexpert_5x200 import REPORT_COLUMN, read_5x200_csv

    frame = read_5x200_csv(synth_root / ZERO_SHOT_CSV).frame
    if frame["task"].nunique() < 2:
        raise ValueError(f"{synth_root / ZERO_SHOT_CSV}: fewer than two classes; generate more images")
    paths = [synth_root / str(p) for p in frame["Path"]]
    texts = frame[REPORT_COLUMN].fillna("").astype(str).tolist()
    return EvalSet(paths, frame["task"].astype(str).tolist(), texts)


def on_cpu(features: TextFeatures) -> TextFeatures:
    """Text features with every tensor on the CPU, where image embeddings are kept (``--device cuda``)."""
    return TextFeatures(
        words=features.words.cpu(),
        embedding=features.embedding.cpu(),
        word_mask=features.word_mask.cpu(),
        legacy_word_counts=features.legacy_word_counts.cpu(),
        word_strings=features.word_strings,
    )


@dataclass
class ZeroShotOutput:
    evaluation: dict[str, Any]
    scores: NDArray[np.float64]
    labels: NDArray[np.int64]


def zero_shot(
    model: GLoRIA,
    images: E.ImageEmbeddings,
    data: EvalSet,
    prompts: dict[str, list[str]],
    *,
    n_boot: int,
    seed: int,
) -> ZeroShotOutput:
    """Scores [N, C] (default ``max`` ensemble, batch-independent) and their accuracy / F1 / AUROC."""
    encoded = Z.encode_class_prompts(model, prompts)
    encoded.encoded = E.EncodedTexts(on_cpu(encoded.encoded.features), encoded.encoded.cap_lens)
    scores = Z.zero_shot_scores(images.features(), encoded, model.config.alignment).double().numpy()
    labels = np.array([encoded.class_names.index(t) for t in data.tasks], dtype=np.int64)
    evaluation = Z.evaluate_scores(scores, labels, encoded.class_names, n_boot=n_boot, seed=seed)
    return ZeroShotOutput(evaluation, scores, labels)


def retrieval(
    model: GLoRIA, images: E.ImageEmbeddings, data: EvalSet, ks: tuple[int, ...]
) -> list[dict[str, object]]:
    """P@K both ways (global cosine, and global + local), a hit being a candidate of the query's class."""
    texts = on_cpu(E.embed_texts(model, data.texts).features)
    inputs = R.RetrievalInputs.from_features(images.features(), texts)
    labels = np.array([sorted(set(data.tasks)).index(t) for t in data.tasks])
    usable = tuple(k for k in ks if k <= len(labels))
    return R.evaluate_grid(
        inputs,
        labels,
        directions=R.DIRECTIONS,
        similarities=("global", "both"),
        alignment=model.config.alignment,
        ks=usable,
    )


def grounding_cases(synth_root: Path) -> list[G.GroundingCase]:
    """Grounding cases of the images in SynthCXR's ``valid`` split (never seen in pretraining)."""
    cases = [c for c in G.synth_grounding_cases(synth_root) if "/valid/" in c.image_path.as_posix()]
    if len(cases) < 2:
        raise ValueError(f"only {len(cases)} grounding cases in the valid split of {synth_root}")
    return cases


def grounding(
    model: GLoRIA, cases: list[G.GroundingCase], *, seed: int, n_examples: int
) -> G.GroundingOutput:
    """Readouts of the model next to the image-blind baselines (random, class and class+words priors)."""
    return G.evaluate_grounding(model, cases, seed=seed, n_examples=n_examples)
