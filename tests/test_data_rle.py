"""SIIM RLE codec: relative starts, column-major fill, empty masks, several regions, real SIIM rows."""

from __future__ import annotations

import gzip
import importlib.util
from pathlib import Path

import numpy as np
import pytest

from gloria.data.rle import rle_decode, rle_decode_union, rle_encode


def decode_loop(rle: str, height: int, width: int) -> np.ndarray:
    """Plain reading of the SIIM convention: pairs (gap since previous run end, length), column-major."""
    flat = [0] * (height * width)
    if rle.strip() != "-1":
        values = [int(x) for x in rle.split()]
        position = 0
        for k in range(0, len(values), 2):
            position += values[k]
            for p in range(position, position + values[k + 1]):
                flat[p] = 1
            position += values[k + 1]
    mask = np.zeros((height, width), dtype=np.uint8)
    for p, value in enumerate(flat):
        mask[p % height, p // height] = value  # column-major: p walks down a column first
    return mask


def test_decode_hand_example_is_column_major_and_relative() -> None:
    # 4 rows x 3 columns; run 1 starts at pixel 1 (row 1, col 0) for 2; run 2 starts 3 after its end
    mask = rle_decode("1 2 3 1", height=4, width=3)
    expected = np.zeros((4, 3), dtype=np.uint8)
    expected[1, 0] = expected[2, 0] = 1
    expected[2, 1] = 1  # absolute pixel 1 + 2 + 3 = 6 -> column 1, row 2
    np.testing.assert_array_equal(mask, expected)
    assert mask.dtype == np.uint8


@pytest.mark.parametrize("shape", [(7, 5), (16, 16), (9, 13)])
def test_round_trip_random_masks_and_loop_reference(shape: tuple[int, int]) -> None:
    rng = np.random.default_rng(3)
    for density in (0.05, 0.5, 0.95):
        mask = (rng.random(shape) < density).astype(np.uint8)
        rle = rle_encode(mask)
        np.testing.assert_array_equal(rle_decode(rle, *shape), mask)
        np.testing.assert_array_equal(decode_loop(rle, *shape), mask)


def test_empty_and_full_masks() -> None:
    assert rle_encode(np.zeros((5, 4))) == "-1"
    assert not rle_decode(" -1", 5, 4).any()
    assert not rle_decode("", 5, 4).any()
    assert rle_encode(np.ones((5, 4))) == "0 20"


def test_union_of_several_regions() -> None:
    a = np.zeros((10, 10), dtype=np.uint8)
    b = np.zeros_like(a)
    a[1:3, 1:4] = 1
    b[6:9, 5:7] = 1
    b[2, 3] = 1  # overlaps a
    union = rle_decode_union([rle_encode(a), rle_encode(b), "-1"], 10, 10)
    np.testing.assert_array_equal(union, a | b)


@pytest.mark.parametrize(
    ("rle", "message"),
    [("1 2 3", "odd number"), ("a b", "not a list"), ("0 -2", "negative"), ("95 10", "beyond")],
)
def test_bad_rle_raises_naming_the_problem(rle: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        rle_decode(rle, 10, 10)


def test_encode_rejects_non_2d() -> None:
    with pytest.raises(ValueError, match="2-D"):
        rle_encode(np.zeros((2, 2, 2)))


def _siim_metadata() -> Path | None:
    spec = importlib.util.find_spec("torchxrayvision")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(spec.submodule_search_locations[0]) / "data" / "siim-pneumothorax-train-rle.csv.gz"
    return path if path.exists() else None


def test_real_siim_rows_round_trip() -> None:
    path = _siim_metadata()
    if path is None:
        pytest.skip("torchxrayvision's SIIM metadata is not installed")
    rows = []
    with gzip.open(path, "rt") as handle:
        next(handle)
        for line in handle:
            value = line.split(",", 1)[1].strip()
            if value != "-1":
                rows.append(value)
            if len(rows) == 5:
                break
    for rle in rows:
        mask = rle_decode(rle, 1024, 1024)
        assert 0 < mask.sum() < 1024 * 1024 // 4
        assert rle_encode(mask) == " ".join(rle.split())
