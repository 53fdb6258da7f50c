"""Plots of evaluation results: attention overlays, ROC curves, confusion matrix, Precision@K.

Matplotlib's object API on an Agg canvas: no pyplot, so nothing touches global figure state or needs a
display. Each function returns a ``Figure``; ``save`` writes it as PNG.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from numpy.typing import NDArray


def new_figure(width: float, height: float) -> Figure:
    """A figure bound to an Agg canvas (independent of pyplot and of any interactive backend)."""
    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save(fig: Figure, path: str | Path, dpi: int = 100) -> Path:
    """Write ``fig`` as PNG (parent folders created) and return the path."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=dpi, format="png")
    return out


def attention_overlays(
    image: NDArray[np.uint8],
    maps: Sequence[NDArray[np.floating]],
    titles: Sequence[str],
    *,
    alpha: float = 0.45,
    boxes: Sequence[tuple[float, float, float, float]] = (),
    columns: int = 4,
) -> Figure:
    """The grayscale image [H, W] and one panel per map [H, W] (original pixels, NaN = not seen).

    Each map is shown in a jet colour scale over its own finite range, with its colourbar; ``boxes``
    (x, y, w, h) are drawn on every panel.
    """
    if len(maps) != len(titles):
        raise ValueError(f"{len(maps)} maps but {len(titles)} titles")
    for m in maps:
        if m.shape != image.shape[:2]:
            raise ValueError(f"map shape {m.shape} differs from image shape {image.shape[:2]}")
    panels = 1 + len(maps)
    cols = min(columns, panels)
    rows = -(-panels // cols)
    h, w = image.shape[:2]
    fig = new_figure(3.0 * cols, 3.0 * rows * h / w + 0.3 * rows)
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax in axes.ravel():
        ax.set_axis_off()
    axes[0, 0].imshow(image, cmap="gray", vmin=0, vmax=255)
    axes[0, 0].set_title("image", fontsize=9)
    for i, (m, title) in enumerate(zip(maps, titles, strict=True), start=1):
        ax = axes.ravel()[i]
        ax.imshow(image, cmap="gray", vmin=0, vmax=255)
        masked = np.ma.masked_invalid(np.asarray(m, dtype=np.float64))
        shown = ax.imshow(masked, cmap="jet", alpha=alpha)
        fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.02).ax.tick_params(labelsize=7)
        ax.set_title(title, fontsize=9)
    for ax in axes.ravel()[:panels]:
        for x, y, bw, bh in boxes:
            ax.add_patch(_rectangle(x, y, bw, bh))
    return fig


def _rectangle(x: float, y: float, w: float, h: float) -> Rectangle:
    return Rectangle((x, y), w, h, fill=False, edgecolor="lime", linewidth=1.5)


def roc_curves(curves: Mapping[str, tuple[NDArray[np.float64], NDArray[np.float64], float]]) -> Figure:
    """One ROC curve per class: ``{name: (fpr, tpr, auroc)}``, with the chance diagonal."""
    fig = new_figure(4.5, 4.5)
    ax = fig.add_subplot()
    for name, (fpr, tpr, area) in curves.items():
        ax.plot(fpr, tpr, label=f"{name} (AUROC {area:.3f})")
    ax.plot([0, 1], [0, 1], linestyle="--", color="gray", linewidth=1)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_aspect("equal")
    ax.legend(fontsize=7, loc="lower right")
    ax.set_title("ROC (one vs rest)")
    return fig


def confusion_matrix(cm: NDArray[np.integer], class_names: Sequence[str]) -> Figure:
    """Counts with row-normalised colour (row = true class, column = predicted class)."""
    c = len(class_names)
    if cm.shape != (c, c):
        raise ValueError(f"confusion matrix shape {cm.shape} does not match {c} class names")
    rows = cm.sum(axis=1, keepdims=True)
    norm = np.divide(cm, rows, out=np.zeros(cm.shape, dtype=np.float64), where=rows > 0)
    fig = new_figure(1.2 * c + 2.5, 1.0 * c + 1.8)
    ax = fig.add_subplot()
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    for i in range(c):
        for j in range(c):
            ax.text(
                j,
                i,
                str(int(cm[i, j])),
                ha="center",
                va="center",
                color="white" if norm[i, j] > 0.5 else "black",
                fontsize=9,
            )
    ax.set_xticks(range(c), labels=list(class_names), rotation=35, ha="right", fontsize=8)
    ax.set_yticks(range(c), labels=list(class_names), fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    fig.colorbar(im, ax=ax, fraction=0.046, label="fraction of true class")
    return fig


def precision_at_k(results: Mapping[str, Mapping[int, float]], *, chance: float | None = None) -> Figure:
    """Grouped bars of Precision@K: ``{series name: {K: precision}}``, optional chance line."""
    names = list(results)
    ks = sorted({int(k) for r in results.values() for k in r})
    fig = new_figure(min(8.0, 2.5 + 0.3 * len(ks) * max(1, len(names))), 3.8)
    ax = fig.add_subplot()
    width = 0.8 / max(1, len(names))
    x = np.arange(len(ks))
    for i, name in enumerate(names):
        vals = [results[name].get(k, np.nan) for k in ks]
        ax.bar(x + (i - (len(names) - 1) / 2) * width, vals, width, label=name)
    if chance is not None:
        ax.axhline(chance, color="gray", linestyle="--", linewidth=1, label="chance")
    ax.set_xticks(x, labels=[f"P@{k}" for k in ks])
    ax.set_ylim(0, 1)
    ax.set_ylabel("precision")
    ax.legend(fontsize=7)
    return fig
