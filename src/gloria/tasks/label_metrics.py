"""Per-class metrics of binary and multi-label scores: AUROC, AUPRC, and F1 / MCC at a threshold chosen on a
validation split, each with a percentile bootstrap interval, plus their macro means over classes.

Labels are [N, C] floats: 1 positive, 0 negative, NaN left out of that class (an uncertain label ignored).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from functools import partial
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from gloria.tasks import metrics as M

log = logging.getLogger(__name__)

ThresholdRule = Literal["f1", "mcc"]
THRESHOLD_RULES: tuple[ThresholdRule, ...] = ("f1", "mcc")
METRICS: tuple[str, ...] = ("auroc", "auprc", "f1", "mcc")


def _binary(y_true: ArrayLike, scores: ArrayLike) -> tuple[NDArray[np.bool_], NDArray[np.float64]]:
    t = np.asarray(y_true, dtype=np.float64).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    if t.shape != s.shape:
        raise ValueError(f"y_true and scores differ in length: {t.shape[0]} vs {s.shape[0]}")
    if not np.isin(t, (0.0, 1.0)).all():
        raise ValueError("binary labels must be 0 or 1 (drop ignored rows first)")
    if not np.all(np.isfinite(s)):
        raise ValueError("scores contain NaN or infinite values")
    return t.astype(bool), s


def average_precision(y_true: ArrayLike, scores: ArrayLike) -> float:
    """AUPRC as average precision: sum over distinct thresholds (descending) of (R_k - R_{k-1}) * P_k.

    Tied scores form one threshold (scikit-learn's ``average_precision_score``). NaN without positives.
    """
    t, s = _binary(y_true, scores)
    n_pos = int(t.sum())
    if n_pos == 0:
        return math.nan
    order = np.argsort(-s, kind="mergesort")
    s_sorted, t_sorted = s[order], t[order]
    last = np.r_[np.flatnonzero(np.diff(s_sorted)), s.size - 1]  # last index of each run of equal scores
    tps = np.cumsum(t_sorted)[last].astype(np.float64)
    precision = tps / (last + 1)
    recall_step = np.diff(np.r_[0.0, tps]) / n_pos
    return float(np.sum(recall_step * precision))


def _counts_at(t: NDArray[np.bool_], s: NDArray[np.float64], threshold: float) -> tuple[int, int, int, int]:
    pred = s >= threshold
    tp = int(np.sum(pred & t))
    fp = int(np.sum(pred & ~t))
    fn = int(np.sum(~pred & t))
    return tp, fp, fn, t.size - tp - fp - fn


def f1_from_counts(tp: float, fp: float, fn: float) -> float:
    """2TP / (2TP + FP + FN); 0 when there is nothing positive, predicted or true."""
    denom = 2 * tp + fp + fn
    return float(2 * tp / denom) if denom > 0 else 0.0


def mcc_from_counts(tp: float, fp: float, fn: float, tn: float) -> float:
    """Matthews correlation (TP*TN - FP*FN) / sqrt((TP+FP)(TP+FN)(TN+FP)(TN+FN)); 0 when a factor is 0."""
    denom = math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    return float((tp * tn - fp * fn) / denom) if denom > 0 else 0.0


def f1_at(y_true: ArrayLike, scores: ArrayLike, threshold: float) -> float:
    """F1 of the prediction ``score >= threshold``."""
    tp, fp, fn, _ = _counts_at(*_binary(y_true, scores), threshold)
    return f1_from_counts(tp, fp, fn)


def mcc_at(y_true: ArrayLike, scores: ArrayLike, threshold: float) -> float:
    """MCC of the prediction ``score >= threshold``."""
    return mcc_from_counts(*_counts_at(*_binary(y_true, scores), threshold))


def choose_threshold(y_true: ArrayLike, scores: ArrayLike, rule: ThresholdRule = "mcc") -> float:
    """The score (one of ``scores``) whose prediction ``score >= t`` maximises F1 or MCC on these rows.

    All distinct scores are tried at once from cumulative counts; ties in the rule go to the highest
    threshold. ValueError when there are no rows.
    """
    if rule not in THRESHOLD_RULES:
        raise ValueError(f"threshold rule must be one of {list(THRESHOLD_RULES)}, got {rule!r}")
    t, s = _binary(y_true, scores)
    if t.size == 0:
        raise ValueError("choose_threshold needs at least one row")
    order = np.argsort(-s, kind="mergesort")
    s_sorted, t_sorted = s[order], t[order]
    last = np.r_[np.flatnonzero(np.diff(s_sorted)), s.size - 1]
    tp = np.cumsum(t_sorted)[last].astype(np.float64)
    fp = (last + 1) - tp
    n_pos = float(t.sum())
    fn = n_pos - tp
    tn = (t.size - n_pos) - fp
    if rule == "f1":
        denom = 2 * tp + fp + fn
        value = np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)
    else:
        denom = np.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
        value = np.divide(tp * tn - fp * fn, denom, out=np.zeros_like(tp), where=denom > 0)
    return float(s_sorted[last][int(np.argmax(value))])


def _auroc(t: NDArray[np.bool_], s: NDArray[np.float64]) -> float:
    return M.auroc(t, s) if t.size else math.nan


def class_metric(name: str, threshold: float) -> Callable[[NDArray[np.bool_], NDArray[np.float64]], float]:
    """The metric ``name`` (one of :data:`METRICS`) as f(labels, scores); F1 / MCC at ``threshold``."""
    if name == "auroc":
        return _auroc
    if name == "auprc":
        return lambda t, s: average_precision(t, s) if t.size else math.nan
    if name == "f1":
        return lambda t, s: f1_from_counts(*_counts_at(t, s, threshold)[:3]) if t.any() else math.nan
    if name == "mcc":
        return lambda t, s: mcc_from_counts(*_counts_at(t, s, threshold)) if t.size else math.nan
    raise ValueError(f"unknown metric {name!r}; choose from {list(METRICS)}")


def evaluate_labels(
    scores: ArrayLike,
    labels: ArrayLike,
    class_names: Sequence[str],
    *,
    valid: ArrayLike,
    rule: ThresholdRule = "mcc",
    n_boot: int = 1000,
    seed: int = 0,
) -> dict[str, object]:
    """Per-class and macro AUROC, AUPRC, F1, MCC on the test rows (``~valid``), with bootstrap 95% intervals.

    ``scores`` and ``labels`` are [N, C]; labels 1 / 0 / NaN (NaN: that row is left out of that class).
    Each class's threshold maximises ``rule`` on its ``valid`` rows and is applied unchanged to the test
    rows; a class whose valid rows lack a positive or a negative is skipped (``skipped`` says why, the
    macro means are over the others) and ValueError when no class is left. The bootstrap resamples test
    rows (one draw for all classes), so the macro interval accounts for the classes sharing the images.
    """
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    val = np.asarray(valid, dtype=bool)
    C = len(class_names)
    if s.ndim != 2 or s.shape != y.shape or s.shape[1] != C:
        raise ValueError(f"scores and labels must both be [N, {C}], got {s.shape} and {y.shape}")
    if val.shape != (s.shape[0],):
        raise ValueError(f"valid must be [N] = [{s.shape[0]}] booleans, got {val.shape}")
    test_rows = np.flatnonzero(~val)
    if test_rows.size == 0:
        raise M.NotScorableError("no test rows: every row is in the validation split")
    thresholds: dict[int, float] = {}
    skipped: dict[str, str] = {}
    for c, name in enumerate(class_names):
        keep = val & np.isfinite(y[:, c])
        if not keep.any() or len(np.unique(y[keep, c])) < 2:
            skipped[name] = "the validation rows lack a positive or a negative: no threshold"
            log.warning("class %r skipped: %s", name, skipped[name])
            continue
        thresholds[c] = choose_threshold(y[keep, c], s[keep, c], rule)
    if not thresholds:
        raise M.NotScorableError(
            f"no class has positives and negatives among the {int(val.sum())} validation rows: "
            f"{list(class_names)}"
        )
    evaluated = sorted(thresholds)
    ys, ss = y[test_rows], s[test_rows]

    def value(metric: str, c: int, idx: NDArray[np.int64]) -> float:
        t, sc = ys[idx, c], ss[idx, c]
        keep = np.isfinite(t)
        return class_metric(metric, thresholds[c])(t[keep].astype(bool), sc[keep])

    per_class: dict[str, dict[str, object]] = {}
    for c in evaluated:
        name = class_names[c]
        known = np.isfinite(ys[:, c])
        entry: dict[str, object] = {
            "threshold": thresholds[c],
            "n": int(known.sum()),
            "positives": int(np.nansum(ys[:, c])),
        }
        for metric in METRICS:
            entry[metric] = M.bootstrap_ci(
                partial(value, metric, c), len(test_rows), n_boot=n_boot, seed=seed
            ).as_dict()
        per_class[name] = entry

    def macro_value(metric: str, idx: NDArray[np.int64]) -> float:
        return _nanmean([value(metric, c, idx) for c in evaluated])

    macro = {
        metric: M.bootstrap_ci(
            partial(macro_value, metric), len(test_rows), n_boot=n_boot, seed=seed
        ).as_dict()
        for metric in METRICS
    }
    return {
        "n_valid": int(val.sum()),
        "n_test": int(test_rows.size),
        "threshold_rule": rule,
        "classes": per_class,
        "macro": macro,
        "skipped": skipped,
    }


def _nanmean(values: Sequence[float]) -> float:
    finite = [v for v in values if np.isfinite(v)]
    return float(np.mean(finite)) if finite else math.nan
