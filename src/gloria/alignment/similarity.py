"""Similarities of GLoRIA at inference (method.md section 5): cosine, the default / retrieval / legacy local
similarities, z-scoring and the rules that combine global and local scores in each mode.

Shapes: N images, K texts, D embedding dim, T word slots, h x w regions.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from gloria.alignment.attention import check_regions_words, scaled_local_features
from gloria.alignment.local import local_scores
from gloria.config import AlignmentConfig

# the release's zero-shot helper hard-coded these (``attention_fn(..., 4.0)`` and ``mul_(5.0)``)
LEGACY_ATTENTION_TEMPERATURE = 4.0
LEGACY_WORD_TEMPERATURE = 5.0


def cosine_matrix(a: Tensor, b: Tensor, eps: float = 1e-8) -> Tensor:
    """Cosine of every row of a [N,D] with every row of b [K,D] -> [N,K]; dot / clamp(|a||b|, min=eps)."""
    if a.dim() != 2 or b.dim() != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(
            f"cosine_matrix needs a [N, D] and b [K, D], got {tuple(a.shape)} and {tuple(b.shape)}"
        )
    norms = torch.linalg.vector_norm(a, dim=1, keepdim=True) * torch.linalg.vector_norm(b, dim=1).unsqueeze(0)
    return (a @ b.t()) / norms.clamp_min(eps)


def zscore(x: Tensor, dim: int) -> Tensor:
    """(x - mean) / std along ``dim`` with the population std; a constant slice becomes zeros."""
    centred = x - x.mean(dim=dim, keepdim=True)
    std = x.std(dim=dim, keepdim=True, correction=0)
    return centred / std.clamp_min(torch.finfo(x.dtype).tiny)


def local_logits(
    regions: Tensor, words: Tensor, word_mask: Tensor, cfg: AlignmentConfig, **options: object
) -> Tensor:
    """logit_temperature * log sum_j exp(word_temperature * R) over ``word_mask``, on features already
    through ``scaled_local_features`` (the objective scales once before gathering). -> [N, K]."""
    z = local_scores(
        regions,
        words,
        word_mask,
        attention_temperature=cfg.attention_temperature,
        word_temperature=cfg.word_temperature,
        agg=cfg.local_agg,
        **options,  # type: ignore[arg-type]
    )
    return cfg.logit_temperature * z


def default_local_similarity(
    regions: Tensor, words: Tensor, word_mask: Tensor, cfg: AlignmentConfig, **options: object
) -> Tensor:
    """The training formula: logit_temperature * log sum_j exp(word_temperature * R) over CLS and the real
    words (``word_mask``), with the model's temperatures and ``local_feature_scale``.
    regions [N,D,h,w], words [K,D,T] -> [N,K]."""
    scale = cfg.local_feature_scale
    return local_logits(
        scaled_local_features(regions, scale), scaled_local_features(words, scale), word_mask, cfg, **options
    )


def retrieval_local_similarity(
    regions: Tensor, words: Tensor, word_mask: Tensor, cfg: AlignmentConfig, **options: object
) -> Tensor:
    """As ``default_local_similarity`` over the words only: slot 0 ([CLS]) is dropped from the mask."""
    check_regions_words(regions, words, word_mask)
    words_only = word_mask.clone()
    words_only[:, 0] = False
    if not bool(words_only.any(dim=1).all()):
        empty = (~words_only.any(dim=1)).nonzero().flatten().tolist()
        raise ValueError(f"text(s) {empty[:10]} have no word besides [CLS] for retrieval")
    return default_local_similarity(regions, words, words_only, cfg, **options)


def legacy_word_mask(cap_lens: Sequence[int], num_slots: int, prompts: Sequence[str] | None = None) -> Tensor:
    """The release's zero-shot slice ``1 : c_k + 1`` as a [K, T] mask; ValueError naming the prompt when
    c_k > T - 1 (the release crashed there) or c_k < 1."""
    mask = torch.zeros(len(cap_lens), num_slots, dtype=torch.bool)
    for k, c in enumerate(cap_lens):
        c = int(c)
        if c > num_slots - 1 or c < 1:
            what = repr(prompts[k]) if prompts is not None and k < len(prompts) else f"number {k}"
            raise ValueError(
                f"legacy zero-shot similarity: prompt {what} has cap_len {c} (characters other than '['), "
                f"outside 1..{num_slots - 1} (the {num_slots} word slots minus [CLS]); the release "
                "crashed on such prompts -- shorten it or use the default (legacy=False) similarity"
            )
        mask[k, 1 : c + 1] = True
    return mask


def legacy_local_similarity(
    regions: Tensor,
    words: Tensor,
    cap_lens: Sequence[int],
    prompts: Sequence[str] | None = None,
    *,
    local_feature_scale: float | None = None,
    **options: object,
) -> Tensor:
    """The release's zero-shot local similarity: slots 1..c_k (c_k = ``cap_lens[k]``, running past the words
    into [SEP] and zero slots, as the release did), attention temperature 4, 5 * max_j R, no logit
    temperature; a model's ``local_feature_scale`` (not in the release) when given.
    regions [N,D,h,w], words [K,D,T] -> [N,K]."""
    check_regions_words(regions, words)
    if len(cap_lens) != words.shape[0]:
        raise ValueError(f"cap_lens has {len(cap_lens)} entries for words {tuple(words.shape)}")
    mask = legacy_word_mask(cap_lens, words.shape[2], prompts).to(words.device)
    return local_scores(
        scaled_local_features(regions, local_feature_scale),
        scaled_local_features(words, local_feature_scale),
        mask,
        attention_temperature=LEGACY_ATTENTION_TEMPERATURE,
        word_temperature=LEGACY_WORD_TEMPERATURE,
        agg="max",
        **options,  # type: ignore[arg-type]
    )


def combine_default(global_sim: Tensor, local_sim: Tensor) -> Tensor:
    """Default and retrieval ``both``: z-score each over the candidate texts of one image (dim 1), average.
    [N,K], [N,K] -> [N,K]; an image's row never depends on the other images."""
    return (zscore(global_sim, dim=1) + zscore(local_sim, dim=1)) / 2


def combine_legacy(global_sim: Tensor, local_sim: Tensor) -> Tensor:
    """The release's ``both``: (local + global) / 2, no standardisation."""
    return (local_sim + global_sim) / 2
