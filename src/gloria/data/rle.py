"""SIIM-ACR pneumothorax run-length encoding: relative-start pairs over a column-major pixel vector.

A mask is ``mask[row, col]`` (H x W, uint8 0/1). The RLE string lists pairs ``start length`` where each
start counts pixels after the end of the previous run, over the pixels read column by column (Fortran
order). An empty mask is ``"-1"``.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import numpy.typing as npt

EMPTY_RLE = "-1"


def rle_decode(rle: str, height: int, width: int) -> npt.NDArray[np.uint8]:
    """Decode one SIIM RLE string to a uint8 mask [H, W] (1 inside the runs).

    ``"-1"`` (with or without surrounding spaces) or an empty string gives an all-zero mask. Raises
    ValueError when the string is not pairs of non-negative integers or a run leaves the image.
    """
    if height <= 0 or width <= 0:
        raise ValueError(f"rle_decode: height and width must be positive, got {height}x{width}")
    flat = np.zeros(height * width, dtype=np.uint8)
    text = rle.strip()
    if text in ("", EMPTY_RLE):
        return flat.reshape(width, height).T.copy()
    try:
        numbers = np.array([int(tok) for tok in text.split()], dtype=np.int64)
    except ValueError as err:
        raise ValueError(f"rle_decode: not a list of integers: {rle[:60]!r}") from err
    if numbers.size % 2:
        raise ValueError(f"rle_decode: odd number of values ({numbers.size}) in {rle[:60]!r}")
    gaps, lengths = numbers[0::2], numbers[1::2]
    if (gaps < 0).any() or (lengths < 0).any():
        raise ValueError(f"rle_decode: negative start or length in {rle[:60]!r}")
    # absolute start of run k = sum of all gaps up to k + sum of all previous lengths
    starts = np.cumsum(gaps) + np.concatenate(([0], np.cumsum(lengths)[:-1]))
    ends = starts + lengths
    if ends.size and int(ends.max()) > flat.size:
        raise ValueError(
            f"rle_decode: run ends at pixel {int(ends.max())}, beyond the {height}x{width} image "
            f"({rle[:60]!r})"
        )
    # mark run boundaries and integrate: +1 at a start, -1 at an end
    edges = np.zeros(flat.size + 1, dtype=np.int32)
    np.add.at(edges, starts, 1)
    np.add.at(edges, ends, -1)
    flat = (np.cumsum(edges[:-1]) > 0).astype(np.uint8)
    return flat.reshape(width, height).T.copy()


def rle_encode(mask: npt.ArrayLike) -> str:
    """Encode a mask [H, W] (nonzero = inside) as a SIIM RLE string; ``"-1"`` when the mask is empty."""
    array = np.asarray(mask)
    if array.ndim != 2:
        raise ValueError(f"rle_encode: expected a 2-D mask [H, W], got shape {array.shape}")
    flat = (array.T.reshape(-1) != 0).astype(np.int8)
    if not flat.any():
        return EMPTY_RLE
    padded = np.concatenate(([0], flat, [0]))
    changes = np.flatnonzero(np.diff(padded))
    starts, ends = changes[0::2], changes[1::2]
    lengths = ends - starts
    previous_ends = np.concatenate(([0], ends[:-1]))
    gaps = starts - previous_ends
    pairs = np.stack([gaps, lengths], axis=1).reshape(-1)
    return " ".join(str(int(v)) for v in pairs)


def rle_decode_union(rles: Iterable[str], height: int, width: int) -> npt.NDArray[np.uint8]:
    """Union of several RLE rows of one image (the SIIM file has one row per region) -> uint8 [H, W]."""
    union = np.zeros((height, width), dtype=np.uint8)
    for rle in rles:
        union |= rle_decode(rle, height, width)
    return union
