"""Plain-language readings of the demo's tables, computed from the numbers in ``results.json``.

Each reading says what a table means for a newcomer: whether a model beats the levels it must beat (chance,
always answering the largest class, the image-blind priors), whether the pretrained encoder beats its own
random initialisation, and the failure shapes that a single accuracy hides (one class taking most
predictions; one class's texts topping most retrieval queries).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

MODELS = ("pretrained", "random_init")
TITLES = {"pretrained": "GLoRIA pretrained", "random_init": "random init"}
COLLAPSE_SHARE = 0.5  # one predicted class above this share of the images: the classifier collapsed
HUB_SHARE = 0.5  # one class's candidates topping more than this share of the queries: a hub


def _num(x: Any) -> float | None:
    if isinstance(x, Mapping):
        x = x.get("value")
    if isinstance(x, bool) or not isinstance(x, int | float):
        return None
    return None if math.isnan(float(x)) else float(x)


def _interval(ci: Any) -> str:
    """``0.356 (95% interval 0.296-0.416)`` of a ``{value, low, high}`` mapping, or the bare value."""
    value = _num(ci)
    if value is None:
        return "n/a"
    if isinstance(ci, Mapping) and _num(ci.get("low")) is not None and _num(ci.get("high")) is not None:
        return f"{value:.3f} (95% interval {float(ci['low']):.3f}-{float(ci['high']):.3f})"
    return f"{value:.3f}"


def compare(a: Any, b: Any) -> str:
    """``above`` / ``below`` / ``level with`` for two ``{value, low, high}`` results: a difference counts
    only when the intervals do not overlap (bare values: any difference counts)."""
    va, vb = _num(a), _num(b)
    if va is None or vb is None:
        return "not comparable with"
    if all(isinstance(x, Mapping) and "low" in x and "high" in x for x in (a, b)):
        if float(a["low"]) > float(b["high"]):
            return "above"
        if float(a["high"]) < float(b["low"]):
            return "below"
        return "level with (the intervals overlap)"
    return "above" if va > vb else ("below" if va < vb else "level with")


# ------------------------------------------------------------------------------------------- zero-shot


def predicted_counts(evaluation: Mapping[str, Any]) -> list[int]:
    """Images predicted as each class: the columns of the confusion matrix (row = true class)."""
    matrix = evaluation.get("confusion_matrix") or []
    return [int(sum(row[c] for row in matrix)) for c in range(len(matrix))]


def collapse(evaluation: Mapping[str, Any]) -> dict[str, Any]:
    """The most predicted class, its count and share of the images, and the classes never right."""
    classes = list(evaluation.get("classes") or [])
    counts = predicted_counts(evaluation)
    matrix = evaluation.get("confusion_matrix") or []
    if not counts or sum(counts) == 0:
        return {}
    top = max(range(len(counts)), key=lambda c: counts[c])
    never = [classes[c] for c in range(len(classes)) if sum(matrix[c]) > 0 and matrix[c][c] == 0]
    share = counts[top] / sum(counts)
    return {"class": classes[top], "count": counts[top], "n": sum(counts), "share": share,
            "collapsed": share > COLLAPSE_SHARE, "never_right": never}  # fmt: skip


def zero_shot_reading(zs: Mapping[str, Any]) -> list[str]:
    """Per model: accuracy and macro F1 with intervals against chance and the largest-class level, the
    collapse when one class takes most predictions; then pretrained against random init."""
    largest, uniform = _num(zs.get("chance")), _num(zs.get("uniform_chance"))
    out = []
    for m in MODELS:
        ev = zs.get(m)
        if not isinstance(ev, Mapping):
            continue
        acc = _num(ev.get("accuracy"))
        line = f"**{TITLES[m]}**: accuracy {_interval(ev.get('accuracy'))}, "
        line += f"macro F1 {_interval(ev.get('macro_f1'))}"
        if acc is not None and largest is not None:
            levels = f"always answering the largest class scores {largest:.3f}"
            if uniform is not None:
                levels = f"a uniform guess scores {uniform:.3f} and " + levels
            line += f"; {levels}, so the accuracy is {compare(ev.get('accuracy'), largest)} that level"
        c = collapse(ev)
        if c.get("collapsed"):
            line += (
                f". It has collapsed: it predicts {c['class']} for {c['count']} of {c['n']} images "
                f"({100 * c['share']:.0f}%), so its accuracy mostly counts that class's images"
            )
        if c.get("never_right"):
            line += f"; never right on {', '.join(c['never_right'])}"
        out.append(line + ".")
    if all(isinstance(zs.get(m), Mapping) for m in MODELS):
        how = compare(zs["pretrained"].get("macro_f1"), zs["random_init"].get("macro_f1"))
        out.append(f"Macro F1 (every class counts equally): pretrained is {how} random init.")
    return out


# ------------------------------------------------------------------------------------------- retrieval


def hub(row: Mapping[str, Any], classes: Sequence[str]) -> dict[str, Any]:
    """The class whose candidates are the top hit of most queries: its count, share, and its share of the
    candidates (``top1_class_counts`` of a retrieval row, indexed like ``classes``)."""
    counts = [int(x) for x in row.get("top1_class_counts") or []]
    if not counts or sum(counts) == 0:
        return {}
    top = max(range(len(counts)), key=lambda c: counts[c])
    shares = row.get("candidate_class_counts") or []
    candidate_share = shares[top] / sum(shares) if shares and sum(shares) else None
    name = classes[top] if top < len(classes) else str(top)
    share = counts[top] / sum(counts)
    return {"class": name, "count": counts[top], "n": sum(counts), "share": share,
            "candidate_share": candidate_share, "is_hub": share > HUB_SHARE}  # fmt: skip


def _row(rows: Any, direction: str, similarity: str) -> Mapping[str, Any] | None:
    for r in rows or []:
        if r.get("direction") == direction and r.get("similarity") == similarity:
            return dict(r)
    return None


def retrieval_reading(rt: Mapping[str, Any]) -> list[str]:
    """Image->text P@1 (global + local) against chance, and the hub: the share of image queries whose top
    text comes from the most retrieved class."""
    chance, classes = _num(rt.get("chance")), list(rt.get("classes") or [])
    out = []
    for m in MODELS:
        row = _row(rt.get(m), "image_to_text", "both")
        if row is None:
            continue
        pk = {int(k): float(v) for k, v in (row.get("precision_at_k") or {}).items()}
        line = f"**{TITLES[m]}**, image->text (global + local): " + ", ".join(
            f"P@{k} {v:.3f}" for k, v in sorted(pk.items())
        )
        if chance is not None and pk:
            p1 = pk[min(pk)]
            line += f"; a same-class candidate drawn at random is {chance:.3f}, P@{min(pk)} is " + (
                "above" if p1 > chance else "not above"
            ) + " it"  # fmt: skip
        h = hub(row, classes)
        if h:
            line += (
                f". For {h['count']} of {h['n']} image queries ({100 * h['share']:.0f}%) the top text is a "
                f"{h['class']} report"
            )
            if h["candidate_share"] is not None:
                line += f" ({100 * h['candidate_share']:.0f}% of the texts)"
            if h["is_hub"]:
                line += (
                    ": a hub. Its texts top most queries whatever the image shows, so P@K mostly counts "
                    f"the {h['class']} queries"
                )
        out.append(line + ".")
    return out


# ----------------------------------------------------------------------------------- probe, seg, grounding


def probe_reading(pr: Mapping[str, Any]) -> list[str]:
    """Per label fraction: pretrained against random init, with the spread over seeds when there is one."""
    seeds = pr.get("over_seeds") or {}
    out = []
    for frac in pr.get("fractions") or []:
        key = f"{float(frac):g}"
        vals = {m: _num((pr.get(m) or {}).get(key, {}).get("mean_auroc")) for m in MODELS}
        spread = {m: (seeds.get(m) or {}).get(key) for m in MODELS}
        if any(v is None for v in vals.values()):
            continue
        a, b = spread["pretrained"], spread["random_init"]
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            gap = float(a["mean"]) - float(b["mean"])
            wide = max(float(a["std"]), float(b["std"]))
            verdict = "ahead of" if gap > wide else ("behind" if gap < -wide else "within the spread of")
            text = (f"{100 * float(frac):g}% labels: pretrained {float(a['mean']):.3f} +- "
                    f"{float(a['std']):.3f}, random init {float(b['mean']):.3f} +- {float(b['std']):.3f} "
                    f"over {len(a['values'])} seeds: pretrained is {verdict} random init")  # fmt: skip
        else:
            p, r = vals["pretrained"], vals["random_init"]
            assert p is not None and r is not None
            verdict = "ahead of" if p > r else ("behind" if p < r else "level with")
            text = f"{100 * float(frac):g}% labels: pretrained {p:.3f}, random init {r:.3f} (one seed): "
            text += f"pretrained is {verdict} random init"
        out.append(text + ".")
    return out


def segmentation_reading(seg: Mapping[str, Any]) -> list[str]:
    """Test Dice of each encoder against predicting nothing, and which encoder wins."""
    dice = {m: _num(((seg.get(m) or {}).get("test_metrics") or {}).get("test_dice")) for m in MODELS}
    empty = _num(seg.get("empty_prediction_dice"))
    p, r = dice["pretrained"], dice["random_init"]
    if p is None or r is None:
        return []
    out = []
    if r > p:
        out.append(f"Random init beats the pretrained encoder: test Dice {r:.3f} against {p:.3f}.")
    else:
        out.append(f"The pretrained encoder's test Dice {p:.3f} is {'above' if p > r else 'level with'} "
                   f"random init's {r:.3f}.")  # fmt: skip
    if empty is not None:
        below = [TITLES[m] for m in MODELS if (dice[m] or 0.0) <= empty]
        out.append(
            f"Predicting no mask anywhere scores {empty:.3f}"
            + (f"; {' and '.join(below)} do not beat that." if below else "; both encoders beat that.")
        )
    return out


def better_prior(methods: Mapping[str, Any], metric: str) -> float | None:
    """The better of the two image-blind location priors (class; class + side/level words) on ``metric``
    of a ``{method: {metric: value}}`` grounding summary; None when neither has it."""
    known = [_num((methods.get(b) or {}).get(metric)) for b in ("prior_class", "prior_class_side_level")]
    values = [v for v in known if v is not None]
    return max(values) if values else None


def grounding_reading(gr: Mapping[str, Any]) -> list[str]:
    """Attention's pointing game against the better image-blind prior and a random map."""
    out = []
    for m in MODELS:
        summary = gr.get(m) or {}
        att = _num((summary.get("two_stage") or {}).get("pointing"))
        best = better_prior(summary, "pointing")
        rand = _num((summary.get("random") or {}).get("pointing"))
        if att is None:
            continue
        line = f"**{TITLES[m]}**: attention points inside the finding for {att:.3f} of the findings"
        if best is not None:
            verdict = "below" if att < best else ("level with" if att == best else "above")
            line += f"; the better image-blind prior does {best:.3f}, so attention is {verdict} it"
        if rand is not None:
            line += f"; a random map {rand:.3f}"
        out.append(line + ".")
    return out


# --------------------------------------------------------------------------------------------- benchmark

BASELINE_METHODS = ("random", "prior_class", "prior_class_side_level")  # image-blind grounding levels


def benchmark_reading(bench: Mapping[str, Any]) -> list[str]:
    """The SynthCXR suite (``{model: run_suite result}``): the pretrained model against its random init on
    every number of the models themselves, zero-shot AUROC against 0.5, attention's CNR against the better
    image-blind prior."""
    out = []
    rows = {
        m: {(r["benchmark"], r["method"], r["metric"]): r["ours"] for r in bench[m].get("rows") or []}
        for m in MODELS
        if isinstance(bench.get(m), Mapping)
    }
    if len(rows) == 2:
        verdicts = [
            compare(ours, rows["random_init"][k]).split(" (")[0]
            for k, ours in rows["pretrained"].items()
            if k[1] not in BASELINE_METHODS and k in rows["random_init"]
        ]
        out.append(
            f"Of {len(verdicts)} numbers of the models themselves, the pretrained model is above its random "
            f"init on {verdicts.count('above')}, below on {verdicts.count('below')} and level with it on "
            f"{verdicts.count('level with')} (a difference counts when the 95% intervals do not overlap)."
        )
    for m in MODELS:
        evaluations = {  # the scored ones (an unscorable set is recorded with "skipped" instead)
            name: e for name, e in ((bench.get(m) or {}).get("evaluations") or {}).items() if "result" in e
        }
        aurocs = [
            (e["result"].get("macro") or {}).get("auroc") or {}
            for e in evaluations.values()
            if e.get("kind") == "zero_shot_labels"
        ]
        above = [a for a in aurocs if (low := _num(a.get("low"))) is not None and low > 0.5]
        grounding = [e["result"]["methods"] for e in evaluations.values() if e.get("kind") == "grounding"]
        below_prior = 0
        for methods in grounding:
            att, best = _num((methods.get("two_stage") or {}).get("cnr")), better_prior(methods, "cnr")
            if att is not None and best is not None and att < best:
                below_prior += 1
        if not aurocs and not grounding:
            continue
        line = f"**{TITLES[m]}**:"
        if aurocs:
            line += (
                f" binary / multi-label zero-shot macro AUROC above 0.5 (interval excluding it) on "
                f"{len(above)} of {len(aurocs)} sets"
            )
        if grounding:
            line += (
                f"{';' if aurocs else ''} attention's CNR below the better image-blind prior on "
                f"{below_prior} of {len(grounding)} grounding sets"
            )
        out.append(line + ".")
    return out


# ---------------------------------------------------------------------------------------------- headline


def headline_reading(results: Mapping[str, Any]) -> list[str]:
    """The few sentences under the headline table: collapses, hubs, and where random init wins."""
    out = []
    zs = results.get("zero_shot") or {}
    for m in MODELS:
        c = collapse(zs.get(m) or {})
        if c.get("collapsed"):
            out.append(f"Zero-shot ({TITLES[m]}) has collapsed onto {c['class']}: {c['count']} of {c['n']} "
                       f"images get it; read its macro F1 {_interval(zs[m].get('macro_f1'))}, not its "
                       "accuracy.")  # fmt: skip
    rt = results.get("retrieval") or {}
    for m in MODELS:
        row = _row(rt.get(m), "image_to_text", "both")
        h = hub(row, list(rt.get("classes") or [])) if row else {}
        if h.get("is_hub"):
            out.append(f"Retrieval ({TITLES[m]}) is driven by a {h['class']} hub: its texts are the top hit "
                       f"for {h['count']} of {h['n']} images.")  # fmt: skip
    wins = []
    both = isinstance(zs.get("pretrained"), Mapping) and isinstance(zs.get("random_init"), Mapping)
    if both and compare(zs["random_init"].get("macro_f1"), zs["pretrained"].get("macro_f1")) == "above":
        wins.append("zero-shot macro F1")
    seg = results.get("segmentation") or {}
    dice = {m: _num(((seg.get(m) or {}).get("test_metrics") or {}).get("test_dice")) for m in MODELS}
    if (
        dice["pretrained"] is not None
        and dice["random_init"] is not None
        and dice["random_init"] > dice["pretrained"]
    ):
        wins.append(f"segmentation Dice ({dice['random_init']:.3f} vs {dice['pretrained']:.3f})")
    pr = results.get("probe") or {}
    for line in probe_reading(pr):
        if line.endswith("behind random init."):
            wins.append("linear probe at " + line.split(":")[0])
    if wins:
        out.append("Random init beats the pretrained encoder on " + "; ".join(wins) + ".")
    return out


def reuse_commands(out_dir: str, model_dir: str, preset: str, image: str | None = None) -> list[str]:
    """Shell commands that reuse the demo's trained model (a converted directory) on the demo's data."""
    data = f"{out_dir}/synthcxr"
    eval_csv = f"{data}/CheXpert-v1.0/chexpert_5x200.csv"
    image = image or f"{data}/CheXpert-v1.0/train/patient00001/study1/view1_frontal.jpg"
    return [
        f"gloria zero-shot --model {model_dir} --data {eval_csv} --image-root {data} "
        f"--out {out_dir}/reuse/zero_shot",
        f"gloria retrieve --model {model_dir} --data {eval_csv} --image-root {data} "
        f"--out {out_dir}/reuse/retrieval",
        f'gloria attend {image} --text "small left pleural effusion" --model {model_dir} '
        f"--out {out_dir}/reuse/attention.png",
        f"gloria train -c configs/synth_classification.yaml --train --test data.root={data}/CheXpert-v1.0 "
        f"model.preset={preset} model.checkpoint={model_dir} out_dir={out_dir}/reuse/runs",
        f"python -c \"import gloria; m = gloria.load_gloria('{model_dir}'); print(m.config.image.backbone)\"",
    ]
