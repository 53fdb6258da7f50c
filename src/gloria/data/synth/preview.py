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
        for finding in case.findings:
            x, y, w, h = finding.box
            colour = KIND_COLOURS.get(finding.kind, "yellow")
            ax.add_patch(Rectangle((x - 0.5, y - 0.5), w, h, fill=False, edgecolor=colour, linewidth=1.2))
            ax.text(x, y - 2, finding.kind, color=colour, fontsize=6, va="bottom")
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
