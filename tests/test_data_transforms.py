"""Release image preprocessing: resize rule, padding split, crop, normalisation, geometry back to pixels."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms as T

from gloria.config import ImageTransformConfig
from gloria.data.transforms import (
    ImagePreprocessor,
    PreprocessGeometry,
    pad_split,
    resize_pad,
    resize_pad_mask,
    resized_size,
)

RELEASE = ImageTransformConfig(imsize=256, crop_size=224, norm="half")


@pytest.mark.parametrize(
    ("height", "width", "expected"),
    [
        (206, 103, (256, 127)),  # int(103 * 256 / 206) == 128, the float ratio gives 127
        (206, 206, (256, 255)),  # a square image loses a column in the release
        (103, 206, (127, 256)),  # landscape: the reverse rule
        (300, 200, (256, 170)),
        (1955, 1841, (256, 241)),
    ],
)
def test_resize_rule_uses_float_ratio(height: int, width: int, expected: tuple[int, int]) -> None:
    assert resized_size(height, width, 256) == expected


def test_resize_rule_against_plain_formula_on_many_sizes() -> None:
    differs = 0
    for h in range(180, 260):
        for w in range(90, 260):
            if h >= w:
                want = (256, int(w * (256 / h)))
                differs += int(w * 256 / h) != want[1]
            else:
                want = (int(h * (256 / w)), 256)
            assert resized_size(h, w, 256) == want
    assert differs > 0  # the sweep contains sizes where the two roundings disagree


def test_pad_split_floor_before_ceil_after() -> None:
    assert pad_split(85) == (42, 43)
    assert pad_split(86) == (43, 43)
    gray = np.full((206, 103), 200, dtype=np.uint8)
    padded = resize_pad(gray, 256)
    assert padded.shape == (256, 256)
    columns = np.flatnonzero(padded.max(axis=0) > 0)
    assert (columns[0], 255 - columns[-1]) == (64, 65)  # 129 padding columns: 64 before, 65 after
    landscape = resize_pad(gray.T.copy(), 256)
    rows = np.flatnonzero(landscape.max(axis=1) > 0)
    assert (rows[0], 255 - rows[-1]) == (64, 65)


def test_resize_is_inter_area() -> None:
    rng = np.random.default_rng(0)
    gray = rng.integers(0, 256, size=(512, 300), dtype=np.uint8)
    expected = cv2.resize(gray, (150, 256), interpolation=cv2.INTER_AREA)
    assert np.array_equal(resize_pad(gray, 256)[:, 53:203], expected)


def test_preprocessor_matches_release_pipeline_through_pil() -> None:
    rng = np.random.default_rng(1)
    gray = rng.integers(0, 256, size=(300, 211), dtype=np.uint8)
    ours = ImagePreprocessor(RELEASE)(gray)
    # the release: padded uint8 -> PIL RGB -> CenterCrop -> ToTensor -> Normalize(0.5, 0.5)
    pil = Image.fromarray(resize_pad(gray, 256)).convert("RGB")
    release = T.Compose([T.CenterCrop(224), T.ToTensor(), T.Normalize((0.5,) * 3, (0.5,) * 3)])(pil)
    assert ours.shape == (3, 224, 224)
    torch.testing.assert_close(ours, release, rtol=0, atol=1e-6)
    assert torch.equal(ours[0], ours[1]) and torch.equal(ours[1], ours[2])


def test_centre_crop_offset_and_normalisations() -> None:
    gray = np.zeros((256, 256), dtype=np.uint8)
    gray[16, 16] = 255  # lands on the crop's top-left pixel
    out = ImagePreprocessor(RELEASE)(gray)
    assert out[0, 0, 0].item() == pytest.approx(1.0)
    assert out[0].min().item() == pytest.approx(-1.0)
    imagenet = ImagePreprocessor(ImageTransformConfig(imsize=256, crop_size=224, norm="imagenet"))(gray)
    assert imagenet[:, 1, 1].tolist() == pytest.approx([-0.485 / 0.229, -0.456 / 0.224, -0.406 / 0.225])


def test_train_mode_random_crop() -> None:
    gray = np.random.default_rng(2).integers(0, 256, size=(256, 256), dtype=np.uint8)
    prep = ImagePreprocessor(RELEASE, train=True)
    torch.manual_seed(0)
    crops = [prep(gray) for _ in range(4)]
    assert all(c.shape == (3, 224, 224) for c in crops)
    assert any(not torch.equal(crops[0], c) for c in crops[1:])
    torch.manual_seed(0)
    assert torch.equal(prep(gray), crops[0])


def test_bad_configuration_and_input() -> None:
    with pytest.raises(ValueError, match="crop_size"):
        ImagePreprocessor(ImageTransformConfig(imsize=64, crop_size=72))
    with pytest.raises(ValueError, match="uint8"):
        ImagePreprocessor(RELEASE)(np.zeros((10, 10), dtype=np.float32))
    with pytest.raises(ValueError, match="size"):
        resized_size(0, 10, 256)


@pytest.mark.parametrize("shape", [(300, 200), (200, 300), (517, 389), (389, 517)])
def test_geometry_maps_bright_spot_back(shape: tuple[int, int]) -> None:
    h, w = shape
    prep = ImagePreprocessor(RELEASE)
    geometry = prep.geometry(h, w)
    y0, x0 = int(h * 0.45), int(w * 0.6)
    gray = np.zeros(shape, dtype=np.uint8)
    cv2.circle(gray, (x0, y0), 6, 255, -1)
    crop_map = prep(gray)[0].numpy()  # the spot on the crop grid [224, 224]
    back = geometry.crop_to_original(crop_map)
    assert back.shape == shape
    weights = np.where(np.isnan(back), 0.0, np.clip(back + 1.0, 0.0, None))  # [-1, 1] -> [0, 2]
    ys, xs = np.mgrid[0:h, 0:w]
    y = (weights * ys).sum() / weights.sum()
    x = (weights * xs).sum() / weights.sum()
    assert abs(y - y0) <= 0.1 and abs(x - x0) <= 0.1  # measured: ~0.01 px
    assert back[y0, x0] == pytest.approx(1.0, abs=0.05)


def test_geometry_low_resolution_cell_and_nan_outside_crop() -> None:
    prep = ImagePreprocessor(RELEASE)
    geometry = prep.geometry(300, 200)  # resized 256x170, pad left 43, crop 16..240
    assert (geometry.resized_height, geometry.resized_width) == (256, 170)
    assert (geometry.pad_top, geometry.pad_left, geometry.crop_top, geometry.crop_left) == (0, 43, 16, 16)
    cell = np.zeros((7, 7), dtype=np.float32)
    cell[5, 3] = 1.0
    back = geometry.crop_to_original(cell, mode="nearest")
    # rows whose centre maps above the crop (crop y < 0) or below it are NaN: 19 at each end
    nan_rows = np.flatnonzero(np.isnan(back).all(axis=1))
    assert nan_rows.tolist() == list(range(19)) + list(range(281, 300))
    assert not np.isnan(back[19:281]).any()
    ys, xs = np.nonzero(back == 1.0)
    cy, cx = geometry.original_to_crop(ys + 0.5, xs + 0.5)
    assert np.all((cy >= 5 * 32) & (cy <= 6 * 32) & (cx >= 3 * 32) & (cx <= 4 * 32))
    # and every original pixel mapping inside that cell is marked
    yy, xx = np.meshgrid(np.arange(300) + 0.5, np.arange(200) + 0.5, indexing="ij")
    cyy, cxx = geometry.original_to_crop(yy, xx)
    inside = (cyy > 160.5) & (cyy < 191.5) & (cxx > 96.5) & (cxx < 127.5)
    assert np.all(back[inside] == 1.0)


def test_geometry_batched_maps_and_tensor_input() -> None:
    geometry = ImagePreprocessor(ImageTransformConfig(imsize=72, crop_size=64)).geometry(90, 60)
    maps = torch.rand(2, 3, 4, 4)
    back = geometry.crop_to_original(maps)
    assert back.shape == (2, 3, 90, 60)
    single = geometry.crop_to_original(maps[1, 2].numpy())
    np.testing.assert_allclose(back[1, 2], single, equal_nan=True)
    with pytest.raises(ValueError, match="h, w"):
        geometry.crop_to_original(np.zeros(5))
    with pytest.raises(ValueError, match="mode"):
        geometry.crop_to_original(maps, mode="area")


def test_mask_follows_image_geometry_and_stays_binary() -> None:
    mask = np.zeros((400, 300), dtype=np.uint8)
    mask[100:200, 50:150] = 255
    image = resize_pad(mask, 128)
    for mode in ("nearest", "area"):
        out = resize_pad_mask(mask, 128, interpolation=mode)  # type: ignore[arg-type]
        assert out.dtype == np.uint8 and set(np.unique(out)) == {0, 1}
        agreement = np.mean(out == (image > 127))
        assert agreement > 0.995
    soft = np.linspace(0, 1, 400 * 300, dtype=np.float32).reshape(400, 300)
    assert set(np.unique(resize_pad_mask(soft, 64))) == {0, 1}
    with pytest.raises(ValueError, match="interpolation"):
        resize_pad_mask(mask, 64, interpolation="cubic")  # type: ignore[arg-type]


def _plain_crop_to_original(cell: np.ndarray, geometry: PreprocessGeometry, mode: str) -> np.ndarray:
    """Per original pixel: its centre in crop pixels, then the map value there (written from the geometry)."""
    h, w = cell.shape
    crop = geometry.crop_size
    out = np.full((geometry.original_height, geometry.original_width), np.nan)
    for y in range(geometry.original_height):
        for x in range(geometry.original_width):
            cy = (y + 0.5) * geometry.resized_height / geometry.original_height + geometry.pad_top
            cx = (x + 0.5) * geometry.resized_width / geometry.original_width + geometry.pad_left
            cy, cx = cy - geometry.crop_top, cx - geometry.crop_left
            if not (0 <= cy <= crop and 0 <= cx <= crop):
                continue
            gy, gx = cy * h / crop - 0.5, cx * w / crop - 0.5  # map-cell coordinates, centres at integers
            if mode == "nearest":
                out[y, x] = cell[min(max(round(gy), 0), h - 1), min(max(round(gx), 0), w - 1)]
                continue
            gy, gx = min(max(gy, 0.0), h - 1.0), min(max(gx, 0.0), w - 1.0)
            y0, x0 = int(np.floor(gy)), int(np.floor(gx))
            y1, x1 = min(y0 + 1, h - 1), min(x0 + 1, w - 1)
            fy, fx = gy - y0, gx - x0
            top = cell[y0, x0] * (1 - fx) + cell[y0, x1] * fx
            bottom = cell[y1, x0] * (1 - fx) + cell[y1, x1] * fx
            out[y, x] = top * (1 - fy) + bottom * fy
    return out


@pytest.mark.parametrize("shape", [(41, 29), (29, 41)])
@pytest.mark.parametrize("mode", ["bilinear", "nearest"])
def test_crop_to_original_equals_plain_loop(shape: tuple[int, int], mode: str) -> None:
    geometry = ImagePreprocessor(ImageTransformConfig(imsize=24, crop_size=20)).geometry(*shape)
    cell = np.random.default_rng(3).random((5, 5))
    ours = geometry.crop_to_original(cell, mode=mode)
    expected = _plain_crop_to_original(cell, geometry, mode)
    assert np.array_equal(np.isnan(ours), np.isnan(expected)) and np.isnan(ours).any()
    np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-5, equal_nan=True)


@pytest.mark.parametrize("norm", ["half", "imagenet"])
@pytest.mark.parametrize("train", [False, True])
def test_single_channel_path_equals_three_channel_torchvision_pipeline(norm: str, train: bool) -> None:
    """Cropping and normalising one channel must give exactly ToTensor -> crop -> Normalize on RGB."""
    from torchvision import transforms as TV

    from gloria.data.transforms import NORMALISATION, resize_pad

    gray = np.random.default_rng(3).integers(0, 256, (300, 411), dtype=np.uint8)
    cfg = ImageTransformConfig(imsize=256, crop_size=224, norm=norm)  # type: ignore[arg-type]
    mean, std = NORMALISATION[norm]
    crop = TV.RandomCrop(224) if train else TV.CenterCrop(224)
    reference = TV.Compose([TV.ToTensor(), crop, TV.Normalize(mean, std)])
    torch.manual_seed(11)
    ours = ImagePreprocessor(cfg, train=train)(gray)
    torch.manual_seed(11)
    expected = reference(np.repeat(resize_pad(gray, 256)[:, :, None], 3, axis=2))
    assert torch.equal(ours, expected)
