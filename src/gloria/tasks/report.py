"""Evaluation reports: results as JSON plus a short Markdown page with PNG plots beside it.

``Report`` collects sections (text, tables, figures); ``add_zero_shot`` / ``add_retrieval`` /
``add_grounding`` lay out the standard results of each task (the demo reuses them).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from numpy.typing import ArrayLike

from gloria.tasks import metrics as M
from gloria.viz import plots


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return "n/a" if math.isnan(value) else f"{value:.3f}"
    if isinstance(value, Mapping) and {"value", "low", "high"} <= set(value):
        return f"{_fmt(value['value'])} [{_fmt(value['low'])}, {_fmt(value['high'])}]"
    return str(value)


def markdown_table(rows: Sequence[Mapping[str, object]]) -> list[str]:
    """Rows of equal keys -> Markdown table lines (floats with 3 decimals, intervals as ``v [lo, hi]``)."""
    if not rows:
        return []
    keys = list(rows[0])
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(_fmt(r.get(k, "")) for k in keys) + " |" for r in rows]
    return lines


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None  # JSON has no NaN
    return obj


@dataclass
class Report:
    """A results folder: ``results.json``, ``report.md`` and ``figures/*.png``."""

    title: str
    out_dir: Path
    results: dict[str, Any] = field(default_factory=dict)
    lines: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.out_dir = Path(self.out_dir)

    def heading(self, text: str, level: int = 2) -> None:
        self.lines += ["", f"{'#' * level} {text}", ""]

    def text(self, text: str) -> None:
        self.lines += [text, ""]

    def table(self, rows: Sequence[Mapping[str, object]]) -> None:
        self.lines += [*markdown_table(rows), ""]

    def figure(self, fig: Figure, name: str, caption: str) -> Path:
        """Save ``fig`` as ``figures/<name>.png`` and link it."""
        path = plots.save(fig, self.out_dir / "figures" / f"{name}.png")
        self.lines += [f"![{caption}](figures/{path.name})", ""]
        return path

    def write(self) -> tuple[Path, Path]:
        """Write ``results.json`` and ``report.md``; returns their paths."""
        self.out_dir.mkdir(parents=True, exist_ok=True)
        json_path = self.out_dir / "results.json"
        json_path.write_text(json.dumps(_jsonable(self.results), indent=2) + "\n")
        md_path = self.out_dir / "report.md"
        md_path.write_text(f"# {self.title}\n" + "\n".join(self.lines).rstrip() + "\n")
        return json_path, md_path


def add_zero_shot(
    report: Report,
    evaluation: Mapping[str, Any],
    scores: ArrayLike,
    labels: ArrayLike,
    *,
    name: str = "zero_shot",
    heading: str | None = None,
    level: int = 2,
    title: str | None = None,
) -> None:
    """Summary table, per-class AUROC, ROC curves and confusion matrix of ``zero_shot.evaluate_scores``
    under ``heading`` (default: "Zero-shot classification (NAME)") at markdown ``level``; ``title`` (the
    model's name) heads each figure."""
    s, y = np.asarray(scores, dtype=np.float64), np.asarray(labels, dtype=np.int64)
    classes = list(evaluation["classes"])
    report.results[name] = dict(evaluation)
    report.heading(heading or f"Zero-shot classification ({name})", level)
    report.table(
        [
            {
                "images": evaluation["n"],
                "accuracy": evaluation["accuracy"],
                "macro F1": evaluation["macro_f1"],
                "mean AUROC": evaluation["mean_auroc"],
            }
        ]
    )
    report.text("Intervals: percentile bootstrap, 95%.")
    report.table([{"class": c, "AUROC": evaluation["auroc"][c]} for c in classes])
    curves = {}
    for i, c in enumerate(classes):
        if 0 < int((y == i).sum()) < len(y):
            fpr, tpr = M.roc_curve(y == i, s[:, i])
            curves[c] = (fpr, tpr, M.auroc(y == i, s[:, i]))
    if curves:
        report.figure(_titled(plots.roc_curves(curves), title), f"{name}_roc", "ROC curves")
    cm = np.asarray(evaluation["confusion_matrix"])
    fig = _titled(plots.confusion_matrix(cm, classes), title)
    report.figure(fig, f"{name}_confusion", "Confusion matrix")


def _titled(fig: Figure, title: str | None) -> Figure:
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def add_retrieval(
    report: Report,
    results: Sequence[Mapping[str, Any]],
    *,
    chance: float | None = None,
    name: str = "retrieval",
    heading: str | None = None,
    level: int = 2,
    title: str | None = None,
) -> None:
    """Table and P@K bars of ``RetrievalResult.as_dict()`` rows, under ``heading`` at ``level``; ``title``
    (the model) heads the figure."""
    report.results[name] = list(results)
    report.heading(heading or "Retrieval (hit = same class)", level)
    rows = []
    series: dict[str, dict[int, float]] = {}
    for r in results:
        pk = {int(k): float(v) for k, v in r["precision_at_k"].items()}
        rows.append(
            {
                "direction": r["direction"],
                "similarity": r["similarity"],
                **{f"P@{k}": v for k, v in pk.items()},
            }
        )
        series[f"{r['direction']} / {r['similarity']}"] = pk
    report.table(rows)
    if chance is not None:
        report.text(f"Chance (class share): {chance:.3f}.")
    fig = _titled(plots.precision_at_k(series, chance=chance), title)
    report.figure(fig, f"{name}_precision_at_k", "Precision@K")


def add_grounding(
    report: Report,
    summary: Mapping[str, Mapping[str, float]],
    *,
    name: str = "grounding",
    heading: str | None = None,
    level: int = 2,
) -> None:
    """One row per readout or baseline: ``{method: {metric: value}}``, under ``heading`` at ``level``."""
    report.results[name] = dict(summary)
    report.heading(heading or "Grounding (maps in original pixels vs ground truth)", level)
    report.table([{"method": m, **vals} for m, vals in summary.items()])
