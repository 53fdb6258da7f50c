"""Image-text retrieval evaluation (paper protocol; method.md section 5, "retrieval").

Image->text and text->image over precomputed features, a hit = same class; global cosine, local
(words only, ``logit_temperature * log sum exp``) or both (z-scored over one query's candidates, averaged).
Scores are produced one chunk of queries at a time, so memory is bounded by chunk x candidates.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from numpy.typing import ArrayLike
from torch import Tensor
from tqdm.auto import tqdm

from gloria.alignment.similarity import combine_default, cosine_matrix, retrieval_local_similarity
from gloria.config import AlignmentConfig
from gloria.data.eval_set import EvalSet
from gloria.tasks.embed import EmbeddingCache, ImageEmbeddings
from gloria.types import ImageFeatures, TextFeatures

log = logging.getLogger(__name__)

Direction = Literal["image_to_text", "text_to_image"]
Similarity = Literal["global", "local", "both"]
DIRECTIONS: tuple[Direction, ...] = ("image_to_text", "text_to_image")
SIMILARITIES: tuple[Similarity, ...] = ("global", "local", "both")


@dataclass(frozen=True)
class RetrievalInputs:
    """What retrieval scores: image embeddings [N, D] (+ regions [N, D, h, w] for local), text embeddings
    [K, D] (+ words [K, D, T] and word_mask [K, T] for local)."""

    image_embedding: Tensor
    text_embedding: Tensor
    regions: Tensor | None = None
    words: Tensor | None = None
    word_mask: Tensor | None = None

    @classmethod
    def from_features(cls, images: ImageFeatures, texts: TextFeatures) -> RetrievalInputs:
        return cls(images.embedding, texts.embedding, images.regions, texts.words, texts.word_mask)


def score_chunks(
    inputs: RetrievalInputs,
    *,
    direction: Direction,
    similarity: Similarity,
    alignment: AlignmentConfig,
    chunk_size: int = 1024,
    local_text_chunk: int | None = None,
) -> Iterator[tuple[int, Tensor]]:
    """Yield ``(first query index, scores [c, candidates])`` for consecutive chunks of queries."""
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {list(DIRECTIONS)}, got {direction!r}")
    if similarity not in SIMILARITIES:
        raise ValueError(f"similarity must be one of {list(SIMILARITIES)}, got {similarity!r}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    regions, words, word_mask = inputs.regions, inputs.words, inputs.word_mask
    local_inputs = None
    if regions is not None and words is not None and word_mask is not None:
        local_inputs = (regions, words, word_mask)
    if similarity != "global" and local_inputs is None:
        raise ValueError(f"similarity {similarity!r} needs image regions, text words and word_mask")
    i2t = direction == "image_to_text"
    n_queries = (inputs.image_embedding if i2t else inputs.text_embedding).shape[0]
    for q0 in range(0, n_queries, chunk_size):
        q = slice(q0, min(q0 + chunk_size, n_queries))
        if i2t:
            glob = cosine_matrix(inputs.image_embedding[q], inputs.text_embedding)
        else:
            glob = cosine_matrix(inputs.text_embedding[q], inputs.image_embedding)
        if similarity == "global" or local_inputs is None:
            yield q0, glob
            continue
        regions, words, word_mask = local_inputs
        if i2t:
            loc = retrieval_local_similarity(
                regions[q], words, word_mask, alignment, chunk_size=local_text_chunk
            )
        else:
            loc = retrieval_local_similarity(
                regions, words[q], word_mask[q], alignment, chunk_size=local_text_chunk
            ).t()
        yield q0, (loc if similarity == "local" else combine_default(glob, loc))


def full_scores(inputs: RetrievalInputs, **kwargs: object) -> Tensor:
    """The whole query x candidate matrix (concatenated chunks); for small sets and tests."""
    return torch.cat([s for _, s in score_chunks(inputs, **kwargs)])  # type: ignore[arg-type]


@dataclass(frozen=True)
class RetrievalResult:
    direction: Direction
    similarity: Similarity
    precision: dict[int, float]
    n_queries: int
    n_candidates: int
    top1_class_counts: tuple[int, ...] = ()  # queries whose top candidate has label c, per label value c
    candidate_class_counts: tuple[int, ...] = ()  # candidates per label value

    def as_dict(self) -> dict[str, object]:
        return {
            "direction": self.direction,
            "similarity": self.similarity,
            "precision_at_k": {str(k): v for k, v in self.precision.items()},
            "n_queries": self.n_queries,
            "n_candidates": self.n_candidates,
            "top1_class_counts": list(self.top1_class_counts),
            "candidate_class_counts": list(self.candidate_class_counts),
        }


@torch.no_grad()
def evaluate_retrieval(
    inputs: RetrievalInputs,
    image_labels: ArrayLike,
    text_labels: ArrayLike,
    *,
    direction: Direction,
    similarity: Similarity,
    alignment: AlignmentConfig,
    ks: Sequence[int] = (1, 5, 10, 100),
    chunk_size: int = 1024,
    progress: bool = False,
) -> RetrievalResult:
    """Precision@K (mean over queries of the share of the top K candidates with the query's class).

    Ties are broken by ``torch.topk`` order; equal to ``metrics.precision_at_k`` on the full matrix for
    untied scores.
    """
    img_lab = torch.as_tensor(np.asarray(image_labels))
    txt_lab = torch.as_tensor(np.asarray(text_labels))
    if (
        img_lab.shape[0] != inputs.image_embedding.shape[0]
        or txt_lab.shape[0] != inputs.text_embedding.shape[0]
    ):
        raise ValueError(
            f"labels ({img_lab.shape[0]} images, {txt_lab.shape[0]} texts) do not match the features "
            f"({inputs.image_embedding.shape[0]} images, {inputs.text_embedding.shape[0]} texts)"
        )
    query_lab, cand_lab = (img_lab, txt_lab) if direction == "image_to_text" else (txt_lab, img_lab)
    k_max = max(ks)
    if min(ks) < 1 or k_max > cand_lab.shape[0]:
        raise ValueError(f"K values {list(ks)} must lie in 1..{cand_lab.shape[0]} (the number of candidates)")
    hits_sum = torch.zeros(len(ks), dtype=torch.float64)
    n_labels = int(max(int(cand_lab.max()), int(query_lab.max()))) + 1 if cand_lab.numel() else 0
    top1 = torch.zeros(n_labels, dtype=torch.int64)
    chunks = score_chunks(
        inputs, direction=direction, similarity=similarity, alignment=alignment, chunk_size=chunk_size
    )
    n_queries = query_lab.shape[0]
    bar = tqdm(total=n_queries, desc=f"{direction} {similarity}", unit="query", disable=not progress)
    for q0, scores in chunks:
        top = scores.topk(k_max, dim=1).indices.cpu()  # [c, k_max]
        hits = (cand_lab[top] == query_lab[q0 : q0 + scores.shape[0], None]).to(torch.float64)
        for i, k in enumerate(ks):
            hits_sum[i] += hits[:, :k].mean(dim=1).sum()
        top1 += torch.bincount(cand_lab[top[:, 0]].long(), minlength=n_labels)
        bar.update(scores.shape[0])
    bar.close()
    precision = {int(k): float(hits_sum[i] / n_queries) for i, k in enumerate(ks)}
    log.info("%s %s: %s", direction, similarity, precision)
    candidates = torch.bincount(cand_lab.long(), minlength=n_labels)
    return RetrievalResult(
        direction,
        similarity,
        precision,
        n_queries,
        int(cand_lab.shape[0]),
        tuple(int(c) for c in top1),
        tuple(int(c) for c in candidates),
    )


def evaluate_grid(
    inputs: RetrievalInputs,
    labels: ArrayLike,
    *,
    directions: Sequence[Direction],
    similarities: Sequence[Similarity],
    alignment: AlignmentConfig,
    ks: Sequence[int],
    chunk_size: int = 1024,
    progress: bool = False,
) -> list[dict[str, object]]:
    """``evaluate_retrieval`` for every direction x similarity on one labelled set (row i of the images
    and of the texts share ``labels[i]``); one ``RetrievalResult.as_dict()`` per pair, in that order."""
    return [
        evaluate_retrieval(
            inputs,
            labels,
            labels,
            direction=direction,
            similarity=similarity,
            alignment=alignment,
            ks=ks,
            chunk_size=chunk_size,
            progress=progress,
        ).as_dict()
        for direction in directions
        for similarity in similarities
    ]


# ---------------------------------------------------------------------------------------------- the runner


@dataclass
class RetrievalRun:
    """What ``run_retrieval`` measured: one ``RetrievalResult.as_dict()`` row per direction x similarity,
    the classes (label = index), the K values used (those above the candidate count are dropped) and the
    chance of a random candidate being a hit."""

    rows: list[dict[str, object]]
    classes: list[str]
    ks: list[int]
    dropped_ks: list[int]
    chance: float


def run_retrieval(
    model: Any,
    data: EvalSet,
    *,
    images: ImageEmbeddings | None = None,
    directions: Sequence[Direction] = DIRECTIONS,
    similarities: Sequence[Similarity] = SIMILARITIES,
    ks: Sequence[int] = (1, 5, 10, 100),
    chunk_size: int = 1024,
    batch_size: int = 32,
    cache: EmbeddingCache | None = None,
    progress: bool = False,
) -> RetrievalRun:
    """Image->text and text->image retrieval on an evaluation set (hit = same class): encode (or take) the
    images, encode the report texts, score in chunks on the CPU and count the hits."""
    from gloria.tasks.embed import embed_eval_images, embed_texts, on_cpu
    from gloria.tasks.metrics import chance_levels

    empty = [i for i, t in enumerate(data.texts) if not t.strip()]
    if empty:
        raise ValueError(f"row {empty[0] + 2} has no report text (retrieval needs one per row)")
    embedded = embed_eval_images(model, data.paths, images, batch_size=batch_size, cache=cache)
    texts = on_cpu(embed_texts(model, data.texts, batch_size=batch_size).features)
    inputs = RetrievalInputs.from_features(embedded.features(), texts)
    classes = data.classes
    labels = np.array([classes.index(t) for t in data.tasks])
    usable = [k for k in ks if k <= len(labels)]
    dropped = sorted(set(ks) - set(usable))
    if dropped:
        log.warning("dropped K values larger than the %d candidates: %s", len(labels), dropped)
    rows = evaluate_grid(
        inputs,
        labels,
        directions=directions,
        similarities=similarities,
        alignment=model.config.alignment,
        ks=usable,
        chunk_size=chunk_size,
        progress=progress,
    )
    return RetrievalRun(rows, classes, usable, dropped, chance_levels(data.tasks)[1])
