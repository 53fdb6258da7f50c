"""Word-to-region grounding (method.md section 3, read out at inference) and image-blind baselines.

Readouts turn one image's regions and one text's words into a distribution over the h x w regions per word;
``LocationPrior`` is the best fixed location learned per class (optionally per class + side/level words).
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np
import torch
from numpy.typing import NDArray
from torch import Tensor

from gloria.alignment.attention import check_regions_words, two_stage_attention

Readout = Literal["two_stage", "two_stage_no_cls", "first_stage", "cosine"]
READOUTS: tuple[Readout, ...] = ("two_stage", "two_stage_no_cls", "first_stage", "cosine")

SIDE_WORDS = {"left": "left", "right": "right", "bilateral": "bilateral", "bibasilar": "bilateral"}
LEVEL_WORDS = {
    "upper": "upper",
    "apical": "upper",
    "apex": "upper",
    "middle": "middle",
    "mid": "middle",
    "lingula": "middle",
    "lower": "lower",
    "base": "lower",
    "bases": "lower",
    "basal": "lower",
    "basilar": "lower",
    "bibasilar": "lower",
}


def word_maps(
    regions: Tensor,
    words: Tensor,
    word_mask: Tensor,
    *,
    readout: Readout = "two_stage",
    attention_temperature: float = 4.0,
    cosine_temperature: float = 10.0,
) -> Tensor:
    """Per-word maps over regions of matched pairs: regions [K,D,h,w], words [K,D,T], mask [K,T] -> [K,T,h,w].

    Every masked slot's map is non-negative and sums to 1 over the h*w regions; unmasked slots are zero.
    - ``two_stage``: the trained attention alpha (softmax over words, then ``attention_temperature`` and a
      softmax over regions), CLS included in the word softmax as in training;
    - ``two_stage_no_cls``: the same with slot 0 ([CLS]) left out of the word softmax (its map is zero);
    - ``first_stage``: the word softmax p[m, j] itself, renormalised over regions for each word j;
    - ``cosine``: softmax over regions of ``cosine_temperature * cos(region m, word j)``.
    """
    check_regions_words(regions, words, word_mask)
    if regions.shape[0] != words.shape[0]:
        raise ValueError(
            f"matched pairs need K images and K texts, got {regions.shape[0]} and {words.shape[0]}"
        )
    K, D, h, w = regions.shape
    if readout == "two_stage":
        return two_stage_attention(words, regions, word_mask, attention_temperature)[1]
    if readout == "two_stage_no_cls":
        mask = word_mask.clone()
        mask[:, 0] = False
        return two_stage_attention(words, regions, mask, attention_temperature)[1]
    values = regions.reshape(K, D, h * w)  # [K, D, R]
    keep = word_mask.unsqueeze(1)  # [K, 1, T]
    if readout == "first_stage":
        scores = torch.bmm(values.transpose(1, 2), words)  # [K, R, T]
        probs = scores.masked_fill(~keep, float("-inf")).softmax(dim=2)
        maps = probs / probs.sum(dim=1, keepdim=True).clamp_min(1e-30)
    elif readout == "cosine":
        v = torch.nn.functional.normalize(values, dim=1, eps=1e-8)
        t = torch.nn.functional.normalize(words, dim=1, eps=1e-8)
        cos = torch.bmm(v.transpose(1, 2), t)  # [K, R, T]
        maps = (cosine_temperature * cos).softmax(dim=1)
    else:
        raise ValueError(f"unknown readout {readout!r}; choose one of {list(READOUTS)}")
    maps = maps * keep
    return maps.transpose(1, 2).reshape(K, -1, h, w)


def word_slots(word_strings: Sequence[str], phrase_words: Iterable[str]) -> list[int]:
    """Slots whose aggregated word equals one of ``phrase_words`` (case-insensitive), in slot order."""
    wanted = {p.lower() for p in phrase_words}
    return [i for i, s in enumerate(word_strings) if s.lower() in wanted]


def phrase_map(maps: Tensor, slots: Sequence[int]) -> Tensor:
    """Mean of the word maps [T, h, w] at ``slots`` -> [h, w] (still sums to 1 over regions)."""
    if not slots:
        raise ValueError("phrase_map needs at least one word slot")
    return maps[list(slots)].mean(dim=0)


def random_map(height: int, width: int, rng: np.random.Generator) -> NDArray[np.float64]:
    """A uniform random map over a ``height`` x ``width`` grid, normalised to sum 1 (the chance baseline)."""
    m = rng.random((height, width))
    return m / m.sum()


def side_level(words: Iterable[str]) -> tuple[str | None, str | None]:
    """The first side word (left/right/bilateral) and level word (upper/middle/lower) among ``words``."""
    side = level = None
    for word in words:
        token = word.lower()
        side = side or SIDE_WORDS.get(token)
        level = level or LEVEL_WORDS.get(token)
    return side, level


def tokens(text: str) -> list[str]:
    """Lower-case word tokens of ``text`` (``\\w+``)."""
    return re.findall(r"\w+", text.lower())


@dataclass
class LocationPrior:
    """Best fixed location: the mean ground-truth mask per key, on a ``grid`` x ``grid`` normalised canvas.

    Keys are ``(class,)`` or ``(class, side, level)``; prediction falls back from the full key to the class
    and then to all classes, so an unseen combination still gets a map. Never looks at the image.
    """

    grid: int = 32
    use_words: bool = False

    def __post_init__(self) -> None:
        self._sums: dict[tuple[str | None, ...], NDArray[np.float64]] = defaultdict(
            lambda: np.zeros((self.grid, self.grid))
        )
        self._counts: dict[tuple[str | None, ...], int] = defaultdict(int)

    def _keys(self, cls: str, words: Iterable[str]) -> list[tuple[str | None, ...]]:
        keys: list[tuple[str | None, ...]] = []
        if self.use_words:
            keys.append((cls, *side_level(words)))
        keys += [(cls,), ()]
        return keys

    def fit(self, cases: Iterable[tuple[str, Sequence[str], NDArray[np.bool_]]]) -> LocationPrior:
        """Learn from ``(class, report words, mask [H, W])`` triples (masks of any size)."""
        for cls, words, mask in cases:
            small = cv2.resize(mask.astype(np.float32), (self.grid, self.grid), interpolation=cv2.INTER_AREA)
            for key in self._keys(cls, words):
                self._sums[key] += small
                self._counts[key] += 1
        if not self._counts:
            raise ValueError("LocationPrior.fit got no cases")
        return self

    def predict(self, cls: str, words: Sequence[str], height: int, width: int) -> NDArray[np.float32]:
        """The prior map for a case, resized to the image's ``height`` x ``width`` pixels."""
        for key in self._keys(cls, words):
            if self._counts.get(key):
                prior = (self._sums[key] / self._counts[key]).astype(np.float32)
                resized = cv2.resize(prior, (width, height), interpolation=cv2.INTER_LINEAR)
                return np.asarray(resized, dtype=np.float32)
        raise ValueError("LocationPrior.predict called before fit")
