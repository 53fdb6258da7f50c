"""How the contrastive objective is computed: one typed section (experiment key ``loss``) read by
``gloria.alignment`` directly.

Only ``legacy_word_counts`` (which word slots enter the local loss) and ``false_negatives`` (which pairs
of a batch are positives) change the numbers; the others choose where negatives come from and how the
local scores are blocked in memory, and leave the values and gradients unchanged up to rounding.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Recompute = bool | Literal["auto"]
FalseNegatives = Literal["none", "same_text"]


@dataclass(frozen=True)
class LossOptions:
    """Options of the GLoRIA objective (method.md section 4).

    - ``legacy_word_counts``: the local loss's word slots 0..n_k with the release's count n_k (words not
      starting with "[") instead of CLS and every real word.
    - ``gather_negatives``: under several processes, every process's pairs are negatives for every other's
      (with gradients); one process ignores it.
    - ``texts_per_block`` / ``images_per_block``: how many texts / images one block of local scores holds
      (``None``: as many as keep a block within ``gloria.alignment.local.DEFAULT_BLOCK_ELEMENTS``).
    - ``recompute``: ``True`` recomputes each block of local scores in backward (saved memory linear in the
      batch), ``False`` keeps every block's attention for backward (quadratic), ``"auto"`` recomputes when the
      kept attention would not fit in half the free memory of the device.
    - ``false_negatives``: ``"none"`` (the release) makes text i image i's only positive; ``"same_text"``
      makes pairs whose texts are identical token for token (the cleaned text the text encoder saw)
      positives of each other, in the global and the local term, each row's target spread evenly over its
      group (``gloria.alignment.targets.group_targets``); with gathered negatives, over every process's pairs.
    """

    legacy_word_counts: bool = False
    gather_negatives: bool = True
    texts_per_block: int | None = None
    images_per_block: int | None = None
    recompute: Recompute = "auto"
    false_negatives: FalseNegatives = "none"

    def __post_init__(self) -> None:
        for name in ("texts_per_block", "images_per_block"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"config key 'loss.{name}' must be an integer >= 1 or null, got {value!r}")
        if self.recompute not in (True, False, "auto"):
            raise ValueError(
                f"config key 'loss.recompute' must be true, false or 'auto', got {self.recompute!r}"
            )
        if self.false_negatives not in ("none", "same_text"):
            raise ValueError(
                "config key 'loss.false_negatives' must be 'none' or 'same_text', "
                f"got {self.false_negatives!r}"
            )


__all__ = ["FalseNegatives", "LossOptions", "Recompute"]
