"""read_image: JPEG/PNG via OpenCV, DICOM by name or preamble, arrays, PIL images, clear errors."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from gloria.data.dicom import read_dicom
from gloria.data.images import array_to_gray, is_dicom, read_image
from support.dicom_files import write_dicom


def _pneumonia_jpegs() -> list[Path]:
    spec = importlib.util.find_spec("pneumonia_model_package")
    if spec is None or not spec.submodule_search_locations:
        return []
    root = Path(spec.submodule_search_locations[0]) / "datasets" / "pneumonia-data" / "val"
    return sorted(root.glob("*.jpeg"))


def test_png_roundtrip_and_colour_to_gray(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    gray = rng.integers(0, 256, size=(37, 53), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "g.png"), gray)
    np.testing.assert_array_equal(read_image(tmp_path / "g.png"), gray)
    bgr = rng.integers(0, 256, size=(20, 30, 3), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "c.png"), bgr)
    b, g, r = (bgr[..., i].astype(float) for i in range(3))
    luma = 0.299 * r + 0.587 * g + 0.114 * b
    assert np.abs(read_image(str(tmp_path / "c.png")).astype(float) - luma).max() <= 1.0


def test_16_bit_png_is_reduced_to_8_bits(tmp_path: Path) -> None:
    deep = np.array([[0, 256 * 100], [256 * 200 + 255, 65535]], dtype=np.uint16)
    cv2.imwrite(str(tmp_path / "d.png"), deep)
    np.testing.assert_array_equal(read_image(tmp_path / "d.png"), [[0, 100], [200, 255]])


def test_real_jpegs_read_in_place() -> None:
    files = _pneumonia_jpegs()
    if not files:
        pytest.skip("pneumonia_model_package is not installed")
    for path in files[:3]:
        image = read_image(path)
        assert image.dtype == np.uint8 and image.ndim == 2
        np.testing.assert_array_equal(image, cv2.imread(str(path), cv2.IMREAD_GRAYSCALE))
        assert 968 <= image.shape[1] <= 1776


def test_dicom_by_suffix_and_by_preamble(tmp_path: Path) -> None:
    data = np.arange(0, 4096, 64, dtype=np.uint16).reshape(8, 8)
    named = write_dicom(tmp_path / "x.dicom", data, bits_stored=12, photometric="MONOCHROME1")
    bare = write_dicom(tmp_path / "image_without_suffix", data, bits_stored=12, photometric="MONOCHROME1")
    assert is_dicom(named) and is_dicom(bare) and not is_dicom(tmp_path / "missing.png")
    expected = read_dicom(named)
    np.testing.assert_array_equal(read_image(named), expected)
    np.testing.assert_array_equal(read_image(bare), expected)
    np.testing.assert_array_equal(read_image(bare, dicom_mode="release"), read_dicom(named, mode="release"))
    old = write_dicom(tmp_path / "old_without_suffix", data, bits_stored=12, preamble=False)
    assert not is_dicom(old)
    np.testing.assert_array_equal(read_image(old), 255 - expected)  # MONOCHROME2 copy


def test_array_inputs_and_scaling() -> None:
    gray = np.array([[0, 17], [128, 255]], dtype=np.uint8)
    np.testing.assert_array_equal(read_image(gray), gray)
    np.testing.assert_array_equal(read_image(np.array([[0.0, 0.5], [0.25, 1.0]])), [[0, 128], [64, 255]])
    np.testing.assert_array_equal(read_image(np.array([[-1.0, 0.0], [1.0, 3.0]])), [[0, 64], [128, 255]])
    np.testing.assert_array_equal(read_image(np.array([[0, 200]], dtype=np.int64)), [[0, 200]])
    np.testing.assert_array_equal(read_image(np.array([[0, 2000, 4000]], dtype=np.uint16)), [[0, 128, 255]])
    np.testing.assert_array_equal(read_image(np.array([[True, False]])), [[255, 0]])
    np.testing.assert_array_equal(read_image(gray[:, :, None]), gray)
    rgb = np.zeros((2, 2, 3), dtype=np.uint8)
    rgb[..., 0] = 255  # pure red -> luma 0.299
    np.testing.assert_array_equal(read_image(rgb), np.full((2, 2), 76))
    rgba = np.concatenate([rgb, np.full((2, 2, 1), 255, np.uint8)], axis=2)
    np.testing.assert_array_equal(read_image(rgba), np.full((2, 2), 76))
    np.testing.assert_array_equal(array_to_gray(np.full((3, 3), 7.0)), np.zeros((3, 3)))  # constant > 1


def test_bad_arrays() -> None:
    with pytest.raises(ValueError, match="shape"):
        read_image(np.zeros((2, 2, 2)))
    with pytest.raises(ValueError, match="shape"):
        read_image(np.zeros(5))
    with pytest.raises(ValueError, match="NaN"):
        read_image(np.array([[0.0, np.nan]]))
    with pytest.raises(ValueError, match="empty"):
        read_image(np.zeros((0, 4), dtype=np.uint8))
    with pytest.raises(ValueError, match="dict"):
        read_image({"not": "an image"})


def test_pil_image() -> None:
    pil = Image.fromarray(np.array([[10, 20], [30, 40]], dtype=np.uint8)).convert("RGB")
    np.testing.assert_array_equal(read_image(pil), [[10, 20], [30, 40]])


def test_missing_and_corrupt_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"nope\.jpg"):
        read_image(tmp_path / "nope.jpg")
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff" + b"garbage" * 10)
    with pytest.raises(ValueError, match=r"broken\.jpg"):
        read_image(broken)
    text = tmp_path / "notes.png"
    text.write_text("hello")
    with pytest.raises(ValueError, match=r"notes\.png"):
        read_image(str(text))


def test_package_reexports_rle_lazily() -> None:
    import gloria.data as data
    from gloria.data import rle

    assert data.rle_decode is rle.rle_decode and data.rle_encode is rle.rle_encode
    mask = data.rle_decode(data.rle_encode(np.eye(4, dtype=np.uint8)), 4, 4)
    np.testing.assert_array_equal(mask, np.eye(4, dtype=np.uint8))
    with pytest.raises(AttributeError, match="no_such_name"):
        _ = data.no_such_name
