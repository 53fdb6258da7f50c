"""Evaluation metrics for zero-shot classification and retrieval (method.md section 5, paper protocol).

Plain NumPy on small arrays: accuracy, macro F1, confusion matrix, rank-based AUROC with ties, ROC curve
points, bootstrap confidence intervals and Precision@K from a full score matrix (the chunked version lives
in ``gloria.tasks.retrieval``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray


class NotScorableError(ValueError):
    """The data cannot give the metric at all (no test rows, no validation positive for any threshold):
    a property of the evaluation set, not of the model or the settings."""


def _labels(y: ArrayLike, name: str) -> NDArray[np.int64]:
    arr = np.asarray(y)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    fractional = arr.size and not np.issubdtype(arr.dtype, np.integer) and np.any(np.mod(arr, 1) != 0)
    if fractional:
        raise ValueError(f"{name} must hold integer class indices, got {arr[:5]!r}...")
    return arr.astype(np.int64)


def _pair(y_true: ArrayLike, y_pred: ArrayLike) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    t, p = _labels(y_true, "y_true"), _labels(y_pred, "y_pred")
    if t.shape != p.shape:
        raise ValueError(f"y_true and y_pred differ in length: {t.shape[0]} vs {p.shape[0]}")
    if t.size == 0:
        raise ValueError("metrics need at least one sample, got none")
    return t, p


def accuracy(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Fraction of samples whose predicted class equals the true class."""
    t, p = _pair(y_true, y_pred)
    return float(np.mean(t == p))


def confusion_matrix(
    y_true: ArrayLike, y_pred: ArrayLike, num_classes: int | None = None
) -> NDArray[np.int64]:
    """Counts ``[C, C]``: row = true class, column = predicted class."""
    t, p = _pair(y_true, y_pred)
    if t.min() < 0 or p.min() < 0:
        raise ValueError("class indices must be >= 0")
    c = int(max(t.max(), p.max()) + 1) if num_classes is None else num_classes
    if t.max() >= c or p.max() >= c:
        raise ValueError(f"class index out of range for num_classes={c}")
    cm = np.zeros((c, c), dtype=np.int64)
    np.add.at(cm, (t, p), 1)
    return cm


def per_class_f1(cm: NDArray[np.int64]) -> NDArray[np.float64]:
    """F1 per class from a confusion matrix; a class never true and never predicted scores 0."""
    tp = np.diag(cm).astype(np.float64)
    denom = cm.sum(axis=0) + cm.sum(axis=1)  # predicted + actual = 2tp + fp + fn
    return np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)


def macro_f1(y_true: ArrayLike, y_pred: ArrayLike, num_classes: int | None = None) -> float:
    """Unweighted mean of the per-class F1 scores over ``num_classes`` classes."""
    return float(per_class_f1(confusion_matrix(y_true, y_pred, num_classes)).mean())


def auroc(y_true: ArrayLike, scores: ArrayLike) -> float:
    """Area under the ROC curve for binary labels (Mann-Whitney U with average ranks for ties).

    NaN when only one class is present (the area is undefined).
    """
    t = np.asarray(y_true).astype(bool).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    if t.shape != s.shape:
        raise ValueError(f"y_true and scores differ in length: {t.shape[0]} vs {s.shape[0]}")
    if not np.all(np.isfinite(s)):
        raise ValueError("scores contain NaN or infinite values")
    n_pos = int(t.sum())
    n_neg = t.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return math.nan
    order = np.argsort(s, kind="mergesort")
    sorted_s = s[order]
    ranks = np.empty(s.size, dtype=np.float64)
    # average rank (1-based) inside each run of equal scores
    boundaries = np.flatnonzero(np.diff(sorted_s)) + 1
    starts = np.concatenate(([0], boundaries))
    ends = np.concatenate((boundaries, [s.size]))
    run_rank = (starts + ends + 1) / 2.0
    ranks[order] = np.repeat(run_rank, ends - starts)
    u = ranks[t].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def roc_curve(y_true: ArrayLike, scores: ArrayLike) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """False- and true-positive rates at every distinct threshold, from (0, 0) to (1, 1)."""
    t = np.asarray(y_true).astype(bool).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    n_pos, n_neg = int(t.sum()), int((~t).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError("roc_curve needs both positive and negative samples")
    order = np.argsort(-s, kind="mergesort")
    s_sorted, t_sorted = s[order], t[order]
    last_of_run = np.r_[np.flatnonzero(np.diff(s_sorted)), s.size - 1]
    tps = np.cumsum(t_sorted)[last_of_run]
    fps = (last_of_run + 1) - tps
    fpr = np.r_[0.0, fps / n_neg]
    tpr = np.r_[0.0, tps / n_pos]
    return fpr, tpr


def per_class_auroc(y_true: ArrayLike, scores: ArrayLike) -> NDArray[np.float64]:
    """One-vs-rest AUROC per class: ``y_true`` [N] class indices, ``scores`` [N, C]."""
    t = _labels(y_true, "y_true")
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 2 or s.shape[0] != t.shape[0]:
        raise ValueError(f"scores must be [N, C] with N={t.shape[0]}, got {s.shape}")
    return np.array([auroc(t == c, s[:, c]) for c in range(s.shape[1])])


@dataclass(frozen=True)
class Interval:
    """A point estimate with a percentile bootstrap confidence interval."""

    value: float
    low: float
    high: float

    def as_dict(self) -> dict[str, float]:
        return {"value": self.value, "low": self.low, "high": self.high}


def bootstrap_ci(
    metric: Callable[[NDArray[np.int64]], float],
    n: int,
    *,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> Interval:
    """Percentile bootstrap of ``metric(indices)`` over ``n`` samples drawn with replacement.

    ``metric`` receives an index array into the evaluation set; resamples where it is NaN (e.g. AUROC with
    one class) are skipped.
    """
    if n <= 0:
        raise ValueError(f"bootstrap needs at least one sample, got n={n}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    value = metric(np.arange(n, dtype=np.int64))
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n, size=(n_boot, n))
    stats = np.array([metric(idx) for idx in draws], dtype=np.float64)
    stats = stats[np.isfinite(stats)]
    if stats.size == 0:
        return Interval(value, math.nan, math.nan)
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(stats, [alpha, 1.0 - alpha])
    return Interval(float(value), float(low), float(high))


def precision_at_k(
    scores: ArrayLike,
    query_labels: ArrayLike,
    candidate_labels: ArrayLike,
    ks: Sequence[int] = (1, 5, 10, 100),
) -> dict[int, float]:
    """Mean over queries of the fraction of the top-K candidates with the query's class.

    ``scores`` [Q, C]: query q's similarity to candidate c (higher = closer). Ties are broken by the
    lower candidate index (stable sort), as in the chunked version.
    """
    s = np.asarray(scores, dtype=np.float64)
    q, c = _labels(query_labels, "query_labels"), _labels(candidate_labels, "candidate_labels")
    if s.shape != (q.shape[0], c.shape[0]):
        raise ValueError(f"scores must be [{q.shape[0]}, {c.shape[0]}], got {s.shape}")
    for k in ks:
        if not 1 <= k <= c.shape[0]:
            raise ValueError(f"K={k} must be between 1 and the number of candidates {c.shape[0]}")
    order = np.argsort(-s, axis=1, kind="stable")[:, : max(ks)]
    hits = c[order] == q[:, None]
    return {int(k): float(hits[:, :k].mean()) for k in ks}


# ------------------------------------------------------------------------------------ grounding metrics
# Maps are [H, W] float arrays in original-image pixels (NaN outside the part the model saw);
# ground truth is a boolean mask [H, W] or a box (x, y, width, height) in pixels.


def box_to_mask(box: Sequence[float], height: int, width: int) -> NDArray[np.bool_]:
    """Boolean mask [H, W] of the pixels whose centres lie inside box ``(x, y, width, height)``."""
    if len(box) != 4:
        raise ValueError(f"a box is (x, y, width, height), got {tuple(box)!r}")
    x, y, w, h = (float(v) for v in box)
    if w <= 0 or h <= 0:
        raise ValueError(f"box width and height must be positive, got {tuple(box)!r}")
    cols = np.arange(width) + 0.5
    rows = np.arange(height) + 0.5
    inside_c = (cols >= x) & (cols <= x + w)
    inside_r = (rows >= y) & (rows <= y + h)
    return inside_r[:, None] & inside_c[None, :]


def _check_map(heatmap: ArrayLike, mask: ArrayLike) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
    m = np.asarray(heatmap, dtype=np.float64)
    g = np.asarray(mask).astype(bool)
    if m.ndim != 2 or m.shape != g.shape:
        raise ValueError(f"map {m.shape} and mask {g.shape} must both be [H, W] of the same size")
    if not np.any(np.isfinite(m)):
        raise ValueError("map has no finite values")
    return m, g


def _dilate(mask: NDArray[np.bool_], radius: int) -> NDArray[np.bool_]:
    if radius <= 0:
        return mask
    import cv2

    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    return cv2.dilate(mask.astype(np.uint8), kernel).astype(bool)


def pointing_game(heatmap: ArrayLike, mask: ArrayLike, *, tolerance: int = 0) -> bool:
    """Hit when the map's maximum (first in row-major order) lies in the mask dilated by ``tolerance`` px.

    For a box, pass ``box_to_mask(box, H, W)``: the maximum's pixel centre inside the box is a hit.
    """
    m, g = _check_map(heatmap, mask)
    row, col = np.unravel_index(int(np.nanargmax(m)), m.shape)
    return bool(_dilate(g, tolerance)[row, col])


def threshold_map(heatmap: ArrayLike, fraction: float = 0.5) -> NDArray[np.bool_]:
    """Pixels at or above ``fraction`` of the way from the map's minimum to its maximum (NaN -> False)."""
    m = np.asarray(heatmap, dtype=np.float64)
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be in [0, 1], got {fraction}")
    lo, hi = np.nanmin(m), np.nanmax(m)
    if hi == lo:
        return np.isfinite(m)
    with np.errstate(invalid="ignore"):
        return np.nan_to_num(m, nan=-np.inf) >= lo + fraction * (hi - lo)


def iou_dice(pred: ArrayLike, mask: ArrayLike) -> tuple[float, float]:
    """(IoU, Dice) of two boolean masks; both empty counts as a perfect match (1, 1)."""
    p, g = np.asarray(pred).astype(bool), np.asarray(mask).astype(bool)
    if p.shape != g.shape:
        raise ValueError(f"masks differ in shape: {p.shape} vs {g.shape}")
    inter = float(np.logical_and(p, g).sum())
    union = float(np.logical_or(p, g).sum())
    total = float(p.sum() + g.sum())
    if total == 0:
        return 1.0, 1.0
    return inter / union, 2.0 * inter / total


def contrast_to_noise(heatmap: ArrayLike, mask: ArrayLike) -> float:
    """CNR = |mean inside - mean outside| / sqrt(var inside + var outside) over finite pixels.

    NaN when either side has no finite pixels; 0 when both variances are zero and the means are equal.
    """
    m, g = _check_map(heatmap, mask)
    finite = np.isfinite(m)
    inside, outside = m[g & finite], m[~g & finite]
    if inside.size == 0 or outside.size == 0:
        return math.nan
    diff = abs(float(inside.mean()) - float(outside.mean()))
    noise = math.sqrt(float(inside.var()) + float(outside.var()))
    if noise == 0.0:
        return 0.0 if diff == 0.0 else math.inf
    return diff / noise


def expected_calibration_error(probs: ArrayLike, y_true: ArrayLike, n_bins: int = 15) -> float:
    """ECE of the top-class probability: sum over equal-width confidence bins of |accuracy - confidence|
    weighted by the bin's share of samples. ``probs`` [N, C] rows summing to 1."""
    p = np.asarray(probs, dtype=np.float64)
    y = _labels(y_true, "y_true")
    if p.ndim != 2 or p.shape[0] != y.shape[0]:
        raise ValueError(f"probs must be [N, C] with N={y.shape[0]}, got {p.shape}")
    conf = p.max(axis=1)
    correct = (p.argmax(axis=1) == y).astype(np.float64)
    bins = np.minimum((conf * n_bins).astype(np.int64), n_bins - 1)
    ece = 0.0
    for b in range(n_bins):
        sel = bins == b
        if sel.any():
            ece += sel.mean() * abs(correct[sel].mean() - conf[sel].mean())
    return float(ece)


def chance_levels(labels: Sequence[object]) -> tuple[float, float]:
    """(largest class share: zero-shot accuracy by always answering it, expected same-class share of a
    random candidate: retrieval's P@K by chance)."""
    _, counts = np.unique(np.asarray([str(x) for x in labels]), return_counts=True)
    shares = counts / counts.sum()
    return float(shares.max()), float((shares**2).sum())
