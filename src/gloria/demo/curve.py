"""The reference learning curve and where a demo run's budget sits on it.

``scripts/learning_curve.py`` runs the demo's default recipe on past its budget and scores saved weights at
log-spaced steps; its record ships with the package (``gloria/assets/learning_curve.json``, commit, torch
version, threads and load average inside). Here: reading that record (:func:`reading`), drawing it
(:func:`figure`, with a run's own point marked), and the demo's stage that places the run on it
(:func:`stage_learning_curve`) -- when the run's recipe and data size are the curve's.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Mapping
from importlib import resources
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from gloria.demo.run import DemoRun
    from gloria.demo.settings import DemoSettings

log = logging.getLogger(__name__)

ASSET = "learning_curve.json"  # in gloria/assets/
READOUTS = ("two_stage", "two_stage_no_cls", "first_stage", "cosine")
PRIORS = ("prior_class", "prior_class_side_level", "random")
ZERO_SHOT_GOAL = 0.55  # issue 17: zero-shot accuracy (5-way) at the demo's budget
# the settings that make two runs the same curve: data size, recipe and evaluation (not the device)
SAME_RUN = ("n_images", "image_size", "preset", "pretrain_batch_size", "pretrain_lr", "pretrain_text_lr",
            "full_report", "local_feature_scale", "probe_fractions", "n_boot", "n_prompts")  # fmt: skip


def reference_curve() -> dict[str, Any] | None:
    """The packaged record of ``scripts/learning_curve.py``, or None when the package has none."""
    path = resources.files("gloria") / "assets" / ASSET
    if not path.is_file():
        return None
    record: dict[str, Any] = json.loads(path.read_text())
    return record


def different_settings(record: Mapping[str, Any], settings: DemoSettings) -> list[str]:
    """The ``SAME_RUN`` keys whose values differ between the curve's settings and ``settings``."""
    now = json.loads(json.dumps(settings.to_dict()))  # tuples as JSON holds them (lists)
    return [k for k in SAME_RUN if record.get("settings", {}).get(k) != now[k]]


def _points(record: Mapping[str, Any]) -> dict[int, dict[str, Any]]:
    return {int(k): v for k, v in record["checkpoints"].items()}


def _accuracy(point: Mapping[str, Any]) -> float:
    return float(point["zero_shot"]["accuracy"]["value"])


def best_readout(pointing: Mapping[str, Any]) -> tuple[str, float]:
    """The readout with the highest pointing game of one evaluation's ``{readout: {"pointing": ..}}``."""
    name = max(READOUTS, key=lambda k: float(pointing[k]["pointing"]))
    return name, float(pointing[name]["pointing"])


def _prior(point: Mapping[str, Any]) -> float:
    return float(point["pointing"]["prior_class_side_level"]["pointing"])


def reading(record: Mapping[str, Any]) -> list[str]:
    """Plain statements computed from the curve (nothing written by hand)."""
    points = _points(record)
    steps = sorted(points)
    if not steps:
        return []
    budget, chance = record["demo_budget"], record["chance"]

    def acc(s: int) -> float:
        return _accuracy(points[s])

    def best(s: int) -> tuple[str, float]:
        return best_readout(points[s]["pointing"])

    last, target = steps[-1], record.get("target_steps", steps[-1])
    stopped = f" of the {target} asked for (the run was stopped there)" if last < target else ""
    out = [f"Measured at {len(steps)} checkpoints up to step {last}{stopped}; one seed ({record['seed']})."]
    if budget in points:
        name, value = best(budget)
        iv = points[budget]["zero_shot"]["accuracy"]
        out.append(
            f"At the demo's budget ({budget} steps): zero-shot {acc(budget):.3f} [{iv['low']:.3f}, "
            f"{iv['high']:.3f}] (largest-class share {chance['zero_shot']:.3f}), image-to-text P@5 "
            f"{points[budget]['p5']['global']:.3f} (chance {chance['retrieval']:.3f}), best pointing "
            f"`{name}` {value:.3f} against the class + words prior {_prior(points[budget]):.3f}, 1% probe "
            f"{points[budget]['probe']['0.01']['mean']:.3f}."
        )
    top = max(steps, key=acc)
    reached = [s for s in steps if acc(s) >= ZERO_SHOT_GOAL]
    if reached:
        out.append(f"Zero-shot reaches {ZERO_SHOT_GOAL} first at step {reached[0]} ({acc(reached[0]):.3f}).")
    else:
        out.append(
            f"Zero-shot stays below {ZERO_SHOT_GOAL} up to step {last}: best {acc(top):.3f} at step {top}"
            + (f", {acc(last):.3f} at the last step" if top != last else "")
            + "."
        )
    later = [s for s in steps if s >= max(budget, 1)]
    if len(later) >= 2:
        a, b = later[-2], later[-1]
        slope = (acc(b) - acc(a)) / (math.log10(b) - math.log10(a))
        out.append(f"Zero-shot slope over the last decade of steps ({a} to {b}): {slope:+.3f} per tenfold.")
    above = [s for s in steps if best(s)[1] > _prior(points[s])]
    if above:
        name, value = best(above[0])
        out.append(f"A readout's pointing first passes the class + words prior at step {above[0]} "
                   f"(`{name}` {value:.3f} against {_prior(points[above[0]]):.3f}).")  # fmt: skip
    else:
        peak = max(steps, key=lambda s: best(s)[1])
        name, value = best(peak)
        out.append(
            f"No readout's pointing passes the class + words prior at any step: best `{name}` {value:.3f} at "
            f"step {peak} against {_prior(points[peak]):.3f}."
        )
    return out


def figure(record: Mapping[str, Any], mark: Mapping[str, Any] | None = None) -> Figure:
    """Four panels against steps (log x, linear below 50, a tick per step): zero-shot, P@5, pointing, probe;
    ``mark`` (:func:`run_point`) adds a run's own values as stars at its step."""
    from gloria.viz import plots

    points = _points(record)
    steps = sorted(points)
    chance, budget = record["chance"], record["demo_budget"]
    fig = plots.new_figure(11, 7.5)  # an Agg canvas, no pyplot (constrained layout)
    axes = fig.subplots(2, 2, sharex=True)
    ax = axes[0, 0]
    acc = [points[s]["zero_shot"]["accuracy"] for s in steps]
    ax.plot(steps, [a["value"] for a in acc], "o-", label="accuracy")
    ax.fill_between(steps, [a["low"] for a in acc], [a["high"] for a in acc], alpha=0.2)
    ax.plot(steps, [points[s]["zero_shot"]["macro_f1"]["value"] for s in steps], "s--", label="macro F1")
    ax.axhline(chance["zero_shot"], color="grey", ls=":", label="largest-class share")
    ax.axhline(ZERO_SHOT_GOAL, color="green", ls="-.", lw=1, label=f"goal {ZERO_SHOT_GOAL}")
    ax.set_title("zero-shot (5 classes)")
    ax = axes[0, 1]
    for key, label in (("global", "global"), ("both", "global + local")):
        ax.plot(steps, [points[s]["p5"][key] for s in steps], "o-", label=label)
    ax.axhline(chance["retrieval"], color="grey", ls=":", label="chance")
    ax.set_title("image-to-text P@5")
    ax = axes[1, 0]
    for key in READOUTS:
        ax.plot(steps, [points[s]["pointing"][key]["pointing"] for s in steps], "o-", label=key)
    for key, style in zip(PRIORS, ("--", "-.", ":"), strict=True):
        ax.axhline(points[steps[-1]]["pointing"][key]["pointing"], color="grey", ls=style, label=key)
    ax.set_title("pointing game")
    ax = axes[1, 1]
    for fraction in sorted(points[steps[0]]["probe"], key=float):
        mean = [points[s]["probe"][fraction]["mean"] for s in steps]
        std = [points[s]["probe"][fraction]["std"] for s in steps]
        ax.errorbar(steps, mean, yerr=std, fmt="o-", capsize=2, label=f"{100 * float(fraction):g}% labels")
    ax.set_title("linear probe mean AUROC")
    if mark is not None:
        at = mark["step"]
        panels = zip(("zero_shot", "p5", "pointing", "probe"), axes.flat, strict=True)
        for key, ax in panels:
            if mark.get(key) is not None:
                ax.plot([at], [mark[key]], "*", color="black", ms=13, zorder=5, label=f"this run (step {at})")
    for ax in axes.flat:
        ax.set_xscale("symlog", linthresh=50)
        ax.set_xticks(steps, [str(s) for s in steps], rotation=45, fontsize=7)
        ax.minorticks_off()
        ax.axvline(budget, color="red", lw=1, alpha=0.6, label=f"demo budget ({budget})")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    for ax in axes[1]:
        ax.set_xlabel("optimiser steps")
    return fig


# ------------------------------------------------------------------------------------- the demo's stage


def scored_step(pretrain: Mapping[str, Any]) -> int | None:
    """The optimiser step of the weights a demo run scores: its best-validation checkpoint's (named
    ``...-step=N.ckpt`` by the runner), else its last step."""
    found = re.search(r"step=(\d+)", str(pretrain.get("checkpoint") or ""))
    if found:
        return int(found.group(1))
    step = pretrain.get("global_step")
    return int(step) if isinstance(step, int) else None


def run_point(results: Mapping[str, Any], name: str = "pretrained") -> dict[str, Any] | None:
    """The readouts of a demo run's model ``name`` in the curve's terms, or None without the evaluations:
    {"step", "trained_steps", "zero_shot", "p5", "pointing", "readout", "prior", "probe"}."""
    try:
        p5 = next(float(r["precision_at_k"]["5"]) for r in results["retrieval"][name]
                  if r["direction"] == "image_to_text" and r["similarity"] == "global")  # fmt: skip
        readout, pointing = best_readout(results["grounding"][name])
        point = {
            "step": scored_step(results["pretrain"]),
            "trained_steps": results["pretrain"].get("global_step"),
            "zero_shot": float(results["zero_shot"][name]["accuracy"]["value"]),
            "p5": p5,
            "pointing": pointing,
            "readout": readout,
            "prior": float(results["grounding"][name]["prior_class_side_level"]["pointing"]),
            "probe": float(results["probe"]["over_seeds"][name]["0.01"]["mean"]),
        }
    except (KeyError, TypeError, StopIteration):
        return None
    return point if point["step"] is not None else None


def placement(record: Mapping[str, Any], point: Mapping[str, Any]) -> list[str]:
    """Where ``point`` (:func:`run_point`) sits on the curve ``record``: plain statements."""
    points = _points(record)
    steps = sorted(points)
    at, trained = point["step"], point["trained_steps"]
    near = min(steps, key=lambda s: abs(math.log1p(s) - math.log1p(at)))
    ref = points[near]
    name, value = best_readout(ref["pointing"])
    out = [
        f"This run trained {trained} steps and is scored with the weights of step {at} (its best validation "
        f"loss): zero-shot {point['zero_shot']:.3f}, P@5 {point['p5']:.3f}, best pointing "
        f"`{point['readout']}` {point['pointing']:.3f} (class + words prior {point['prior']:.3f}), 1% probe "
        f"{point['probe']:.3f}.",
        f"The reference run (seed {record['seed']}, the same recipe and data size) at step {near}: zero-shot "
        f"{_accuracy(ref):.3f}, P@5 {ref['p5']['global']:.3f}, best pointing `{name}` {value:.3f}, 1% probe "
        f"{ref['probe']['0.01']['mean']:.3f}.",
        "The reference is one run: the same recipe and seed on another CPU, thread count or commit takes "
        "other float paths and can end as far from it as another seed does (docs/learning.md, section 6), "
        "so a difference is read against the spread over seeds.",
    ]
    later = [s for s in steps if s > at]
    if later:
        last = points[later[-1]]
        rising = _accuracy(last) > _accuracy(ref) + 0.05
        far = best_readout(last["pointing"])[1]
        out.append(
            f"Further along the reference curve, at step {later[-1]} ({later[-1] / max(at, 1):.1f}x this "
            f"run's step): zero-shot {_accuracy(last):.3f}, best pointing {far:.3f}; "
            "this budget sits "
            + ("on the rising part of the curve." if rising else "where the curve has levelled off.")
        )
    return out


def stage_learning_curve(run: DemoRun) -> None:
    """The demo's stage 9: this run's budget on the reference curve (figure and statements), or why not."""
    sec = run.section("learning_curve")
    sec.heading("9. Where this budget sits on the learning curve")
    record = reference_curve()
    if record is None or not record.get("checkpoints"):
        sec.text(f"This installation has no reference curve (`gloria/assets/{ASSET}`); "
                 "`python scripts/learning_curve.py` writes one.")  # fmt: skip
        return
    differ = different_settings(record, run.settings)
    meta = record.get("meta", {})
    source = (f"`{meta.get('command', 'scripts/learning_curve.py')}` at commit "
              f"{str(meta.get('commit', '?'))[:8]}")  # fmt: skip
    if differ:
        run.results["learning_curve"] = {"placed": False, "different_settings": differ}
        sec.text(
            f"The reference learning curve ({source}) is of the size `{record['settings'].get('name')}`; "
            f"this run differs in {', '.join(f'`{k}`' for k in differ)}, so it is not placed on it."
        )
        return
    point = run_point(run.results)
    lines = reading(record)
    sec.text(
        f"The demo's recipe run on past its budget ({source}; one continuous run scored by this demo's "
        "evaluations at log-spaced steps; the numbers ship with the package):"
    )
    sec.lines += [*(f"- {line}" for line in lines), ""]
    if point is not None:
        sec.lines += [*(f"- {line}" for line in placement(record, point)), ""]
    sec.figure(figure(record, point), "learning_curve", "The reference learning curve with this run marked")
    run.results["learning_curve"] = {"placed": point is not None, "point": point, "reading": lines,
                                     "reference_commit": meta.get("commit")}  # fmt: skip
