"""SynthCXR picture: a grid of example images with their finding boxes and report impressions (PNG)."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from gloria.data.synth.case import Case, make_case
from gloria.data.synth.config import SynthConfig

KIND_COLOURS = {
    "cardiomegaly": "#ff7f0e",
    "effusion": "#1f77b4",
    "consolidation": "#d62728",
    "atelectasis": "#9467bd",
    "edema": "#17becf",
    "pneumothorax": "#2ca02c",
    "opacity": "#e377c2",
    "nodule": "#bcbd22",
    "device": "#7f7f7f",
}


def save_examples(cases: Sequence[Case], path: str | Path, columns: int = 4) -> Path:
    """Draw ``cases`` (images [H, W], boxes coloured by kind, wrapped impression) into a PNG at ``path``."""
    if not cases:
        raise ValueError("save_examples: no cases to draw")
    rows = (len(cases) + columns - 1) // columns
    fig = Figure(figsize=(3.4 * columns, 4.6 * rows), dpi=110)
    FigureCanvasAgg(fig)
    for k, case in enumerate(cases):
        ax = fig.add_subplot(rows, columns, k + 1)
        ax.imshow(case.image, cmap="gray", vmin=0, vmax=255)
        boxes = [f.box for f in case.findings]
        names = [f.kind for f in case.findings]
        spots = label_spots(boxes, names, width=case.image.shape[-1])
        for (x, y, w, h), name, (tx, ty) in zip(boxes, names, spots):
            colour = KIND_COLOURS.get(name, "yellow")
            ax.add_patch(Rectangle((x - 0.5, y - 0.5), w, h, fill=False, edgecolor=colour, linewidth=1.2))
            ax.text(tx, ty, name, color=colour, fontsize=6, va="bottom")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"#{case.index}  CTR {case.ctr:.2f}", fontsize=8)
        impression = " ".join(case.report.impression.split())
        ax.set_xlabel(textwrap.fill(impression, 48), fontsize=6.5, loc="left")
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    return out


def label_spots(
    boxes: Sequence[tuple[int, int, int, int]], names: Sequence[str], width: int
) -> list[tuple[float, float]]:
    """Where each box's name goes (its baseline's left end, in image pixels): just above the box, or,
    where that would overlap a name already placed, just below it, else stacked higher until free.

    Text size is estimated from the image ``width`` at the figure's font size (6 pt on a ~3.2 in panel).
    """
    char_w, line_h = 0.016 * width, 0.034 * width
    placed: list[tuple[float, float, float]] = []  # x0, x1, baseline y

    def free(x0: float, x1: float, y: float) -> bool:
        return all(x1 <= a or x0 >= b or abs(y - c) >= line_h for a, b, c in placed)

    spots = []
    for (x, y, _w, h), name in zip(boxes, names):
        x0, x1 = float(x), x + char_w * len(name)
        candidates = [y - 2.0, y + h + line_h + 1.0] + [y - 2.0 - line_h * k for k in range(1, 8)]
        ty = next((c for c in candidates if free(x0, x1, c)), candidates[0])
        placed.append((x0, x1, ty))
        spots.append((float(x), ty))
    return spots


def pick_examples(seed: int, cfg: SynthConfig, count: int = 8, pool: int = 200) -> list[Case]:
    """``count`` cases of the set (from its first ``pool``) that together show every finding kind:
    one normal image first, then greedily the case adding the most kinds not yet shown."""
    cases = [make_case(seed, i, cfg) for i in range(pool)]
    chosen = [c for c in cases if not c.findings][:1]
    shown: set[str] = set()
    while len(chosen) < min(count, len(cases)):
        rest = [c for c in cases if c not in chosen]
        best = max(rest, key=lambda c: (len({f.kind for f in c.findings} - shown), -c.index))
        chosen.append(best)
        shown |= {f.kind for f in best.findings}
    return sorted(chosen, key=lambda c: c.index)
