"""SIIM loader: the real train-rle.csv rows decoded in place, region union, image-level split, balancing."""

from __future__ import annotations

import numpy as np
import pytest

from gloria.data.images import read_image
from gloria.data.rle import rle_decode, rle_encode
from gloria.data.siim import (
    balance_negatives,
    find_dicoms,
    group_by_image,
    load_mask,
    read_siim_rle,
    release_row_split_leaks,
    release_split,
    segmentation_records,
    split_rles,
)
from support.dataset_fixtures import real_metadata, siim_image_id, write_siim


def test_real_rows_decode_and_round_trip():
    rows = read_siim_rle(real_metadata("siim-pneumothorax-train-rle.csv.gz"))
    assert len(rows) == 12954
    positives = rows[rows["EncodedPixels"] != "-1"].head(25)
    for rle in positives["EncodedPixels"]:
        mask = rle_decode(rle, 1024, 1024)
        numbers = [int(v) for v in rle.split()]
        assert int(mask.sum()) == sum(numbers[1::2]) > 0  # runs never overlap
        assert rle_encode(mask) == rle
    first = positives["EncodedPixels"].iloc[0].split()
    start = int(first[0])  # column-major: pixel `start` is (row start % 1024, col start // 1024)
    assert rle_decode(positives["EncodedPixels"].iloc[0], 1024, 1024)[start % 1024, start // 1024] == 1


def test_real_file_groups_and_splits_by_image():
    rows = read_siim_rle(real_metadata("siim-pneumothorax-train-rle.csv.gz"))
    images = group_by_image(rows)
    assert len(images) == 12047 and int(images["positive"].sum()) == 2669
    split = release_split(images)
    assert split.value_counts().to_dict() == {"train": 8432, "valid": 1808, "test": 1807}
    assert release_row_split_leaks(rows) > 0  # the release's row-level split leaks images across splits


def test_fixture_union_records_and_balance(tmp_path):
    square = np.zeros((1024, 1024), np.uint8)
    square[10:20, 30:36] = 1
    other = np.zeros((1024, 1024), np.uint8)
    other[500:510, 600:640] = 1
    regions = [[rle_encode(square), rle_encode(other)], [], [rle_encode(other)], [], [], []]
    root = write_siim(tmp_path, regions)
    assert (root / "train-rle.csv").read_text().splitlines()[0] == "ImageId, EncodedPixels"
    images = group_by_image(read_siim_rle(root / "train-rle.csv"))
    assert list(images["positive"]) == [1, 0, 1, 0, 0, 0]
    mask = load_mask(split_rles(images["rles"].iloc[0]))
    assert np.array_equal(mask, square | other)
    small = load_mask(split_rles(images["rles"].iloc[0]), size=512)
    assert small.shape == (512, 512) and set(np.unique(small)) == {0, 1}
    assert int(small.sum()) == (square | other).sum() // 4
    dicoms = find_dicoms(root)
    assert set(dicoms) == {siim_image_id(i) for i in range(6)}
    images["split"] = "train"
    records = segmentation_records(images, dicoms)
    assert records[0].positive and not records[1].positive
    # without height/width columns the mask grid is each DICOM's own (these fixtures are 32 x 32)
    assert {(r.height, r.width) for r in records} == {(32, 32)}
    stated = segmentation_records(images.assign(height=1024, width=1024), dicoms)
    assert {(r.height, r.width) for r in stated} == {(1024, 1024)}
    # odd fixtures are MONOCHROME1: read_image must invert them to the MONOCHROME2 look of the even ones
    assert read_image(records[1].path).shape == (32, 32)
    balanced = balance_negatives(images, seed=3)
    assert int(balanced["positive"].sum()) == 2 and len(balanced) == 4
    assert list(balanced.index) == sorted(balanced.index)
    assert list(balance_negatives(images, seed=3).index) == list(balanced.index)
    del dicoms[siim_image_id(2)]
    with pytest.raises(ValueError, match="1 SIIM images have no DICOM"):
        segmentation_records(images, dicoms)


def test_header_without_space_and_missing_column(tmp_path):
    (tmp_path / "a.csv").write_text("ImageId,EncodedPixels\nx,-1\n")
    assert read_siim_rle(tmp_path / "a.csv")["EncodedPixels"].tolist() == ["-1"]
    (tmp_path / "b.csv").write_text("ImageId, Pixels\nx, -1\n")
    with pytest.raises(ValueError, match=r"b\.csv: missing column\(s\) \['EncodedPixels'\]"):
        read_siim_rle(tmp_path / "b.csv")


def test_mask_on_image_grid_of_other_size(tmp_path):
    """RLEs refer to the image's own grid (SynthCXR writes 256 px SIIM images)."""
    from gloria.data.siim import dicom_shape
    from support.dicom_files import write_dicom

    mask = np.zeros((256, 200), np.uint8)
    mask[100:140, 20:30] = 1
    rle = rle_encode(mask)
    path = write_dicom(tmp_path / "x.dcm", np.zeros((256, 200), np.uint16))
    height, width = dicom_shape(path)
    assert (height, width) == (256, 200)
    assert np.array_equal(load_mask((rle,), height=height, width=width), mask)
    with pytest.raises(ValueError, match="beyond"):
        load_mask((rle_encode(np.ones((300, 300), np.uint8)),), height=height, width=width)
