"""Local (word-region) scores of GLoRIA for every image against every text (method.md sections 3-4).

Z[i, k] = log sum_j exp(word_temperature * cos(W_k[:, j], c_ik[:, j])) over the masked word slots j of text k,
c_ik the two-stage attention context of text k's words over image i's regions. Batched, chunked over texts
(sorted by length, each chunk padded to its own longest text) and images, optionally recomputed in backward.
"""

from __future__ import annotations

import logging
import math
from typing import Literal

import torch
from torch import Tensor
from torch.utils.checkpoint import checkpoint

from gloria.alignment.attention import check_regions_words

log = logging.getLogger(__name__)

ScoreAggregation = Literal["sum", "mean", "max"]

# default block size, in elements of one [images, R, texts, words] tensor (float32: 32 MiB)
DEFAULT_BLOCK_ELEMENTS = 1 << 23


def _block_scores(
    values_t: Tensor,
    gram: Tensor,
    words: Tensor,
    word_norms: Tensor,
    mask: Tensor,
    attention_temperature: float,
    word_temperature: float,
    agg: ScoreAggregation,
    eps: float,
) -> Tensor:
    """Scores of a block of images against a block of packed texts.

    values_t [n, R, D] regions (row m = region m), gram [n, R, R] = V^T V per image, words [D, k*L] (text k's
    slots at columns k*L .. k*L+L-1), word_norms [k, L], mask [k, L] bool -> [n, k].
    The context norm uses ||c_j||^2 = alpha_j^T G alpha_j and the numerator
    W_j . c_j = sum_m alpha[j,m] a[m,j], so the D x L context is never formed (R < D at the release's scale).
    """
    n, R, D = values_t.shape
    k, L = mask.shape
    scores = (values_t.reshape(n * R, D) @ words).view(n, R, k, L)  # a[i, m, k, j]
    keep = mask.view(1, 1, k, L)
    word_probs = scores.masked_fill(~keep, float("-inf")).softmax(dim=3)  # softmax over words
    alpha = (attention_temperature * word_probs).softmax(dim=1)  # softmax over regions
    numer = (alpha * scores).sum(dim=1)  # W_j . c_j: [n, k, L]
    alpha_flat = alpha.view(n, R, k * L)
    sq_norm = (alpha_flat * torch.bmm(gram, alpha_flat)).sum(dim=1).view(n, k, L)  # ||c_j||^2
    ctx_norm = sq_norm.clamp_min(eps * eps).sqrt()
    cos = numer / (word_norms * ctx_norm).clamp_min(eps)  # R[i, k, j]: [n, k, L]
    if agg == "max":
        return word_temperature * cos.masked_fill(~mask, float("-inf")).amax(dim=2)
    z = torch.logsumexp((word_temperature * cos).masked_fill(~mask, float("-inf")), dim=2)
    if agg == "mean":
        z = z - mask.sum(dim=1).to(z.dtype).log()
    return z


def _pack_words(words: Tensor, word_mask: Tensor, index: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Texts ``index`` with their masked slots moved to the front, padded to the longest of them.

    words [K,D,T], word_mask [K,T] -> (words [D, k*L], norms [k, L], mask [k, L]).
    """
    sub_mask = word_mask[index]  # [k, T]
    counts = sub_mask.sum(dim=1)
    L = int(counts.max())
    order = torch.argsort((~sub_mask).to(torch.int8), dim=1, stable=True)[:, :L]  # masked slots first
    sub = words[index].gather(2, order.unsqueeze(1).expand(-1, words.shape[1], -1))  # [k, D, L]
    mask = torch.arange(L, device=words.device).unsqueeze(0) < counts.unsqueeze(1)
    norms = torch.linalg.vector_norm(sub, dim=1)  # [k, L]
    return sub.permute(1, 0, 2).reshape(words.shape[1], -1), norms, mask


def local_scores(
    regions: Tensor,
    words: Tensor,
    word_mask: Tensor,
    *,
    attention_temperature: float,
    word_temperature: float,
    agg: ScoreAggregation = "sum",
    chunk_size: int | None = None,
    image_chunk_size: int | None = None,
    recompute: bool = False,
    eps: float = 1e-8,
) -> Tensor:
    """Local scores of every image against every text: regions [N,D,h,w], words [K,D,T], mask [K,T] -> [N,K].

    ``agg="sum"``: log sum_j exp(word_temperature * R[i,k,j]) over the masked slots; ``"mean"``: the mean
    inside the log; ``"max"``: word_temperature * max_j R (the release's zero-shot form). No logit
    temperature. Cosines are dot / clamp(norm_a * norm_b, min=eps), as in the release.
    ``chunk_size`` texts per block (default: as many as fit ``DEFAULT_BLOCK_ELEMENTS``), ``image_chunk_size``
    images per block (default all). ``recompute=True`` recomputes each block in backward
    (torch.utils.checkpoint), so saved memory is O(N*R*R + N*K) instead of O(N*K*T*R).
    """
    check_regions_words(regions, words, word_mask)
    if agg not in ("sum", "mean", "max"):
        raise ValueError(f"agg must be 'sum', 'mean' or 'max', got {agg!r}")
    if chunk_size is not None and chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    if image_chunk_size is not None and image_chunk_size < 1:
        raise ValueError(f"image_chunk_size must be >= 1, got {image_chunk_size}")
    word_mask = word_mask.to(words.device)
    N, D, h, w = regions.shape
    K = words.shape[0]
    R = h * w
    values_t = regions.reshape(N, D, R).transpose(1, 2).contiguous()  # [N, R, D]
    counts = word_mask.sum(dim=1)
    text_order = torch.argsort(counts, stable=True)  # similar lengths share a chunk
    n_img = N if image_chunk_size is None else image_chunk_size
    if chunk_size is None:
        longest = max(int(counts.max()), 1)
        chunk_size = max(1, DEFAULT_BLOCK_ELEMENTS // (min(n_img, N) * R * longest))
    image_blocks = []
    for i0 in range(0, N, n_img):
        vt = values_t[i0 : i0 + n_img]
        image_blocks.append((vt, torch.bmm(vt, vt.transpose(1, 2))))  # regions, Gram [n, R, R]
    columns = []
    for t0 in range(0, K, chunk_size):
        index = text_order[t0 : t0 + chunk_size]
        packed, norms, mask = _pack_words(words, word_mask, index)
        rows = []
        for vt, gram in image_blocks:
            args = (vt, gram, packed, norms, mask, attention_temperature, word_temperature, agg, eps)
            if recompute and torch.is_grad_enabled():
                rows.append(checkpoint(_block_scores, *args, use_reentrant=False))
            else:
                rows.append(_block_scores(*args))
        columns.append(torch.cat(rows, dim=0))
    by_length = torch.cat(columns, dim=1)  # [N, K], columns in text_order
    inverse = torch.empty_like(text_order)
    inverse[text_order] = torch.arange(K, device=text_order.device)
    log.debug("local scores: %d images x %d texts, %d text chunks", N, K, math.ceil(K / chunk_size))
    return by_length[:, inverse]
