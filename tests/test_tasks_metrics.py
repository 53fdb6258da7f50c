"""Evaluation metrics against hand-computed small cases and plain loops written from the definitions."""

from __future__ import annotations

import math

import numpy as np
import pytest

from gloria.tasks import metrics as M


def test_accuracy_confusion_f1_by_hand() -> None:
    y_true = [0, 0, 1, 1, 2, 2]
    y_pred = [0, 1, 1, 1, 0, 2]
    assert M.accuracy(y_true, y_pred) == pytest.approx(4 / 6)
    cm = M.confusion_matrix(y_true, y_pred, num_classes=3)
    np.testing.assert_array_equal(cm, [[1, 1, 0], [0, 2, 0], [1, 0, 1]])
    # class 0: tp 1, fp 1, fn 1 -> 0.5; class 1: tp 2, fp 1, fn 0 -> 0.8; class 2: tp 1, fp 0, fn 1 -> 2/3
    np.testing.assert_allclose(M.per_class_f1(cm), [0.5, 0.8, 2 / 3])
    assert M.macro_f1(y_true, y_pred, 3) == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)
    # a class absent from truth and predictions counts 0 in the macro mean
    assert M.macro_f1([0, 1], [0, 1], num_classes=3) == pytest.approx(2 / 3)


def test_metric_input_errors_name_the_problem() -> None:
    with pytest.raises(ValueError, match="differ in length"):
        M.accuracy([0, 1], [0])
    with pytest.raises(ValueError, match="out of range"):
        M.confusion_matrix([0, 3], [0, 1], num_classes=2)
    with pytest.raises(ValueError, match="integer"):
        M.accuracy([0.5, 1.0], [0, 1])


def test_auroc_by_hand_with_ties() -> None:
    # positives 0.8, 0.4; negatives 0.4, 0.1 -> pairs: (0.8>0.4)=1, (0.8>0.1)=1, (0.4=0.4)=0.5, (0.4>0.1)=1
    assert M.auroc([1, 1, 0, 0], [0.8, 0.4, 0.4, 0.1]) == pytest.approx(3.5 / 4)
    assert M.auroc([1, 0], [0.0, 1.0]) == 0.0
    assert math.isnan(M.auroc([1, 1], [0.2, 0.3]))


def test_auroc_equals_pair_counting_loop() -> None:
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 60)
    s = np.round(rng.normal(size=60), 1)  # rounding makes ties
    pos, neg = s[y == 1], s[y == 0]
    loop = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg) / (len(pos) * len(neg))
    assert M.auroc(y, s) == pytest.approx(loop, abs=1e-12)


def test_roc_curve_area_matches_auroc() -> None:
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, 80)
    s = np.round(rng.normal(size=80) + y, 1)
    fpr, tpr = M.roc_curve(y, s)
    assert fpr[0] == 0 and tpr[0] == 0 and fpr[-1] == 1 and tpr[-1] == 1
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0)
    assert np.trapezoid(tpr, fpr) == pytest.approx(M.auroc(y, s), abs=1e-12)


def test_per_class_auroc_one_vs_rest() -> None:
    y = [0, 1, 2, 0]
    s = np.array([[0.9, 0.1, 0.0], [0.2, 0.7, 0.1], [0.1, 0.2, 0.7], [0.3, 0.6, 0.1]])
    # class 1: positive 0.7 vs negatives 0.1, 0.2, 0.6 -> 1.0; class 0: positives .9,.3 vs .2,.1 -> 1.0
    np.testing.assert_allclose(M.per_class_auroc(y, s), [1.0, 1.0, 1.0])


def test_bootstrap_interval_contains_value_and_is_seeded() -> None:
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 200)
    p = np.where(rng.random(200) < 0.8, y, 1 - y)

    def acc(idx: np.ndarray) -> float:
        return M.accuracy(y[idx], p[idx])

    a = M.bootstrap_ci(acc, 200, n_boot=300, seed=5)
    b = M.bootstrap_ci(acc, 200, n_boot=300, seed=5)
    assert a == b
    assert a.low < a.value < a.high
    # binomial standard error sqrt(.8*.2/200) ~ 0.028: a 95% interval is about +-0.055 wide
    assert 0.07 < a.high - a.low < 0.16


def test_precision_at_k_by_hand() -> None:
    scores = np.array([[0.9, 0.8, 0.1, 0.5], [0.1, 0.2, 0.3, 0.4]])
    q = [0, 1]
    c = [0, 1, 0, 1]
    # query 0 ranking: c0(0) c1(1) c3(1) c2(0) -> P@1 1, P@2 .5 ; query 1: c3(1) c2(0) c1(1) c0(0) -> 1, .5
    out = M.precision_at_k(scores, q, c, ks=(1, 2, 4))
    assert out == {1: 1.0, 2: 0.5, 4: 0.5}
    with pytest.raises(ValueError, match="K=5"):
        M.precision_at_k(scores, q, c, ks=(5,))


def test_pointing_game_box_and_tolerance() -> None:
    heat = np.zeros((20, 30))
    heat[5, 12] = 1.0  # pixel centre (12.5, 5.5)
    box = M.box_to_mask((10, 4, 5, 3), 20, 30)  # x 10..15, y 4..7
    assert M.pointing_game(heat, box)
    far = M.box_to_mask((15, 4, 5, 3), 20, 30)
    assert not M.pointing_game(heat, far)
    assert M.pointing_game(heat, far, tolerance=3)
    heat_nan = heat.copy()
    heat_nan[0, 0] = np.nan
    assert M.pointing_game(heat_nan, box)


def test_threshold_iou_dice_by_hand() -> None:
    heat = np.array([[0.0, 1.0], [0.6, 0.4]])
    pred = M.threshold_map(heat, 0.5)
    np.testing.assert_array_equal(pred, [[False, True], [True, False]])
    truth = np.array([[False, True], [False, True]])
    iou, dice = M.iou_dice(pred, truth)
    assert iou == pytest.approx(1 / 3) and dice == pytest.approx(0.5)
    assert M.iou_dice(np.zeros((2, 2)), np.zeros((2, 2))) == (1.0, 1.0)


def test_contrast_to_noise_by_hand() -> None:
    heat = np.array([[1.0, 3.0], [0.0, 0.0]])
    mask = np.array([[True, True], [False, False]])
    # inside mean 2 var 1, outside mean 0 var 0 -> 2 / 1
    assert M.contrast_to_noise(heat, mask) == pytest.approx(2.0)
    assert math.isnan(M.contrast_to_noise(heat, np.ones((2, 2), bool)))
