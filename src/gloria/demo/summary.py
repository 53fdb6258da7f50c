"""The demo's headline table (also the one-screen terminal summary) from its ``results.json`` content."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

MODELS = ("pretrained", "random_init")


def _get(tree: Mapping[str, Any], *keys: str) -> Any:
    node: Any = tree
    for key in keys:
        if not isinstance(node, Mapping) or key not in node:
            return None
        node = node[key]
    return node


def _value(x: Any) -> float | None:
    if isinstance(x, Mapping) and "value" in x:
        x = x["value"]
    return float(x) if isinstance(x, int | float) and x is not None else None


def headline_rows(results: Mapping[str, Any]) -> list[dict[str, object]]:
    """Rows ``{metric, GLoRIA pretrained, random init, image-blind baseline}`` for the stages done so far."""
    rows: list[dict[str, object]] = []

    def add(metric: str, values: Mapping[str, float | None], baseline: float | None = None) -> None:
        if all(values.get(m) is None for m in MODELS) and baseline is None:
            return
        rows.append(
            {
                "metric": metric,
                "GLoRIA pretrained": values.get("pretrained"),
                "random init": values.get("random_init"),
                "image-blind baseline": baseline,
            }
        )

    zs = {m: _get(results, "zero_shot", m) for m in MODELS}
    add(
        "zero-shot accuracy",
        {m: _value(_get(zs[m] or {}, "accuracy")) for m in MODELS},
        _get(results, "zero_shot", "chance"),
    )
    add(
        "zero-shot accuracy, 95% interval",
        {m: _interval(_get(zs[m] or {}, "accuracy")) for m in MODELS},  # type: ignore[misc]
    )
    largest, uniform = (
        _value(_get(results, "zero_shot", "chance")),
        _value(_get(results, "zero_shot", "uniform_chance")),
    )
    add(
        "zero-shot macro F1",
        {m: _value(_get(zs[m] or {}, "macro_f1")) for m in MODELS},
        # always the largest class: F1 2L/(1+L) on that class, 0 on the others
        2 * largest / (1 + largest) * uniform if largest is not None and uniform is not None else None,
    )
    add(
        "zero-shot macro F1, 95% interval",
        {m: _interval(_get(zs[m] or {}, "macro_f1")) for m in MODELS},  # type: ignore[misc]
    )
    add("zero-shot mean AUROC", {m: _value(_get(zs[m] or {}, "mean_auroc")) for m in MODELS}, 0.5)
    ks = _get(results, "retrieval", "ks") or []
    for k in ks[:2]:
        add(
            f"retrieval image->text P@{k} (global+local)",
            {m: _retrieval(results, m, k) for m in MODELS},
            _get(results, "retrieval", "chance"),
        )
    for frac in _get(results, "probe", "fractions") or []:
        key = f"{frac:g}"
        add(
            f"linear probe mean AUROC, {100 * frac:g}% labels",
            {m: _value(_get(results, "probe", m, key, "mean_auroc")) for m in MODELS},
            0.5,
        )
    add(
        "segmentation Dice (test)",
        {m: _value(_get(results, "segmentation", m, "test_metrics", "test_dice")) for m in MODELS},
        _value(_get(results, "segmentation", "empty_prediction_dice")),
    )
    add(
        "segmentation Dice, test images with a mask",
        {m: _value(_get(results, "segmentation", m, "test_metrics", "test_dice_positive")) for m in MODELS},
        0.0 if _get(results, "segmentation", "empty_prediction_dice") is not None else None,
    )
    pointing = {m: _value(_get(results, "grounding", m, "two_stage", "pointing")) for m in MODELS}
    best_prior = [
        _value(_get(results, "grounding", "pretrained", b, "pointing"))
        for b in ("prior_class", "prior_class_side_level")
    ]
    known = [v for v in best_prior if v is not None]
    add("grounding pointing game (attention)", pointing, max(known) if known else None)
    add(
        "grounding pointing game (cosine readout)",
        {m: _value(_get(results, "grounding", m, "cosine", "pointing")) for m in MODELS},
    )
    add(
        "grounding pointing game, random map",
        {},
        _value(_get(results, "grounding", "pretrained", "random", "pointing")),
    )
    return rows


def _interval(ci: Any) -> str | None:
    """``low-high`` of a bootstrap ``{value, low, high}`` result."""
    if not isinstance(ci, Mapping) or _value(ci.get("low")) is None or _value(ci.get("high")) is None:
        return None
    return f"{float(ci['low']):.3f}-{float(ci['high']):.3f}"


def _retrieval(results: Mapping[str, Any], model: str, k: int) -> float | None:
    for row in _get(results, "retrieval", model) or []:
        if row.get("direction") == "image_to_text" and row.get("similarity") == "both":
            return _value(_get(row, "precision_at_k", str(k)))
    return None


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return "n/a" if math.isnan(value) else f"{value:.3f}"
    return str(value)


def terminal_summary(results: Mapping[str, Any], out_dir: str) -> str:
    """A one-screen text summary: the headline table, stage timings, failures and where the report is."""
    rows = headline_rows(results)
    width = max([len(str(r["metric"])) for r in rows] + [10])
    lines = [
        "",
        f"GLoRIA demo ({_get(results, 'settings', 'name')}, preset {_get(results, 'settings', 'preset')}, "
        f"seed {results.get('seed')})",
        f"{'metric':<{width}}  {'pretrained':>10}  {'random':>10}  {'baseline':>10}",
    ]
    for r in rows:
        cells = [_cell(r[c]) for c in ("GLoRIA pretrained", "random init", "image-blind baseline")]
        lines.append(f"{r['metric']!s:<{width}}  {cells[0]:>10}  {cells[1]:>10}  {cells[2]:>10}")
    timings = results.get("timings", {})
    if timings:
        lines.append(
            "stage seconds: "
            + ", ".join(f"{k} {v:.0f}" for k, v in timings.items())
            + f"; total {sum(timings.values()):.0f}"
        )
    for stage, error in (results.get("failed") or {}).items():
        lines.append(f"FAILED {stage}: {error}")
    lines.append(f"report: {out_dir}/report.md   results: {out_dir}/results.json")
    return "\n".join(lines) + "\n"
