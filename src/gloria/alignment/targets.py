"""False-negative-aware targets for the in-batch contrastive terms (an option beyond the release).

The release's targets are one-hot: in a batch of B pairs, image i's only positive is text i and every other
text is a negative. When two pairs of a batch carry the same cleaned report or the same labels (on SynthCXR
about a quarter of the rows of a batch of 32 share their impression word for word with another row, and
about half share their set of findings, normal studies above all: docs/learning.md), the one-hot target
pushes apart pairs that say the same thing. Here:

- :func:`key_groups`: integer keys per pair (token ids of the text, a label vector) -> group ids, equal
  where the whole keys are equal;
- :func:`group_targets`: pairs whose group ids match (same cleaned report, same label vector) are all
  positives, the row's target mass spread evenly over them;
- :func:`similarity_targets`: soft targets from a label-similarity matrix (MedCLIP's idea): row i is
  ``sim[i] / sum(sim[i])`` over the pairs with positive similarity, the pair itself always included;
- :func:`soft_contrastive_terms`: ``(CE(S, T), CE(S^T, T^T))`` with such a target matrix, equal to the
  release's ``contrastive_terms`` when T is the identity.

Off in the release presets. ``loss.false_negatives: same_text`` (``gloria.alignment.options``) makes the
objective use ``group_targets(key_groups(caption_ids))`` over every (gathered) pair in place of the one-hot
targets; the soft targets of :func:`similarity_targets` are not wired into it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def key_groups(keys: Tensor) -> Tensor:
    """keys [B] or [B, ...] integers -> [B] int64 group ids 0..G-1 (first appearance order not promised),
    equal exactly where the whole keys are equal (no hashing: distinct keys never share a group)."""
    if keys.dim() == 0 or keys.is_floating_point():
        raise ValueError(
            f"group keys must be integers of shape [B] or [B, ...], got {keys.dtype} {tuple(keys.shape)}"
        )
    rows = keys.reshape(keys.shape[0], -1)
    _, ids = torch.unique(rows, dim=0, return_inverse=True)
    return ids.long()


def group_targets(groups: Tensor, dtype: torch.dtype = torch.float32) -> Tensor:
    """groups [B] (integer ids) -> [B, B] row-stochastic targets: 1/|g| on every pair of row i's group."""
    if groups.dim() != 1:
        raise ValueError(f"group ids must be one-dimensional [B], got shape {tuple(groups.shape)}")
    same = (groups[:, None] == groups[None, :]).to(dtype)
    return same / same.sum(dim=1, keepdim=True)


def similarity_targets(similarity: Tensor) -> Tensor:
    """similarity [B, B] (e.g. cosine of label vectors, diagonal the largest) -> row-stochastic targets:
    negative similarities count as 0, and the pair itself keeps at least weight 1 before normalising."""
    if similarity.dim() != 2 or similarity.shape[0] != similarity.shape[1]:
        raise ValueError(f"similarity must be square [B, B], got {tuple(similarity.shape)}")
    weights = similarity.clamp(min=0).to(torch.float32)
    eye = torch.eye(weights.shape[0], dtype=weights.dtype, device=weights.device)
    weights = torch.maximum(weights, eye)
    return weights / weights.sum(dim=1, keepdim=True)


def soft_contrastive_terms(logits: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
    """logits [B, B] (row image, column text), targets [B, B] rows summing to 1 -> (image->text,
    text->image) mean cross-entropies; the text->image term uses the transposed targets, re-normalised."""
    if logits.dim() != 2 or logits.shape[0] != logits.shape[1] or targets.shape != logits.shape:
        raise ValueError(
            f"need square logits and targets of one shape, got {tuple(logits.shape)}, {tuple(targets.shape)}"
        )
    t = targets.to(logits.dtype)
    t_cols = t.t() / t.t().sum(dim=1, keepdim=True)
    i2t = -(t * F.log_softmax(logits, dim=1)).sum(dim=1).mean()
    t2i = -(t_cols * F.log_softmax(logits.t(), dim=1)).sum(dim=1).mean()
    return i2t, t2i
