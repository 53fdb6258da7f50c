"""Seeded patient-level splitting shared by the loaders, and checksums of split id lists.

A patient's images all land in one split; the checksum (sha256 of the sorted unique ids, one per line)
identifies a split independently of row order.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd

DEFAULT_FRACTIONS: Mapping[str, float] = {"train": 0.7, "valid": 0.15, "test": 0.15}


def ids_checksum(ids: Iterable[object]) -> str:
    """sha256 (hex) of the sorted unique ids as text, joined by newlines."""
    unique = sorted({str(i) for i in ids})
    return hashlib.sha256("\n".join(unique).encode("utf-8")).hexdigest()


def _validate_fractions(fractions: Mapping[str, float]) -> None:
    if not fractions:
        raise ValueError("split fractions are empty")
    for name, value in fractions.items():
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"split fraction {name}={value} is outside [0, 1]")
    total = sum(fractions.values())
    if abs(total - 1.0) > 1e-6:
        raise ValueError(f"split fractions {dict(fractions)} sum to {total}, not 1")


def split_ids(
    ids: Iterable[object], fractions: Mapping[str, float] = DEFAULT_FRACTIONS, *, seed: int = 0
) -> dict[str, str]:
    """Assign each unique id to a split: sort ids, permute with ``numpy.random.default_rng(seed)``, cut.

    Split sizes are ``round(fraction * n)`` for every split but the first, which takes the rest, so all
    ids are assigned. Returns ``{id: split}`` (ids as strings).
    """
    _validate_fractions(fractions)
    unique = np.array(sorted({str(i) for i in ids}), dtype=object)
    order = np.random.default_rng(seed).permutation(len(unique))
    shuffled = unique[order]
    names = list(fractions)
    sizes = [round(fractions[name] * len(unique)) for name in names[1:]]
    first = len(unique) - sum(sizes)
    if first < 0:
        raise ValueError(f"split fractions {dict(fractions)} leave no room for {names[0]!r}")
    out: dict[str, str] = {}
    start = 0
    for name, size in zip(names, [first, *sizes]):
        for item in shuffled[start : start + size]:
            out[str(item)] = name
        start += size
    return out


def assign_patient_splits(
    frame: pd.DataFrame,
    patient_col: str,
    fractions: Mapping[str, float] = DEFAULT_FRACTIONS,
    *,
    seed: int = 0,
) -> pd.Series:
    """The split of every row, chosen per patient (no patient in two splits)."""
    if patient_col not in frame.columns:
        raise ValueError(f"column {patient_col!r} missing; have {list(frame.columns)}")
    mapping = split_ids(frame[patient_col], fractions, seed=seed)
    return frame[patient_col].astype(str).map(mapping).rename("split")


def leaked_ids(frame: pd.DataFrame, id_col: str, split_col: str) -> list[str]:
    """Ids (e.g. patients) that appear in more than one split, sorted."""
    for col in (id_col, split_col):
        if col not in frame.columns:
            raise ValueError(f"column {col!r} missing; have {list(frame.columns)}")
    counts = frame.groupby(frame[id_col].astype(str))[split_col].nunique()
    return sorted(str(i) for i in counts[counts > 1].index)
