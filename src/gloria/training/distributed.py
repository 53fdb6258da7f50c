"""The GLoRIA loss over negatives gathered from every process, under its training name.

The objective and the gather live in ``gloria.alignment`` (``losses.gloria_objective``,
``gather``: scaling rules in its docstring); this module keeps the names training code and tests import.
"""

from __future__ import annotations

from torch import Tensor

from gloria.alignment.gather import block_contrastive_terms, gather_no_grad, gather_with_grad, world
from gloria.alignment.losses import gloria_objective
from gloria.alignment.options import LossOptions, Recompute
from gloria.config import AlignmentConfig
from gloria.types import ImageFeatures, TextFeatures


def gathered_gloria_loss(
    image: ImageFeatures,
    text: TextFeatures,
    cfg: AlignmentConfig,
    *,
    legacy_word_counts: bool = False,
    gather: bool = True,
    chunk_size: int | None = None,
    recompute: Recompute = "auto",
) -> dict[str, Tensor]:
    """``gloria_objective`` with negatives from every process (``gather=False``: the local batch only)."""
    options = LossOptions(
        legacy_word_counts=legacy_word_counts,
        gather_negatives=gather,
        texts_per_block=chunk_size,
        recompute=recompute,
    )
    return gloria_objective(image, text, cfg, options)


__all__ = ["block_contrastive_terms", "gather_no_grad", "gather_with_grad", "gathered_gloria_loss", "world"]
