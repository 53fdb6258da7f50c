"""Word-to-region attention of GLoRIA (method.md section 3): softmax over words, then over regions.

Also home of the shape checks shared by the alignment modules. Shapes: K texts (matched to K images),
D embedding dim, T word slots, h x w regions, R = h * w.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


def check_regions_words(regions: Tensor, words: Tensor, word_mask: Tensor | None = None) -> None:
    """Raise ``ValueError`` naming the shapes unless regions [N,D,h,w], words [K,D,T], mask [K,T] agree."""
    if regions.dim() != 4:
        raise ValueError(f"regions must be [N, D, h, w], got shape {tuple(regions.shape)}")
    if words.dim() != 3:
        raise ValueError(f"words must be [K, D, T], got shape {tuple(words.shape)}")
    if regions.shape[1] != words.shape[1]:
        raise ValueError(
            f"embedding dims differ: regions {tuple(regions.shape)} (D={regions.shape[1]}) vs "
            f"words {tuple(words.shape)} (D={words.shape[1]})"
        )
    if word_mask is not None:
        if word_mask.shape != (words.shape[0], words.shape[2]):
            raise ValueError(
                f"word_mask must be [K, T] = {(words.shape[0], words.shape[2])} for words "
                f"{tuple(words.shape)}, got shape {tuple(word_mask.shape)}"
            )
        if word_mask.dtype != torch.bool:
            raise ValueError(f"word_mask must be bool, got {word_mask.dtype}")
        empty = (~word_mask.any(dim=1)).nonzero().flatten().tolist()
        if empty:
            raise ValueError(f"word_mask selects no word slot for text(s) {empty[:10]}")


def scaled_local_features(local: Tensor, scale: float | None) -> Tensor:
    """``alignment.local_feature_scale`` s applied to regions [N,D,h,w] or words [K,D,T]: unit vectors along
    dim 1 (D) times sqrt(s), so the word softmax sees s x cosine; zero slots stay 0. ``None``: unchanged
    (the release). Idempotent, so features that already went through it are unchanged by it."""
    if scale is None:
        return local
    return F.normalize(local, dim=1) * math.sqrt(scale)


def two_stage_attention(
    words: Tensor, regions: Tensor, word_mask: Tensor, attention_temperature: float
) -> tuple[Tensor, Tensor]:
    """Attention of each text's words over the regions of its matched image.

    words [K,D,T], regions [K,D,h,w], word_mask [K,T] bool -> (context [K,D,T], attention [K,T,h,w]).
    a[m,j] = region m . word j (dot products); p = softmax over the masked words j for each region;
    alpha[j] = softmax over regions of ``attention_temperature * p[:, j]``; context[:, j] = V alpha[j].
    Masked slots never enter the word softmax; their context and attention are zero.
    """
    check_regions_words(regions, words, word_mask)
    if regions.shape[0] != words.shape[0]:
        raise ValueError(
            f"matched pairs need as many images as texts: regions {tuple(regions.shape)} vs "
            f"words {tuple(words.shape)}"
        )
    K, D, h, w = regions.shape
    values = regions.reshape(K, D, h * w)  # V: [K, D, R]
    scores = torch.bmm(values.transpose(1, 2), words)  # a: [K, R, T]
    keep = word_mask.unsqueeze(1)  # [K, 1, T]
    word_probs = scores.masked_fill(~keep, float("-inf")).softmax(dim=2)  # p: softmax over words
    region_attn = (attention_temperature * word_probs).softmax(dim=1)  # alpha: softmax over regions
    region_attn = region_attn * keep  # zero the masked slots
    context = torch.bmm(values, region_attn)  # [K, D, T]
    attention = region_attn.transpose(1, 2).reshape(K, -1, h, w)  # [K, T, h, w]
    return context, attention


def attention_fn(query: Tensor, context: Tensor, temp1: float) -> tuple[Tensor, Tensor]:
    """The release's ``attention_fn``: query [B,D,n] words, context [B,D,h,w] regions, no mask.

    Returns (weighted_context [B,D,n], attn [B,n,h,w]), every one of the n slots taking part.
    """
    if query.dim() != 3:
        raise ValueError(f"query must be [B, D, n], got shape {tuple(query.shape)}")
    mask = torch.ones(query.shape[0], query.shape[2], dtype=torch.bool, device=query.device)
    return two_stage_attention(query, context, mask, temp1)
