"""The release's loss functions with its signatures (method.md section 4), computed by the one objective of
``gloria.alignment.losses`` (its terms, on the local batch).

``global_loss`` and ``local_loss`` return (image->text, text->image) cross-entropies; ``attention_fn`` is the
two-stage word->region attention. Shapes: B pairs, D dim, T word slots, h x w regions.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from gloria.alignment.attention import attention_fn
from gloria.alignment.losses import (
    global_loss_terms,
    local_loss_terms,
    matched_attention_maps,
    word_mask_from_counts,
)
from gloria.config import AlignmentConfig


def global_loss(
    cnn_code: Tensor, rnn_code: Tensor, eps: float = 1e-8, temp3: float = 10.0
) -> tuple[Tensor, Tensor]:
    """cnn_code [B,D] image vectors, rnn_code [B,D] text vectors -> (loss0 image->text, loss1 text->image)."""
    return global_loss_terms(cnn_code, rnn_code, temperature=temp3, eps=eps)


def cap_lens_mask(
    cap_lens: Sequence[int] | Tensor, batch: int, num_slots: int, device: torch.device
) -> Tensor:
    """Slots 0..cap_lens[k]-1 of each text as a [B, T] mask (``word_mask_from_counts`` of cap_lens - 1);
    ValueError naming a bad entry."""
    lens = [int(c) for c in (cap_lens.tolist() if isinstance(cap_lens, Tensor) else cap_lens)]
    if len(lens) != batch:
        raise ValueError(f"cap_lens has {len(lens)} entries for a batch of {batch} texts")
    for k, c in enumerate(lens):
        if not 1 <= c <= num_slots:
            raise ValueError(f"cap_lens[{k}] = {c} is outside 1..{num_slots} (the word slots of words_emb)")
    return word_mask_from_counts(torch.tensor(lens, device=device) - 1, num_slots)


def local_loss(
    img_features: Tensor,
    words_emb: Tensor,
    cap_lens: Sequence[int] | Tensor,
    temp1: float = 4.0,
    temp2: float = 5.0,
    temp3: float = 10.0,
    agg: str = "sum",
) -> tuple[Tensor, Tensor, list[Tensor]]:
    """img_features [B,D,h,w], words_emb [B,D,T], cap_lens (slot count of text k: slots 0..cap_lens[k]-1)
    -> (loss0 image->text, loss1 text->image, att_maps: B tensors [1, cap_lens[k], h, w] of matched pairs)."""
    if agg not in ("sum", "mean"):
        raise ValueError(f"agg must be 'sum' or 'mean', got {agg!r}")
    if img_features.dim() != 4 or words_emb.dim() != 3 or img_features.shape[0] != words_emb.shape[0]:
        raise ValueError(
            f"local_loss needs img_features [B, D, h, w] and words_emb [B, D, T], got "
            f"{tuple(img_features.shape)} and {tuple(words_emb.shape)}"
        )
    mask = cap_lens_mask(cap_lens, words_emb.shape[0], words_emb.shape[2], words_emb.device)
    cfg = AlignmentConfig(
        attention_temperature=temp1,
        word_temperature=temp2,
        logit_temperature=temp3,
        local_agg="sum" if agg == "sum" else "mean",
    )
    loss0, loss1 = local_loss_terms(img_features, words_emb, mask, cfg)
    with torch.no_grad():
        att_maps = matched_attention_maps(img_features, words_emb, mask, temp1)
    return loss0, loss1, att_maps


__all__ = ["attention_fn", "global_loss", "local_loss"]
