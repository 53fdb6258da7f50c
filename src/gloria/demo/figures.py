"""Demo pictures: training loss, attention maps of example findings (pretrained vs random init vs the
best image-blind prior), linear-probe AUROC against the label fraction, predicted segmentation masks.
Matplotlib objects, no pyplot.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure
from numpy.typing import NDArray

from gloria.data.images import read_image
from gloria.tasks.grounding import GroundingCase
from gloria.viz import plots

# which maps of an example are drawn, and their panel titles
ATTENTION_PANELS: tuple[tuple[str, str, str], ...] = (
    ("pretrained", "two_stage", "pretrained: attention"),
    ("pretrained", "cosine", "pretrained: word-region cosine"),
    ("random_init", "two_stage", "random init: attention"),
    ("pretrained", "prior_class_side_level", "prior: class + side/level words"),
)


def mask_box(mask: NDArray[np.bool_]) -> tuple[float, float, float, float]:
    """Bounding box (x, y, w, h) of a non-empty mask, in pixel-edge coordinates."""
    rows, cols = np.nonzero(mask)
    if rows.size == 0:
        raise ValueError("mask_box: empty mask")
    return (
        cols.min() - 0.5,
        rows.min() - 0.5,
        float(cols.max() - cols.min() + 1),
        float(rows.max() - rows.min() + 1),
    )


def loss_curve(
    curves: Mapping[str, Sequence[float]],
    *,
    chance: float | None = None,
    validation: Sequence[Sequence[float]] = (),
    model: str = "GLoRIA pretrained",
) -> Figure:
    """Training loss per step, one line per named curve; ``validation``: ``[step, loss]`` points of the
    validation loss; ``chance``: the loss of uninformative scores."""
    fig = plots.new_figure(5.0, 3.2)
    ax = fig.add_subplot()
    for name, values in curves.items():
        ax.plot(np.arange(1, len(values) + 1), values, label=name, linewidth=1.2)
    if len(validation):
        steps, losses = zip(*((float(p[0]), float(p[1])) for p in validation), strict=True)
        ax.plot(steps, losses, marker="o", color="tab:red", linewidth=1.2, label="validation loss")
    if chance is not None:
        ax.axhline(chance, color="gray", linestyle="--", linewidth=1, label="chance level")
    ax.set_xlabel("optimiser step")
    ax.set_ylabel("loss")
    ax.set_title(f"{model}: pretraining loss (global + local contrastive)", fontsize=9)
    ax.legend(fontsize=8)
    return fig


def attention_example(case: GroundingCase, maps: Mapping[str, Mapping[str, NDArray[np.float32]]]) -> Figure:
    """The image, the finding's box (green) and one panel per entry of ``ATTENTION_PANELS``; the phrase
    that named the finding above. ``maps`` is ``{model: {method: map [H, W]}}`` in original pixels."""
    image = read_image(case.image_path)
    panels = [(maps[model][method], title) for model, method, title in ATTENTION_PANELS if model in maps]
    fig = plots.attention_overlays(
        image,
        [m for m, _ in panels],
        [t for _, t in panels],
        boxes=[mask_box(case.mask)],
        columns=len(panels) + 1,
    )
    words = ", ".join(case.finding_words)
    fig.suptitle(textwrap.fill(f'{case.label}: "{case.text}"  (phrase words: {words})', 110), fontsize=9)
    return fig


def probe_curves(
    results: Mapping[str, Mapping[str, Mapping[str, object]]],
    spread: Mapping[str, Mapping[str, Mapping[str, object]]] | None = None,
) -> Figure:
    """Mean test AUROC against the share of training labels: ``{model: {fraction: {mean_auroc, ...}}}``;
    with ``spread`` (``{model: {fraction: {mean, std, values}}}`` over seeds) the mean over seeds with
    one-standard-deviation error bars."""
    fig = plots.new_figure(4.6, 3.4)
    ax = fig.add_subplot()
    for name, by_fraction in results.items():
        rows = sorted(by_fraction.items(), key=lambda kv: float(kv[1]["fraction"]))  # type: ignore[arg-type]
        x = [100 * float(r["fraction"]) for _, r in rows]  # type: ignore[arg-type]
        seeds = (spread or {}).get(name)
        if seeds:
            y = [float(seeds[k]["mean"]) for k, _ in rows]  # type: ignore[arg-type]
            err = [float(seeds[k]["std"]) for k, _ in rows]  # type: ignore[arg-type]
            n = len(seeds[rows[0][0]]["values"])  # type: ignore[arg-type]
            ax.errorbar(x, y, yerr=err, marker="o", capsize=3, label=f"{name} (mean +- sd, {n} seeds)")
        else:
            ax.plot(x, [float(r["mean_auroc"]) for _, r in rows], marker="o", label=name)  # type: ignore[arg-type]
    ax.set_xscale("log")
    ticks = sorted({100 * float(r["fraction"]) for by in results.values() for r in by.values()})  # type: ignore[arg-type]
    ax.set_xticks(ticks, labels=[f"{t:g}" for t in ticks])
    ax.minorticks_off()
    ax.set_xlabel("training labels used (%)")
    ax.set_ylabel("mean AUROC (5 classes)")
    ax.axhline(0.5, color="gray", linestyle="--", linewidth=1)
    ax.set_ylim(0.3, 1.0)
    ax.set_title(f"Linear probe on frozen features\n{' vs '.join(results)}", fontsize=9)
    ax.legend(fontsize=8)
    return fig


def dice(pred: NDArray[np.bool_], truth: NDArray[np.bool_]) -> float:
    """Dice of two boolean masks (1 when both are empty), the per-image rule of the segmentation metric."""
    total = int(pred.sum()) + int(truth.sum())
    return 1.0 if total == 0 else 2.0 * int((pred & truth).sum()) / total


def segmentation_examples(
    images: Sequence[NDArray[np.floating]],
    truths: Sequence[NDArray[np.bool_]],
    predictions: Mapping[str, Sequence[NDArray[np.bool_]]],
) -> Figure:
    """One row per image: the image with its true mask's outline (green), then each model's predicted mask
    (red fill, same outline) with its Dice. ``predictions`` is ``{panel title: [mask per image]}``."""
    rows, cols = len(images), 1 + len(predictions)
    if rows == 0:
        raise ValueError("segmentation_examples: no images")
    fig = plots.new_figure(2.6 * cols, 2.6 * rows + 0.2)
    axes = fig.subplots(rows, cols, squeeze=False)
    red = np.zeros((*truths[0].shape, 4), dtype=np.float32)
    for r, (image, truth) in enumerate(zip(images, truths, strict=True)):
        panels: list[tuple[str, NDArray[np.bool_] | None]] = [("image, true mask", None)]
        panels += [(title, masks[r]) for title, masks in predictions.items()]
        for c, (title, pred) in enumerate(panels):
            ax = axes[r, c]
            ax.set_axis_off()
            ax.imshow(image, cmap="gray")
            if pred is not None:
                fill = red.copy()
                fill[pred] = (1.0, 0.1, 0.1, 0.55)
                ax.imshow(fill)
                title = f"{title}: Dice {dice(pred, truth):.2f}"
            ax.contour(truth.astype(np.float32), levels=[0.5], colors="lime", linewidths=1.0)
            ax.set_title(title, fontsize=8)
    return fig
