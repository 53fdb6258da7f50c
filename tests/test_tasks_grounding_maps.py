"""Grounding readouts sum to 1 over regions, match plain loops, and land on the original pixels."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gloria.config import ImageTransformConfig
from gloria.data.transforms import ImagePreprocessor
from gloria.tasks import grounding as G
from gloria.tasks import metrics as M
from gloria.viz import maps as V


def _inputs(K: int = 3, D: int = 8, T: int = 6, h: int = 4, w: int = 5):
    regions = torch.randn(K, D, h, w, dtype=torch.float64)
    words = torch.randn(K, D, T, dtype=torch.float64)
    mask = torch.zeros(K, T, dtype=torch.bool)
    for k, n in enumerate([3, 5, 2][:K]):
        mask[k, : n + 1] = True
    return regions, words, mask


@pytest.mark.parametrize("readout", G.READOUTS)
def test_word_maps_are_distributions_over_regions(readout: G.Readout) -> None:
    regions, words, mask = _inputs()
    maps = G.word_maps(regions, words, mask, readout=readout)
    assert maps.shape == (3, 6, 4, 5)
    sums = maps.sum(dim=(2, 3))
    expected = mask.clone()
    if readout == "two_stage_no_cls":
        expected[:, 0] = False
    torch.testing.assert_close(sums, expected.to(sums.dtype))
    assert (maps >= 0).all()


def test_first_stage_and_cosine_equal_plain_loops() -> None:
    regions, words, mask = _inputs()
    first = G.word_maps(regions, words, mask, readout="first_stage")
    cosine = G.word_maps(regions, words, mask, readout="cosine", cosine_temperature=7.0)
    for k in range(3):
        V_ = regions[k].reshape(8, -1)  # [D, R]
        slots = mask[k].nonzero().flatten().tolist()
        for j in slots:
            # first stage: p[m, j] = softmax over the text's words of V[:, m] . W[:, j]
            p = torch.stack(
                [torch.softmax(V_[:, m] @ words[k][:, slots], 0)[slots.index(j)] for m in range(20)]
            )
            torch.testing.assert_close(first[k, j].reshape(-1), p / p.sum())
            cos = torch.stack(
                [torch.nn.functional.cosine_similarity(V_[:, m], words[k][:, j], dim=0) for m in range(20)]
            )
            torch.testing.assert_close(cosine[k, j].reshape(-1), torch.softmax(7.0 * cos, 0))


def test_no_cls_readout_differs_only_by_the_word_softmax() -> None:
    regions, words, mask = _inputs()
    with_cls = G.word_maps(regions, words, mask, readout="two_stage")
    no_cls = G.word_maps(regions, words, mask, readout="two_stage_no_cls")
    assert torch.all(no_cls[:, 0] == 0)
    assert not torch.allclose(with_cls[:, 1:], no_cls[:, 1:])


def _bright_spot(height: int, width: int, y: int, x: int) -> np.ndarray:
    img = np.full((height, width), 40, np.uint8)
    yy, xx = np.mgrid[:height, :width]
    img[(yy - y) ** 2 + (xx - x) ** 2 <= 6**2] = 250
    return img


@pytest.mark.parametrize(
    ("height", "width", "spot"),
    [(300, 180, (170, 60)), (150, 260, (60, 190)), (200, 200, (40, 150))],
    ids=["portrait", "landscape", "square"],
)
def test_region_map_lands_on_the_bright_spot_in_original_pixels(
    height: int, width: int, spot: tuple[int, int]
) -> None:
    cfg = ImageTransformConfig(imsize=72, crop_size=64)
    pre = ImagePreprocessor(cfg)
    img = _bright_spot(height, width, *spot)
    x = pre(img)  # [3, 64, 64]
    # a 16 x 16 region grid over the 64 px crop: 4 px per region
    brightness = torch.nn.functional.avg_pool2d(x[:1, None][0], 4)[0]  # [16, 16]
    regions = torch.stack([brightness, torch.ones_like(brightness)])[None].double()  # [1, 2, h, w]
    words = torch.tensor([[[0.0, 30.0], [1.0, 0.0]]], dtype=torch.float64)  # slot 1 "looks for" brightness
    mask = torch.tensor([[True, True]])
    attention = G.word_maps(regions, words, mask, readout="cosine", cosine_temperature=20.0)[0, 1]
    assert float(attention.sum()) == pytest.approx(1.0)
    geom = V.geometry_for(height, width, cfg)
    full = V.to_original(attention, geom)
    assert full.shape == (height, width)
    row, col = np.unravel_index(np.nanargmax(full), full.shape)
    region_px = 4 / geom.scale  # one region in original pixels
    assert abs(row - spot[0]) <= region_px and abs(col - spot[1]) <= region_px
    truth = np.zeros((height, width), bool)
    yy, xx = np.mgrid[:height, :width]
    truth[(yy - spot[0]) ** 2 + (xx - spot[1]) ** 2 <= 6**2] = True
    assert M.pointing_game(full, truth, tolerance=int(np.ceil(region_px)))
    # the centre crop cuts the long side: those original pixels are NaN, the centre is finite
    assert np.isfinite(full[height // 2, width // 2])
    if height != width:
        cut = (0, width // 2) if height > width else (height // 2, 0)
        assert np.isnan(full[cut])


def test_location_prior_uses_class_and_side_words_and_never_the_image() -> None:
    H = W = 40
    left = M.box_to_mask((25, 10, 10, 10), H, W)  # patient's left = image right
    right = M.box_to_mask((5, 10, 10, 10), H, W)
    cases = [("effusion", ["left", "effusion"], left), ("effusion", ["right", "effusion"], right)] * 3
    by_class = G.LocationPrior(grid=20).fit(cases)
    by_words = G.LocationPrior(grid=20, use_words=True).fit(cases)
    m_class = by_class.predict("effusion", ["left"], H, W)
    m_words = by_words.predict("effusion", ["small", "left", "effusion"], H, W)
    assert m_class.shape == (H, W)
    assert M.pointing_game(m_words, left) and not M.pointing_game(m_words, right)
    assert m_class[15, 30] == pytest.approx(m_class[15, 10], abs=1e-6)  # class prior: both sides alike
    # unseen class falls back to all classes
    assert by_words.predict("edema", ["bilateral"], H, W).max() > 0


def test_side_level_and_word_slots() -> None:
    assert G.side_level(G.tokens("Small left basilar effusion")) == ("left", "lower")
    assert G.word_slots(
        ["[CLS]", "small", "left", "pleural", "effusion", "[SEP]"], ["Pleural", "effusion"]
    ) == [
        3,
        4,
    ]
    maps = torch.rand(6, 3, 3)
    maps = maps / maps.sum(dim=(1, 2), keepdim=True)
    assert float(G.phrase_map(maps, [3, 4]).sum()) == pytest.approx(1.0)
    rng = np.random.default_rng(0)
    assert G.random_map(4, 4, rng).sum() == pytest.approx(1.0)


def test_synth_grounding_cases_from_a_ground_truth_record(tmp_path) -> None:
    import json

    from gloria.data.rle import rle_encode

    report = (
        "FINDINGS: Heart size is normal.\n\nIMPRESSION: No edema. Small left pleural effusion. Lungs clear."
    )
    start = report.index("No edema")
    s0 = report.index("Small")
    mask = np.zeros((32, 32), bool)
    mask[20:26, 22:30] = True
    record = {
        "size": 32,
        "report": report,
        "impression_start": start,
        "chexpert_path": "CheXpert-v1.0/train/patient00001/study1/view1_frontal.jpg",
        "spans": [
            {"start": s0, "end": s0 + 5, "text": "Small", "role": "severity", "section": "impression"},
            {"start": s0 + 6, "end": s0 + 10, "text": "left", "role": "location", "section": "impression"},
            {
                "start": s0 + 11,
                "end": s0 + 27,
                "text": "pleural effusion",
                "role": "finding",
                "section": "impression",
            },
        ],
        "findings": [
            {
                "label": "Pleural Effusion",
                "area": int(mask.sum()),
                "mask_rle": rle_encode(mask),
                "spans": [0, 1, 2],
            },
            {"label": "Edema", "area": 0, "mask_rle": "-1", "spans": []},
        ],
    }
    (tmp_path / "synthcxr_ground_truth.jsonl").write_text(json.dumps(record) + "\n")
    (case,) = G.synth_grounding_cases(tmp_path)
    assert case.text == "Small left pleural effusion"
    assert case.finding_words == ["pleural", "effusion"] and case.location_words == ["left"]
    assert case.label == "Pleural Effusion" and case.image_path.name == "view1_frontal.jpg"
    np.testing.assert_array_equal(case.mask, mask)
    (tmp_path / "synthcxr_ground_truth.jsonl").write_text('{"size": 32}\n')
    with pytest.raises(ValueError, match="line 1"):
        G.synth_grounding_cases(tmp_path)
