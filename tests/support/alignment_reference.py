"""Plain-loop references for the alignment maths, written from method.md sections 3-5 (one text at a time,
its words repeated over the images, as the release structured it). Slow and obvious on purpose."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor


def cosine_rows(x: Tensor, y: Tensor, eps: float = 1e-8) -> Tensor:
    """Row-wise cosine with the product of norms clamped (x, y [M, D] -> [M])."""
    return (x * y).sum(1) / (x.norm(dim=1) * y.norm(dim=1)).clamp(min=eps)


def attention_loop(query: Tensor, context: Tensor, temp1: float) -> tuple[Tensor, Tensor]:
    """query [B,D,n], context [B,D,h,w] -> (weighted [B,D,n], attn [B,n,h,w]); pair by pair."""
    B, D, h, w = context.shape
    outs, maps = [], []
    for b in range(B):
        V = context[b].reshape(D, h * w)
        a = V.t() @ query[b]  # [R, n]
        p = torch.softmax(a, dim=1)  # over words
        alpha = torch.softmax(temp1 * p, dim=0)  # over regions
        outs.append(V @ alpha)
        maps.append(alpha.t().reshape(-1, h, w))
    return torch.stack(outs), torch.stack(maps)


def local_similarity_loop(
    regions: Tensor, words: Tensor, slots: list[list[int]], temp1: float, temp2: float, agg: str = "sum"
) -> Tensor:
    """[N, K]: for text k, its word slots repeated over the N images, attention, cosine, aggregation."""
    N = regions.shape[0]
    cols = []
    for k, js in enumerate(slots):
        word = words[k][:, js].unsqueeze(0).repeat(N, 1, 1)  # [N, D, n]
        ctx, _ = attention_loop(word, regions, temp1)
        n = len(js)
        sim = cosine_rows(
            word.transpose(1, 2).reshape(N * n, -1), ctx.transpose(1, 2).reshape(N * n, -1)
        ).view(N, n)
        if agg == "max":
            cols.append(torch.log(torch.exp(temp2 * sim).max(dim=1).values))
        elif agg == "sum":
            cols.append(torch.log(torch.exp(temp2 * sim).sum(dim=1)))
        else:
            cols.append(torch.log(torch.exp(temp2 * sim).mean(dim=1)))
    return torch.stack(cols, dim=1)


def global_loss_loop(
    img: Tensor, txt: Tensor, temp3: float = 10.0, eps: float = 1e-8
) -> tuple[Tensor, Tensor]:
    B = img.shape[0]
    S = (
        torch.stack(
            [
                torch.stack([cosine_rows(img[i : i + 1], txt[k : k + 1], eps)[0] for k in range(B)])
                for i in range(B)
            ]
        )
        * temp3
    )
    labels = torch.arange(B)
    return F.cross_entropy(S, labels), F.cross_entropy(S.t(), labels)


def local_loss_loop(
    regions: Tensor,
    words: Tensor,
    slots: list[list[int]],
    temp1: float = 4.0,
    temp2: float = 5.0,
    temp3: float = 10.0,
    agg: str = "sum",
) -> tuple[Tensor, Tensor]:
    S = temp3 * local_similarity_loop(regions, words, slots, temp1, temp2, agg)
    labels = torch.arange(S.shape[0])
    return F.cross_entropy(S, labels), F.cross_entropy(S.t(), labels)


def numpy_legacy_local(regions: np.ndarray, words: np.ndarray, cap_lens: list[int]) -> np.ndarray:
    """The release's zero-shot local similarity, written in numpy from method.md 5 (one pair at a time)."""
    N, D = regions.shape[:2]
    out = np.zeros((N, len(cap_lens)))
    for i in range(N):
        V = regions[i].reshape(D, -1)
        for k, c in enumerate(cap_lens):
            W = words[k][:, 1 : c + 1]
            a = V.T @ W
            p = np.exp(a - a.max(1, keepdims=True))
            p /= p.sum(1, keepdims=True)
            e = np.exp(4.0 * p)
            alpha = e / e.sum(0, keepdims=True)
            ctx = V @ alpha
            sims = [
                W[:, j] @ ctx[:, j] / max(np.linalg.norm(W[:, j]) * np.linalg.norm(ctx[:, j]), 1e-8)
                for j in range(c)
            ]
            out[i, k] = np.log(np.max(np.exp(5.0 * np.array(sims))))
    return out
