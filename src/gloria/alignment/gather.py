"""Negatives from every process: a differentiable all-gather and the cross-entropy of one process's rows and
columns of the global score matrix (method.md section 4).

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


def block_contrastive_terms(
    rows: Tensor, cols: Tensor, offset: int, targets: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """Cross-entropy of this rank's rows and columns of the global score matrix.

    rows [B, M] (this rank's images vs every text), cols [M, B] (every image vs this rank's texts),
    ``offset`` = index of this rank's first pair among the M -> (image-to-text, text-to-image), each a mean
    over this rank's B pairs. The target of image i is text i; with ``targets`` [M, M] (non-negative, row i
    image i, column k text k) image i's target is row i normalised and text k's is column k normalised.
    """
    B = rows.shape[0]
    if cols.shape != (rows.shape[1], B):
        raise ValueError(f"rows {tuple(rows.shape)} and cols {tuple(cols.shape)} do not match")
    if targets is None:
        index = torch.arange(B, device=rows.device) + offset
        return F.cross_entropy(rows, index), F.cross_entropy(cols.t(), index)
    M = rows.shape[1]
    if targets.shape != (M, M):
        raise ValueError(f"targets must be [{M}, {M}] over every pair, got {tuple(targets.shape)}")
    t_rows = targets[offset : offset + B].to(rows.dtype)
    t_cols = targets[:, offset : offset + B].t().to(rows.dtype)
    if bool((targets < 0).any()) or not bool((t_rows.sum(1) > 0).all() and (t_cols.sum(1) > 0).all()):
        raise ValueError("targets must be non-negative with a positive sum in every row and column")
    t_rows = t_rows / t_rows.sum(dim=1, keepdim=True)
    t_cols = t_cols / t_cols.sum(dim=1, keepdim=True)
    return F.cross_entropy(rows, t_rows), F.cross_entropy(cols.t(), t_cols)


__all__ = ["block_contrastive_terms", "gather_no_grad", "gather_with_grad", "world"]
