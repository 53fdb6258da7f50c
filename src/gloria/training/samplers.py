"""Data order for exact resume: a permutation drawn from (seed, epoch), split across processes, and a
per-sample draw seed so random sentences and crops do not depend on the global RNG state.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Sampler

from gloria.training.distributed import world

SeededIndex = tuple[int, int]  # (dataset index, draw seed for that access)


def draw_seed(seed: int, epoch: int, index: int) -> int:
    """A 63-bit seed for one access of one sample in one epoch (a fixed mixing of the three integers)."""
    value = (seed * 0x9E3779B97F4A7C15 + epoch * 0xBF58476D1CE4E5B9 + index * 0x94D049BB133111EB) & (
        2**63 - 1
    )
    return value


class SeededSampler(Sampler[SeededIndex]):
    """Yields (index, draw seed) for this process's share of the dataset.

    ``shuffle``: a permutation from ``torch.Generator().manual_seed(seed + epoch)``; else 0..n-1. With
    several processes the order is padded by repetition to a multiple of the world size and rank r takes
    positions r, r+N, ... (every rank the same count, as the gathered loss needs). ``set_epoch`` is called
    by Lightning at every epoch start, so a resumed run sees the same order as an uninterrupted one.
    ``resume_at(epoch, start)``: the next pass over ``epoch`` begins at this process's position ``start``
    (a run resumed in the middle of an epoch); passes over other epochs start at 0.
    """

    def __init__(
        self,
        size: int,
        *,
        seed: int,
        shuffle: bool,
        rank: int | None = None,
        world_size: int | None = None,
    ) -> None:
        if size < 1:
            raise ValueError(f"cannot sample from an empty dataset (size {size})")
        self.size = size
        self.seed = seed
        self.shuffle = shuffle
        default_rank, default_world = world()
        self.rank = default_rank if rank is None else rank
        self.world_size = default_world if world_size is None else world_size
        if not 0 <= self.rank < self.world_size:
            raise ValueError(f"rank {self.rank} outside world size {self.world_size}")
        self.epoch = 0
        self._resume: tuple[int, int] | None = None  # (epoch, position) of the next pass

    def resume_at(self, epoch: int, start: int) -> None:
        if start < 0:
            raise ValueError(f"sampler start position must be >= 0, got {start}")
        self.epoch = epoch
        self._resume = (epoch, start)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return -(-self.size // self.world_size)

    def __iter__(self) -> Iterator[SeededIndex]:
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.size, generator=g).tolist()
        else:
            order = list(range(self.size))
        total = len(self) * self.world_size
        while len(order) < total:
            order += order[: total - len(order)]
        start = 0
        if self._resume is not None:
            if self._resume[0] == self.epoch:
                start = self._resume[1]
            self._resume = None
        for index in order[self.rank :: self.world_size][start:]:
            yield index, draw_seed(self.seed, self.epoch if self.shuffle else 0, index)
