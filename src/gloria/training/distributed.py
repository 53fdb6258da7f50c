"""The GLoRIA global and local contrastive losses over negatives gathered from every process (method.md 4).

N processes with B pairs each give the loss and gradients of one process with the N*B pairs. Rank r scores
only its B images against all N*B texts (rows) and all N*B images against its B texts (columns): 2*B*N*B
pairs instead of (N*B)^2.

Scaling. With S the [NB, NB] score matrix, the full-batch loss is
``L = mean_i CE(S[i, :], i) + mean_k CE(S[:, k], k)``. Rank r returns
``L_r = mean_{i in r} CE(S[i, :], i) + mean_{k in r} CE(S[:, k], k)``, so ``mean_r L_r = L``. The gather's
backward sums the gradients that every rank's ``L_r`` sends to rank r's embeddings, so rank r's embeddings
receive ``d(sum_r' L_r')/d emb_r = N dL/d emb_r``; DDP then averages parameter gradients over the N ranks,
which divides by N: every rank ends with exactly ``dL/d theta``.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor

from gloria.alignment.losses import loss_word_mask
from gloria.alignment.similarity import cosine_matrix, default_local_similarity
from gloria.config import AlignmentConfig
from gloria.types import ImageFeatures, TextFeatures


def world() -> tuple[int, int]:
    """(rank, world size) of the default process group; (0, 1) without one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class _GatherWithGrad(torch.autograd.Function):
    """All-gather along dim 0 whose backward sums every rank's gradient for this rank's slice."""

    @staticmethod
    def forward(ctx: Any, tensor: Tensor) -> Tensor:
        size = dist.get_world_size()
        ctx.rank, ctx.rows = dist.get_rank(), tensor.shape[0]
        parts = [torch.empty_like(tensor) for _ in range(size)]
        dist.all_gather(parts, tensor.contiguous())
        return torch.cat(parts, dim=0)

    @staticmethod
    def backward(ctx: Any, *grads: Tensor) -> Tensor:
        grad = grads[0].contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)  # works on gloo, where reduce_scatter may not
        return grad[ctx.rank * ctx.rows : (ctx.rank + 1) * ctx.rows]


def gather_with_grad(tensor: Tensor) -> Tensor:
    """[B, ...] on each of N ranks -> [N*B, ...] in rank order, differentiable; identity without a group.

    Every rank must pass the same shape (equal batch sizes: use ``drop_last`` or padded samplers).
    """
    _, size = world()
    if size == 1:
        return tensor
    shape = torch.tensor(list(tensor.shape), device=tensor.device)
    shapes = [torch.empty_like(shape) for _ in range(size)]
    dist.all_gather(shapes, shape)
    if any(not torch.equal(s, shape) for s in shapes):
        raise ValueError(
            f"gather_with_grad: every rank must pass the same shape, got {[s.tolist() for s in shapes]}"
        )
    out: Tensor = _GatherWithGrad.apply(tensor)
    return out


def gather_no_grad(tensor: Tensor) -> Tensor:
    """All-gather without gradient (masks, counts): [B, ...] -> [N*B, ...]."""
    _, size = world()
    if size == 1:
        return tensor
    parts = [torch.empty_like(tensor) for _ in range(size)]
    dist.all_gather(parts, tensor.contiguous())
    return torch.cat(parts, dim=0)


def block_contrastive_terms(rows: Tensor, cols: Tensor, offset: int) -> tuple[Tensor, Tensor]:
    """Cross-entropy of this rank's rows and columns of the global score matrix.

    rows [B, N*B] (this rank's images vs every text), cols [N*B, B] (every image vs this rank's texts),
    ``offset`` = index of this rank's first pair in the global batch -> (image-to-text, text-to-image),
    each a mean over this rank's B pairs.
    """
    B = rows.shape[0]
    if cols.shape != (rows.shape[1], B):
        raise ValueError(f"rows {tuple(rows.shape)} and cols {tuple(cols.shape)} do not match")
    targets = torch.arange(B, device=rows.device) + offset
    return F.cross_entropy(rows, targets), F.cross_entropy(cols.t(), targets)


def gathered_gloria_loss(
    image: ImageFeatures,
    text: TextFeatures,
    cfg: AlignmentConfig,
    *,
    legacy_word_counts: bool = False,
    gather: bool = True,
    chunk_size: int | None = None,
    recompute: bool = False,
) -> dict[str, Tensor]:
    """Global + local GLoRIA loss of this rank's pairs against negatives from every rank.

    image.regions [B,D,h,w], image.embedding [B,D], text.words [B,D,T], text.embedding [B,D] (pair i = image
    i with text i) -> {"loss", "global_loss", "local_loss"}; see the module docstring for the scaling.
    ``gather=False`` (or one process) uses only the local batch. One process computes each matrix once.
    """
    B = image.embedding.shape[0]
    if text.embedding.shape[0] != B:
        raise ValueError(f"{B} images but {text.embedding.shape[0]} texts: pairs must match one to one")
    word_mask = loss_word_mask(text, legacy_word_counts=legacy_word_counts)
    word_mask = word_mask.to(device=text.words.device, dtype=torch.bool)
    temp = cfg.logit_temperature
    options: dict[str, Any] = {"chunk_size": chunk_size, "recompute": recompute}
    rank, size = world()
    if not gather or size == 1:
        global_scores = temp * cosine_matrix(image.embedding, text.embedding)  # [B, B]
        local = default_local_similarity(image.regions, text.words, word_mask, cfg, **options)  # [B, B]
        g_rows, g_cols, l_rows, l_cols, offset = global_scores, global_scores, local, local, 0
    else:
        all_img = gather_with_grad(image.embedding)  # [NB, D]
        all_txt = gather_with_grad(text.embedding)  # [NB, D]
        all_regions = gather_with_grad(image.regions)  # [NB, D, h, w]
        all_words = gather_with_grad(text.words)  # [NB, D, T]
        all_mask = gather_no_grad(word_mask)  # [NB, T]
        g_rows = temp * cosine_matrix(image.embedding, all_txt)  # [B, NB]
        g_cols = temp * cosine_matrix(all_img, text.embedding)  # [NB, B]
        l_rows = default_local_similarity(image.regions, all_words, all_mask, cfg, **options)  # [B, NB]
        l_cols = default_local_similarity(all_regions, text.words, word_mask, cfg, **options)  # [NB, B]
        offset = rank * B
    g_i2t, g_t2i = block_contrastive_terms(g_rows, g_cols, offset)
    l_i2t, l_t2i = block_contrastive_terms(l_rows, l_cols, offset)
    global_loss = g_i2t + g_t2i
    local_loss = l_i2t + l_t2i
    loss = cfg.local_weight * local_loss + cfg.global_weight * global_loss
    return {"loss": loss, "global_loss": global_loss, "local_loss": local_loss}
