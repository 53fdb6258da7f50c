"""Local (word-region) scores of GLoRIA for every image against every text (method.md sections 3-4).

Z[i, k] = log sum_j exp(word_temperature * cos(W_k[:, j], c_ik[:, j])) over the masked word slots j of text k,
c_ik the two-stage attention context of text k's words over image i's regions. Batched, chunked over texts
(sorted by length, each chunk padded to its own longest text) and images, optionally recomputed in backward.
"""

from __future__ import annotations

import logging
import math
from typing import Any, Literal

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable
from torch.utils.checkpoint import checkpoint

from gloria.alignment.attention import check_regions_words

log = logging.getLogger(__name__)

ScoreAggregation = Literal["sum", "mean", "max"]

# default block size, in elements of one [images, R, texts, words] tensor (float32: 32 MiB)
DEFAULT_BLOCK_ELEMENTS = 1 << 23


def _region_softmax(word_probs: Tensor, attention_temperature: float) -> Tensor:
    """alpha = softmax over regions (dim 1) of ``attention_temperature * word_probs``; consumes its input.

    p lies in [0, 1], so while R * e^t fits the dtype the exponentials need no max subtraction.
    """
    limit = math.log(torch.finfo(word_probs.dtype).max) - math.log(word_probs.shape[1]) - 1.0
    if 0.0 <= attention_temperature <= limit:
        expd = word_probs.mul_(attention_temperature).exp_()  # bounded by e^t: no max subtraction
        return expd.div_(expd.sum(dim=1, keepdim=True))
    return (attention_temperature * word_probs).softmax(dim=1)


class _AttentionMoments(torch.autograd.Function):
    """Per (image, text, word): numer = W_j . c_j and sq_norm = ||c_j||^2 of the two-stage attention context,
    with a hand-written backward that keeps four block tensors (a, p, alpha, G alpha) instead of autograd's
    dozen and reuses them in place.

    values_t [n, R, D], gram [n, R, R], words [D, k*L], mask [k, L] -> (numer [n, k, L], sq_norm [n, k, L]).
    """

    @staticmethod
    def forward(
        ctx: Any, values_t: Tensor, gram: Tensor, words: Tensor, mask: Tensor, attention_temperature: float
    ) -> tuple[Tensor, Tensor]:
        n, R, D = values_t.shape
        k, L = mask.shape
        scores = (values_t.reshape(n * R, D) @ words).view(n, R, k, L)  # a[i, m, k, j]
        word_probs = scores.masked_fill(~mask.view(1, 1, k, L), float("-inf")).softmax(dim=3)  # p
        alpha = _region_softmax(word_probs.clone(), attention_temperature)  # [n, R, k, L]
        numer = torch.linalg.vecdot(alpha, scores, dim=1)  # sum_m alpha a: [n, k, L]
        g_alpha = torch.bmm(gram, alpha.view(n, R, k * L)).view(n, R, k, L)  # G alpha
        sq_norm = torch.linalg.vecdot(alpha, g_alpha, dim=1)  # alpha^T G alpha: [n, k, L]
        ctx.save_for_backward(values_t, words, scores, word_probs, alpha, g_alpha)
        ctx.attention_temperature = attention_temperature
        return numer, sq_norm

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_numer: Tensor, grad_sq: Tensor) -> tuple[Tensor | None, ...]:
        values_t, words, scores, word_probs, alpha, g_alpha = ctx.saved_tensors
        n, R, k, L = alpha.shape
        D = values_t.shape[2]
        gn = grad_numer.unsqueeze(1)  # [n, 1, k, L]
        gs = grad_sq.unsqueeze(1)
        grad_gram = None
        if ctx.needs_input_grad[1]:  # d/dG of sum alpha^T G alpha * gs = alpha diag(gs) alpha^T
            weighted = (alpha * gs).view(n, R, k * L)
            grad_gram = torch.bmm(weighted, alpha.view(n, R, k * L).transpose(1, 2))
        # d/d alpha: gn * a + 2 gs * G alpha (G symmetric), built in the G alpha buffer
        grad_alpha = g_alpha.mul_(2 * gs).addcmul_(scores, gn)
        # softmax over regions of t * p: dp = t * alpha * (d alpha - sum_m alpha d alpha)
        inner = torch.linalg.vecdot(alpha, grad_alpha, dim=1).unsqueeze(1)
        grad_p = grad_alpha.sub_(inner).mul_(alpha).mul_(ctx.attention_temperature)
        # softmax over words: da = p * (dp - sum_j p dp); plus the direct term alpha * gn of numer
        inner = torch.linalg.vecdot(word_probs, grad_p, dim=3).unsqueeze(3)
        grad_scores = grad_p.sub_(inner).mul_(word_probs).addcmul_(alpha, gn).view(n * R, k * L)
        grad_values = grad_words = None
        if ctx.needs_input_grad[0]:
            grad_values = (grad_scores @ words.t()).view(n, R, D)
        if ctx.needs_input_grad[2]:
            grad_words = values_t.reshape(n * R, D).t() @ grad_scores
        return grad_values, grad_gram, grad_words, None, None


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
    numer, sq_norm = _AttentionMoments.apply(values_t, gram, words, mask, attention_temperature)
    ctx_norm = sq_norm.clamp_min(eps * eps).sqrt()
    cos = numer / (word_norms * ctx_norm).clamp_min(eps)  # R[i, k, j]: [n, k, L]
    if agg == "max":
        return word_temperature * cos.masked_fill(~mask, float("-inf")).amax(dim=2)
    z = torch.logsumexp((word_temperature * cos).masked_fill(~mask, float("-inf")), dim=2)
    if agg == "mean":
        z = z - mask.sum(dim=1).to(z.dtype).log()
    return z


def _packed_chunks(
    words: Tensor, word_mask: Tensor, chunks: list[Tensor]
) -> list[tuple[Tensor, Tensor, Tensor]]:
    """Each chunk's texts with their masked slots moved to the front, padded to the chunk's longest text.

    words [K,D,T], word_mask [K,T] -> per chunk (words [D, k*L], norms [k, L], mask [k, L]). One gather
    and one split for all chunks, so backward scatters into the [K, D, T] gradient once, not per chunk.
    """
    text_order = torch.cat(chunks)
    sub_mask = word_mask[text_order]  # [K, T], texts in chunk order
    order = torch.argsort((~sub_mask).to(torch.int8), dim=1, stable=True)  # masked slots first
    moved = words[text_order].gather(2, order.unsqueeze(1).expand(-1, words.shape[1], -1))  # [K, D, T]
    counts = sub_mask.sum(dim=1)
    out = []
    sizes = [len(c) for c in chunks]
    for sub, cnt in zip(torch.split(moved, sizes), torch.split(counts, sizes)):
        L = int(cnt.max())
        sub = sub[:, :, :L]  # [k, D, L]
        mask = torch.arange(L, device=words.device).unsqueeze(0) < cnt.unsqueeze(1)
        norms = torch.linalg.vector_norm(sub, dim=1)  # [k, L]
        out.append((sub.permute(1, 0, 2).reshape(words.shape[1], -1), norms, mask))
    return out


def plan_text_chunks(word_mask: Tensor, rows: int, chunk_size: int | None = None) -> list[Tensor]:
    """Text indices per block: texts sorted by word count (similar lengths share a block, so little
    padding), ``chunk_size`` per block, or by default as many as keep one [rows, texts, longest] block
    within ``DEFAULT_BLOCK_ELEMENTS`` (rows = images per block * regions). word_mask [K, T] -> list of [k]."""
    counts = word_mask.sum(dim=1)
    order = torch.argsort(counts, stable=True)
    if chunk_size is None:
        longest = max(int(counts.max()), 1)
        chunk_size = max(1, DEFAULT_BLOCK_ELEMENTS // (rows * longest))
    return list(torch.split(order, chunk_size))


def plan_image_block(num_images: int, regions: int, longest: int, image_chunk_size: int | None = None) -> int:
    """Images per block: ``image_chunk_size``, or by default all of them while one text's block of
    [images, regions, longest] fits ``DEFAULT_BLOCK_ELEMENTS``, else as many as fit (at least one), so that
    no block grows with the batch."""
    if image_chunk_size is not None:
        return min(image_chunk_size, num_images)
    return max(1, min(num_images, DEFAULT_BLOCK_ELEMENTS // (regions * max(longest, 1))))


def free_memory_bytes(device: torch.device) -> int:
    """Free memory of ``device``: CUDA's free bytes, else the host's MemAvailable (4 GiB if unknown)."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 4 << 30


def kept_attention_bytes(num_images: int, regions: int, packed_slots: int, dtype: torch.dtype) -> int:
    """Bytes the blocks keep for backward without recompute: four [images, regions, slots] tensors
    (a, p, alpha, G alpha), ``packed_slots`` = sum over text blocks of texts * padded words."""
    return 4 * num_images * regions * packed_slots * torch.finfo(dtype).bits // 8


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
    recompute: bool | Literal["auto"] = "auto",
    eps: float = 1e-8,
) -> Tensor:
    """Local scores of every image against every text: regions [N,D,h,w], words [K,D,T], mask [K,T] -> [N,K].

    ``agg="sum"``: log sum_j exp(word_temperature * R[i,k,j]) over the masked slots; ``"mean"``: the mean
    inside the log; ``"max"``: word_temperature * max_j R (the release's zero-shot form). No logit
    temperature. Cosines are dot / clamp(norm_a * norm_b, min=eps), as in the release.
    ``chunk_size`` texts per block, ``image_chunk_size`` images per block (defaults: blocks within
    ``DEFAULT_BLOCK_ELEMENTS``, see ``plan_image_block`` and ``plan_text_chunks``). ``recompute=True``
    recomputes each block in backward (torch.utils.checkpoint), so saved memory is O(N*R*R + N*K) instead
    of O(N*K*T*R); ``"auto"`` (default) does so when the kept attention (``kept_attention_bytes``) would
    exceed half of ``free_memory_bytes``. Values and gradients are the same either way.
    """
    if torch.is_autocast_enabled(regions.device.type):
        # Under mixed precision the scores are still computed in float32: word cosines multiplied by the
        # temperatures lose too much in bfloat16/float16 (docs/method-notes.md), and the hand-written
        # backward expects one dtype.
        with torch.autocast(device_type=regions.device.type, enabled=False):
            return local_scores(
                regions.float(),
                words.float(),
                word_mask,
                attention_temperature=attention_temperature,
                word_temperature=word_temperature,
                agg=agg,
                chunk_size=chunk_size,
                image_chunk_size=image_chunk_size,
                recompute=recompute,
                eps=eps,
            )
    check_regions_words(regions, words, word_mask)
    if agg not in ("sum", "mean", "max"):
        raise ValueError(f"agg must be 'sum', 'mean' or 'max', got {agg!r}")
    if chunk_size is not None and chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    if image_chunk_size is not None and image_chunk_size < 1:
        raise ValueError(f"image_chunk_size must be >= 1, got {image_chunk_size}")
    if recompute not in (True, False, "auto"):
        raise ValueError(f"recompute must be True, False or 'auto', got {recompute!r}")
    word_mask = word_mask.to(words.device)
    N, D, h, w = regions.shape
    K = words.shape[0]
    R = h * w
    longest = int(word_mask.sum(dim=1).max())
    n_img = plan_image_block(N, R, longest, image_chunk_size)
    chunks = plan_text_chunks(word_mask, n_img * R, chunk_size)
    packed_chunks = _packed_chunks(words, word_mask, chunks)
    values_t = regions.reshape(N, D, R).transpose(1, 2).contiguous()  # [N, R, D]
    image_blocks = [(vt, torch.bmm(vt, vt.transpose(1, 2))) for vt in torch.split(values_t, n_img)]
    grad_needed = torch.is_grad_enabled() and (regions.requires_grad or words.requires_grad)
    if recompute == "auto":
        slots = sum(mask.numel() for _, _, mask in packed_chunks)
        kept = kept_attention_bytes(N, R, slots, regions.dtype)
        recompute = grad_needed and kept > free_memory_bytes(regions.device) // 2
        if recompute:
            log.debug("local scores: recomputing blocks in backward (%.0f MiB would be kept)", kept / 2**20)
    columns = []
    for packed, norms, mask in packed_chunks:
        rows = []
        for vt, gram in image_blocks:
            args = (vt, gram, packed, norms, mask, attention_temperature, word_temperature, agg, eps)
            if recompute and grad_needed:
                rows.append(checkpoint(_block_scores, *args, use_reentrant=False))
            else:
                rows.append(_block_scores(*args))
        columns.append(torch.cat(rows, dim=0))
    by_length = torch.cat(columns, dim=1)  # [N, K], columns in chunk order
    text_order = torch.cat(chunks)
    inverse = torch.empty_like(text_order)
    inverse[text_order] = torch.arange(K, device=text_order.device)
    log.debug("local scores: %d images x %d texts in %d x %d blocks", N, K, len(image_blocks), len(chunks))
    return by_length[:, inverse]
