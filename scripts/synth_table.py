"""SynthCXR benchmark table: GLoRIA vs global-only (ConVIRT-style, local_weight=0) vs local-only
(global_weight=0) vs random init, on every demo task; mean and spread over seeds; written to docs/results.md.

    python scripts/synth_table.py                          # the full table: 3 seeds, demo default size
    python scripts/synth_table.py --size quick --seeds 0   # a reduced table (labelled as such)

Each seed generates its own SynthCXR set (data seed = model seed) and pretrains the three objectives through
the training runner (``gloria.demo.pipeline``), then runs the demo's evaluation stages on all four models.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from gloria.demo import pipeline as P
from gloria.demo import stages as S
from gloria.demo.run import DemoRun
from gloria.demo.settings import SIZES

log = logging.getLogger("synth_table")

VARIANTS: dict[str, dict[str, float]] = {
    "gloria": {"global_weight": 1.0, "local_weight": 1.0},
    "global_only": {"global_weight": 1.0, "local_weight": 0.0},
    "local_only": {"global_weight": 0.0, "local_weight": 1.0},
}
TITLES = {
    "gloria": "GLoRIA (global + local)",
    "global_only": "global only (ConVIRT-style)",
    "local_only": "local only",
    "random_init": "random init",
}
BASELINES = {
    "random": "random map",
    "prior_class": "prior: class",
    "prior_class_side_level": "prior: class + words",
}
BASELINE_METRICS = ("pointing", "pointing (1-region tol.)", "seg Dice 100%")
SEG_FRACTIONS = (0.01, 0.1, 1.0)


def run_seed(size: str, seed: int, out: Path, command: str) -> dict[str, dict[str, float]]:
    """All metrics of one seed: ``{model or baseline: {metric: value}}``."""
    import lightning.pytorch as L

    run = DemoRun(SIZES[size].replace(seg_fractions=SEG_FRACTIONS), seed, out / f"seed_{seed}", command)
    run.out.mkdir(parents=True, exist_ok=True)
    torch.use_deterministic_algorithms(True, warn_only=True)
    timings: dict[str, float] = {}

    def timed(name: str, body: Any, *args: Any) -> Any:
        t0 = time.perf_counter()
        L.seed_everything(seed, workers=True, verbose=False)
        value = body(*args)
        timings[name] = round(time.perf_counter() - t0, 1)
        log.info("seed %d: %s done in %.1f s", seed, name, timings[name])
        return value

    timed("synth", S.stage_synth, run)
    csv = S.prepare_pretraining(run)
    for name, alignment in VARIANTS.items():
        timed(f"pretrain_{name}", S.pretrain_model, run, csv, name, alignment)
    run.models = {name: run.models[name] for name in [*VARIANTS, "random_init"]}
    for stage in (
        S.stage_zero_shot,
        S.stage_retrieval,
        S.stage_probe,
        S.stage_segmentation,
        S.stage_grounding,
    ):
        timed(stage.__name__.removeprefix("stage_"), stage, run)
    run.results["timings"] = timings
    P.write_report(run)
    return collect(run.results, list(run.models))


def collect(results: dict[str, Any], models: Sequence[str]) -> dict[str, dict[str, float]]:
    """The table's metrics per model (and per image-blind grounding baseline) from a run's results."""
    table: dict[str, dict[str, float]] = {}
    for m in models:
        row: dict[str, float] = {"zero-shot accuracy": results["zero_shot"][m]["accuracy"]["value"]}
        for r in results["retrieval"][m]:
            if r["direction"] == "image_to_text":
                for k, v in r["precision_at_k"].items():
                    row[f"P@{k} {r['similarity']}"] = v
        for key, p in results["probe"][m].items():
            row[f"probe AUROC {100 * float(key):g}%"] = p["mean_auroc"]
        for key, entry in results["segmentation"][m]["by_fraction"].items():
            row[f"seg Dice {100 * float(key):g}%"] = entry["test_metrics"]["test_dice"]
        g = results["grounding"][m]["two_stage"]
        row["pointing"] = g["pointing"]
        row["pointing (1-region tol.)"] = g["pointing_tol"]
        table[m] = row
    ground = results["grounding"][models[0]]
    for b in BASELINES:
        table[b] = {"pointing": ground[b]["pointing"], "pointing (1-region tol.)": ground[b]["pointing_tol"]}
    empty = results["segmentation"]["empty_prediction_dice"]
    table["empty_mask"] = {k: empty for k in table[models[0]] if k.startswith("seg Dice")}
    return table


def aggregate(per_seed: list[dict[str, dict[str, float]]]) -> dict[str, dict[str, tuple[float, float]]]:
    """Mean and sample standard deviation (0 with one seed) of every cell over seeds."""
    out: dict[str, dict[str, tuple[float, float]]] = {}
    for model in per_seed[0]:
        out[model] = {}
        for metric in per_seed[0][model]:
            values = [s[model][metric] for s in per_seed if math.isfinite(s[model][metric])]
            mean = sum(values) / len(values) if values else math.nan
            var = sum((v - mean) ** 2 for v in values) / (len(values) - 1) if len(values) > 1 else 0.0
            out[model][metric] = (mean, math.sqrt(var))
    return out


def _cell(stats: tuple[float, float] | None, n_seeds: int) -> str:
    if stats is None:
        return "-"
    mean, std = stats
    if math.isnan(mean):
        return "n/a"
    return f"{mean:.3f} ± {std:.3f}" if n_seeds > 1 else f"{mean:.3f}"


def findings(agg: dict[str, dict[str, tuple[float, float]]]) -> list[str]:
    """Plain statements comparing the cells the hypothesis is about (computed, not written by hand)."""

    def get(model: str, metric: str) -> float:
        return agg.get(model, {}).get(metric, (math.nan, 0.0))[0]

    lines = []
    base = agg.get("random_init", {})
    for model in VARIANTS:
        cells = agg.get(model, {})
        ahead = [
            k
            for k, (mean, std) in cells.items()
            if k in base and mean - base[k][0] > max(std, base[k][1], 1e-9)
        ]
        lines.append(
            f"{TITLES[model]}: ahead of its random initialisation by more than one standard deviation on "
            f"{len(ahead)} of {len(cells)} metrics{' (' + ', '.join(ahead) + ')' if ahead else ''}."
        )
    g, c = get("gloria", "pointing"), get("global_only", "pointing")
    best_prior = max(get("prior_class", "pointing"), get("prior_class_side_level", "pointing"))
    lines.append(
        f"Grounding (pointing game): GLoRIA {g:.3f}, global-only {c:.3f}, local-only "
        f"{get('local_only', 'pointing'):.3f}, random init {get('random_init', 'pointing'):.3f}; "
        f"best image-blind prior {best_prior:.3f}, random map {get('random', 'pointing'):.3f}. GLoRIA is "
        f"{'above' if g > c else 'not above'} global-only and {'above' if g > best_prior else 'not above'} "
        "the best prior."
    )
    seg = [k for k in agg.get("gloria", {}) if k.startswith("seg Dice")]
    if seg and "empty_mask" in agg:
        best = max(((m, k) for m in VARIANTS if m in agg for k in seg), key=lambda mk: get(*mk))
        empty = get("empty_mask", seg[-1])
        lines.append(
            f"Segmentation: the best Dice is {get(*best):.3f} ({TITLES[best[0]]}, {best[1]}); predicting "
            f"no mask anywhere scores {empty:.3f}, so {'a' if get(*best) > empty else 'no'} pretrained "
            "encoder's U-Net beats it."
        )
    low = next((k for k in agg.get("gloria", {}) if k.startswith("probe AUROC")), None)
    if low:
        gl, cl = get("gloria", low), get("global_only", low)
        lines.append(
            f"Lowest label fraction ({low}): GLoRIA {gl:.3f} vs global-only {cl:.3f} vs random init "
            f"{get('random_init', low):.3f} -- GLoRIA {'ahead' if gl > cl else 'not ahead'} of global-only."
        )
    return lines


def write_markdown(
    agg: dict[str, dict[str, tuple[float, float]]],
    *,
    path: Path,
    command: str,
    size: str,
    seeds: Sequence[int],
    reduced: bool,
    seconds: float,
) -> None:
    settings = SIZES[size].replace(seg_fractions=SEG_FRACTIONS)
    models = [m for m in TITLES if m in agg]
    metrics = list(agg[models[0]])
    lines = [
        "# SynthCXR results table",
        "",
        "GLoRIA against a global-only contrastive baseline (ConVIRT-style: `local_weight=0`), a local-only "
        "objective (`global_weight=0`) and the random initialisation, all pretrained on SynthCXR with the "
        "same preset (image tower from scratch; the text tower as the preset gives it), data, steps and "
        "seed, and evaluated by the demo's stages (docs/demo.md). 'Random init' is the model before "
        "pretraining (for the `minilm` preset: pretrained MiniLM text tower, random image tower).",
        "",
        f"Generated by `{command}` ({seconds / 60:.0f} min on this machine).",
        "",
    ]
    if reduced:
        lines += [
            f"**Reduced run**: {len(seeds)} seed(s) ({', '.join(map(str, seeds))}), size `{size}` "
            f"({settings.n_images} images at {settings.image_size} px, preset `{settings.preset}`, "
            f"{settings.pretrain_epochs} pretraining epochs). The full table is "
            "`python scripts/synth_table.py --threads 1` (3 seeds, size `default`, about an hour per seed "
            "on 2 CPU cores).",
            "",
        ]
    lines += [
        f"Settings: {json.dumps(settings.to_dict())}.",
        "",
        "Cells: mean ± sample standard deviation over seeds (each seed generates its own data set and "
        "initialises the model with that seed). Zero-shot and retrieval: the 5x200-style set; P@K: image "
        "to text, a hit is a report of the same class, `global` cosine or `both` (global + local); probe: "
        "mean AUROC of the 5 competition labels on valid.csv at 1/10/100% of the training labels; Dice: "
        "U-Net fine-tune on 1/10/100% of the SIIM-style training images (per-image Dice, the release's "
        "metric: an empty test image scores 1 for an empty prediction); pointing: the two-stage attention "
        "map's maximum inside the "
        "finding's mask, on held-out valid-split findings.",
        "",
    ]
    head = ["model", *metrics]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for m in models:
        lines.append(
            "| " + " | ".join([TITLES[m], *(_cell(agg[m].get(k), len(seeds)) for k in metrics)]) + " |"
        )
    lines += ["", "Image-blind baselines (never look at the image):", ""]
    lines += ["| baseline | " + " | ".join(BASELINE_METRICS) + " |", "|---|" + "---|" * len(BASELINE_METRICS)]
    for b, title in {**BASELINES, "empty_mask": "all-empty mask"}.items():
        cells = [_cell(agg[b].get(k), len(seeds)) for k in BASELINE_METRICS]
        lines.append(f"| {title} | {' | '.join(cells)} |")
    lines += [
        "",
        "## Expected and observed",
        "",
        "Expected (the paper's claim): the local term should help where localisation matters -- grounding "
        "(pointing game above the global-only model and above the image-blind priors) and the low-label "
        "regimes of the linear probe -- while global-only should be competitive on retrieval and zero-shot.",
        "",
        "Observed in this run (computed from the table):",
        "",
        *(f"- {line}" for line in findings(agg)),
        "",
        "Where an objective sits next to its random initialisation, it has not learned an image-text "
        "alignment at this size: compare each run's pretraining loss with its chance level (`gloria demo` "
        "reports both; docs/demo.md). How the recipe of the preset was chosen: docs/ablations.md.",
        "",
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--size", choices=sorted(SIZES), default="default", help="demo size of every run")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", default="runs/synth_table", help="folder of the runs")
    parser.add_argument("--write", default="docs/results.md", help="the Markdown table to write")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument(
        "--from-json", action="store_true", help="only rewrite --write from the seeds in <out>/table.json"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    command = "python scripts/synth_table.py " + " ".join(sys.argv[1:] if argv is None else argv)
    started = time.perf_counter()
    out = Path(args.out)
    per_seed: list[dict[str, dict[str, float]]] = []
    meta = {"command": command.strip(), "size": args.size, "seeds": args.seeds}
    if args.from_json:  # a run stopped early: the table of the seeds it finished, with its own command
        per_seed = json.loads((out / "table.json").read_text())
        meta = json.loads((out / "table_meta.json").read_text())
        args.size, args.seeds = meta["size"], meta["seeds"][: len(per_seed)]
        log.info("%d finished seed(s) in %s", len(per_seed), out / "table.json")
    for seed in [] if args.from_json else args.seeds:
        per_seed.append(run_seed(args.size, seed, out, command.strip()))
        meta["seconds"] = time.perf_counter() - started
        (out / "table.json").write_text(json.dumps(per_seed, indent=2))
        (out / "table_meta.json").write_text(json.dumps(meta, indent=2))
    agg = aggregate(per_seed)
    reduced = args.size != "default" or len(args.seeds) < 3
    write_markdown(
        agg,
        path=Path(args.write),
        command=str(meta["command"]),
        size=args.size,
        seeds=args.seeds,
        reduced=reduced,
        seconds=float(meta.get("seconds", time.perf_counter() - started)),
    )
    log.info("wrote %s", args.write)
    return 0


if __name__ == "__main__":
    sys.exit(main())
