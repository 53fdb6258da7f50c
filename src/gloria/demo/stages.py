"""The demo's eight stages, each ``stage(run: DemoRun) -> None`` filling ``run.results`` and a report section.

1 synth  2 pretrain (runner)  3 zero-shot  4 retrieval  5 linear probe  6 segmentation  7 grounding
8 benchmark (the packaged SynthCXR suite, ``gloria.tasks.benchmark``).
Every downstream stage runs on each model of ``run.models`` (the demo: pretrained and its random init).
"""

from __future__ import annotations

import logging
import math
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gloria.demo import curve, figures, training
from gloria.demo import evaluate as EV
from gloria.demo import readings as RD
from gloria.demo.prompts import choose_prompts, corpus_vocabulary
from gloria.demo.run import DemoRun
from gloria.pretrained.convert import write_model_dir
from gloria.provenance import mean_sd
from gloria.tasks import embed as E
from gloria.tasks import linear_probe as probe
from gloria.tasks import retrieval as R
from gloria.tasks import zero_shot as Z
from gloria.tasks.metrics import chance_levels
from gloria.tasks.report import add_grounding, add_retrieval, add_zero_shot

log = logging.getLogger(__name__)

PROBE_SEEDS = 3  # the linear probe's subsample seeds (the run's seed and the next ones)
MODEL_DIR = "model"  # the pretrained model as a converted directory (gloria.load_gloria reads it)
SEG_EXAMPLES = 3  # test images with a mask drawn with each encoder's predicted mask


def _num(value: object) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def _get(tree: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(tree, dict) or key not in tree:
            return None
        tree = tree[key]
    return tree


# ------------------------------------------------------------------------------------------------ stages


def stage_synth(run: DemoRun) -> None:
    from gloria.data.synth import generate
    from gloria.data.synth.preview import pick_examples, save_examples

    s = run.settings
    cfg = s.synth_config()
    summary = generate(run.synth_root, s.n_images, seed=run.seed, config=cfg, progress=False)
    run.results["synth"] = {"n": summary.n, "size": s.image_size, "counts": summary.counts,
                            "label_positives": summary.label_positives}  # fmt: skip
    sec = run.section("synth")
    sec.heading("1. Data: SynthCXR")
    sec.text(
        f"{summary.n} synthetic radiographs at {s.image_size} px with reports, labels and ground truth "
        f"(seed {run.seed}); files: {', '.join(f'{k} {v}' for k, v in summary.counts.items())}."
    )
    examples = pick_examples(run.seed, cfg, count=4, pool=min(s.n_images, 80))
    path = save_examples(examples, run.out / "figures" / "examples.png", columns=4)
    sec.lines += [f"![Example images with finding boxes and report impressions](figures/{path.name})", ""]


def prepare_pretraining(run: DemoRun) -> Path:
    """Read the 5x200-style set and write the pretraining CSV without its patients; returns the CSV."""
    data = EV.read_zero_shot_set(run.synth_root)
    run.eval_set = data
    rel = [p.relative_to(run.synth_root).as_posix() for p in data.paths]
    csv, run.train_reports = training.pretraining_csv(run.synth_root, rel, run.out / "data" / "pretrain.csv")
    return csv


def pretrain_model(
    run: DemoRun,
    csv: Path,
    name: str,
    alignment: dict[str, float] | None = None,
    overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Pretrain model ``name`` (alignment weights and experiment keys replaced when given) into
    ``run.models``; its random initialisation goes to ``run.models["random_init"]`` if not there yet.
    Returns the runner's results."""
    cfg = training.pretrain_config(
        run.settings, run.synth_root, csv, run.seed, name=name, alignment=alignment, overrides=overrides
    )
    runs = run.out / "runs"
    if (runs / cfg.name).exists():
        shutil.rmtree(runs / cfg.name)  # a previous demo's run: start clean so the numbers repeat
    if "random_init" not in run.models:
        run.models["random_init"] = training.random_init_model(cfg)
        run.checkpoints["random_init"] = None
    model, res = training.pretrain(cfg, runs)
    run.models[name] = model
    run.checkpoints[name] = str(res.get("best_checkpoint") or res.get("last_checkpoint"))
    return res


def stage_pretrain(run: DemoRun) -> None:
    s = run.settings
    csv = prepare_pretraining(run)
    res = pretrain_model(run, csv, "pretrained")
    run.models = {"pretrained": run.models["pretrained"], "random_init": run.models["random_init"]}
    model = run.models["pretrained"]
    curve = [float(v) for v in res.get("train_loss_curve", [])]
    run.results["pretrain"] = {
        "preset": s.preset,
        "data": res.get("data"),
        "epochs": res.get("epochs"),
        "global_step": res.get("global_step"),
        "train_loss_curve": curve,
        "best_val_loss": res.get("best_score"),
        "checkpoint": run.checkpoints["pretrained"],  # weights only (the runner's format)
        "val_loss_curve": res.get("val_loss_curve"),
        "model_dir": str(
            write_model_dir(model, run.out / MODEL_DIR, {"source": "gloria demo"}, written_by=run.command)
        ),
        "parameters": sum(p.numel() for p in model.parameters()),
    }
    sec = run.section("pretrain")
    sec.heading("2. GLoRIA pretraining")
    text_tower = (
        "a text tower built from scratch"
        if model.config.text.bert_config is not None
        else f"the pretrained text tower `{model.config.text.model}`"
    )
    per_step = "the whole impression" if s.full_report else "one sentence of the impression"
    extras = f", text tower lr {s.pretrain_text_lr:g}" if s.pretrain_text_lr is not None else ""
    if s.local_feature_scale is not None:
        extras += f", local features as {s.local_feature_scale:g} x cosine (`alignment.local_feature_scale`)"
    sec.text(
        f"Preset `{s.preset}` (image tower from scratch, {text_tower}) trained with "
        f"`gloria.training.runner` on the image-report CSV ({res.get('data', {}).get('train_rows')} training "
        f"pairs, 5x200 patients removed, {per_step} per step), {s.pretrain_epochs} epochs of batch "
        f"{s.pretrain_batch_size}, lr {s.pretrain_lr:g}{extras}; best validation loss "
        f"{_num(res.get('best_score'))}. 'Random init' below is this model before training."
    )
    if curve:
        # uniform scores: each of the (global, local) x (image->text, text->image) terms is ln(batch)
        align = model.config.alignment
        chance = 2 * (align.global_weight + align.local_weight) * math.log(s.pretrain_batch_size)
        validation = res.get("val_loss_curve") or []
        fig = figures.loss_curve({"training loss": curve}, chance=chance, validation=validation)
        sec.figure(fig, "pretrain_loss", "Pretraining loss")
        sec.text(f"Chance level (uniform scores over a batch of {s.pretrain_batch_size}): {chance:.2f}.")


def _embeddings(run: DemoRun, name: str) -> E.ImageEmbeddings:
    if name not in run.embeddings:
        assert run.eval_set is not None
        run.embeddings[name] = E.embed_images(
            run.model(name), run.eval_set.paths, with_regions=True, progress=False
        )
    return run.embeddings[name]


def stage_zero_shot(run: DemoRun) -> None:
    s = run.settings
    assert run.eval_set is not None
    classes = sorted(set(run.eval_set.tasks))
    chosen = choose_prompts(classes, corpus_vocabulary(run.train_reports), n=s.n_prompts, seed=run.seed)
    chance, _ = chance_levels(run.eval_set.tasks)
    out: dict[str, Any] = {"prompts": chosen.prompts, "prompt_source": chosen.source,
                           "release_prompts_fitting": chosen.fitting, "chance": chance,
                           "uniform_chance": 1.0 / len(classes)}  # fmt: skip
    sec = run.section("zero_shot")
    sec.heading("3. Zero-shot classification (5x200-style set)")
    release = [c for c, v in chosen.source.items() if v == "release"]
    own = [c for c, v in chosen.source.items() if v == "demo"]
    sec.text(
        f"{len(run.eval_set.paths)} images, one finding each. Prompts: the release's prompt vocabulary, "
        "keeping "
        f"prompts whose words all occur in the training reports, for {', '.join(release) or 'no class'}; the "
        f"demo's own prompts for {', '.join(own) or 'no class'}. Largest-class share {chance:.3f}."
    )
    sec.table([{"class": c, "prompts": "; ".join(p)} for c, p in chosen.prompts.items()])
    for name in run.models:
        result = Z.run_zero_shot(
            run.model(name),
            run.eval_set,
            chosen.prompts,
            images=_embeddings(run, name),
            n_boot=s.n_boot,
            seed=run.seed,
        )
        add_zero_shot(
            sec,
            result.evaluation,
            result.scores,
            result.labels,
            name=f"zero_shot_{name}",
            heading=run.title(name),
            level=3,
            title=f"{run.title(name)}: zero-shot",
        )
        out[name] = result.evaluation
    run.results["zero_shot"] = out
    _reading(sec, RD.zero_shot_reading(out))


def stage_retrieval(run: DemoRun) -> None:
    s = run.settings
    assert run.eval_set is not None
    _, chance = chance_levels(run.eval_set.tasks)
    sec = run.section("retrieval")
    sec.heading("4. Retrieval on the 5x200-style set")
    sec.text("Queries: each image (or its report impression); a hit is a candidate of the same class.")
    out: dict[str, Any] = {
        "ks": [k for k in s.retrieval_ks if k <= len(run.eval_set.paths)],
        "chance": chance,
        "classes": sorted(set(run.eval_set.tasks)),  # label c of top1_class_counts is classes[c]
    }
    for name in run.models:
        rows = R.run_retrieval(
            run.model(name),
            run.eval_set,
            images=_embeddings(run, name),
            similarities=("global", "both"),
            ks=s.retrieval_ks,
            batch_size=64,  # the text batches the demo's numbers were made with
        ).rows
        add_retrieval(
            sec,
            rows,
            chance=chance,
            name=f"retrieval_{name}",
            heading=run.title(name),
            level=3,
            title=f"{run.title(name)}: retrieval",
        )
        out[name] = rows
    run.results["retrieval"] = out
    _reading(sec, RD.retrieval_reading(out))


def stage_probe(run: DemoRun) -> None:
    s = run.settings
    train = probe.read_labelled(run.synth_root, "train.csv")
    test = probe.read_labelled(run.synth_root, "valid.csv")
    out: dict[str, Any] = {"fractions": list(s.probe_fractions), "over_seeds": {}}
    seeds = [run.seed + k for k in range(PROBE_SEEDS)]
    for name in run.models:
        model = run.model(name)
        features = (probe.pooled_features(model, train.paths), probe.pooled_features(model, test.paths))
        by_seed = [
            probe.linear_probe(features[0], train, features[1], test, s.probe_fractions, seed=seed)
            for seed in seeds
        ]
        out[name] = by_seed[0]  # the run's own seed: the headline's entry
        out["over_seeds"][name] = {
            key: _spread([float(r[key]["mean_auroc"]) for r in by_seed])  # type: ignore[arg-type]
            for key in by_seed[0]
        }
    out["seeds"] = seeds
    run.results["probe"] = out
    sec = run.section("probe")
    sec.heading("5. Linear probe (frozen encoder, 5 CheXpert competition labels)")
    sec.text(
        f"Logistic regression on the pooled trunk feature, {len(train.paths)} training images "
        f"(seeded subsample per fraction), tested on valid.csv ({len(test.paths)} images), release "
        "uncertain policy."
    )
    sec.table(
        [
            {
                "labels": f"{100 * f:g}%",
                "images": out[next(iter(run.models))][f"{f:g}"]["train_images"],
                **{run.title(m): out[m][f"{f:g}"]["mean_auroc"] for m in run.models},
            }
            for f in s.probe_fractions
        ]
    )
    curves = {run.title(m): out[m] for m in run.models}
    spread = {run.title(m): out["over_seeds"][m] for m in run.models}
    sec.figure(figures.probe_curves(curves, spread), "probe_auroc", "Linear probe AUROC vs label fraction")
    _reading(sec, RD.probe_reading(out), f"Over seeds {seeds} (the subsample per fraction is drawn per seed)")


def _spread(values: list[float]) -> dict[str, Any]:
    """Mean and sample standard deviation of ``values`` (0 for one value)."""
    mean, std = mean_sd(values)
    return {"mean": mean, "std": std, "values": values}


def _reading(sec: Any, lines: list[str], lead: str | None = None) -> None:
    """The plain-language reading under a table (computed from its numbers)."""
    if lines:
        sec.text("**Reading.** " + (f"{lead}: " if lead else "") + " ".join(lines))


def stage_segmentation(run: DemoRun) -> None:
    s = run.settings
    out: dict[str, Any] = {}
    runs = run.out / "runs"
    for name in run.models:
        checkpoint = run.checkpoints.get(name)
        by_fraction: dict[str, Any] = {}
        for fraction in s.seg_fractions:
            suffix = "" if fraction == 1.0 else f"_{100 * fraction:g}pct"
            cfg = training.segmentation_config(
                s, run.synth_root, checkpoint, run.seed, f"segmentation_{name}{suffix}"
            ).replace([f"data.train_pct={fraction}"])
            if (runs / cfg.name).exists():
                shutil.rmtree(runs / cfg.name)
            res = training.segment(cfg, runs)
            by_fraction[f"{fraction:g}"] = {
                k: res.get(k)
                for k in ("data", "global_step", "train_loss_curve", "test_metrics", "test_checkpoint")
            }
        # the whole training set's run is the model's headline entry; every fraction is under by_fraction
        headline = by_fraction.get("1", next(iter(by_fraction.values())))
        out[name] = {**headline, "by_fraction": by_fraction}
        for entry in by_fraction.values():  # only the headline U-Net is used again (example masks)
            kept = entry.get("test_checkpoint")
            if entry is not headline and kept and Path(kept).is_file():
                Path(kept).unlink()
                entry["test_checkpoint_deleted"] = True
    empty = training.empty_test_share(run.synth_root)
    out["empty_prediction_dice"] = empty
    run.results["segmentation"] = out
    sec = run.section("segmentation")
    sec.heading("6. Segmentation (SIIM-style pneumothorax masks)")
    sec.text(
        f"U-Net whose encoder is the GLoRIA image trunk, {s.seg_steps} steps of batch {s.seg_batch_size} "
        "on the balanced training split"
        + (
            f" (label fractions {', '.join(f'{100 * f:g}%' for f in s.seg_fractions)})"
            if s.seg_fractions != (1.0,)
            else ""
        )
        + " (runner, best validation Dice), Dice on the test split. Dice is "
        "per image at 0.5; an image without pneumothorax scores 1 if the prediction is empty, else 0, so "
        f"predicting nothing anywhere scores {empty:.3f} (the share of such test images). The last column "
        "averages the Dice over the test images that have a mask only: how well masks are drawn (0 for "
        "an all-empty prediction)."
    )
    sec.table(
        [
            {
                "encoder": run.title(m),
                "train images": _get(out[m], "data", "train_rows"),
                "test Dice": _get(out[m], "test_metrics", "test_dice"),
                "test Dice, images with a mask": _get(out[m], "test_metrics", "test_dice_positive"),
            }
            for m in run.models
        ]
        + [
            {
                "encoder": "none: all-empty prediction",
                "train images": 0,
                "test Dice": empty,
                "test Dice, images with a mask": 0.0,
            }
        ]
    )
    _reading(sec, RD.segmentation_reading(out))
    tested = {run.title(m): out[m].get("test_checkpoint") for m in run.models}
    if all(tested.values()):
        data = training.segmentation_config(s, run.synth_root, None, run.seed, "segmentation_examples")
        images, truths, predictions = training.predicted_masks(
            data, {k: str(v) for k, v in tested.items()}, n=SEG_EXAMPLES, seed=run.seed
        )
        if images:
            sec.figure(
                figures.segmentation_examples(images, truths, predictions),
                "segmentation_examples",
                "Predicted masks on test images with pneumothorax",
            )
            sec.text(
                f"{len(images)} test images with pneumothorax (a seeded draw), as the U-Net sees them: the "
                "true mask's outline in green, each encoder's predicted mask in red, with its Dice."
            )


def stage_grounding(run: DemoRun) -> None:
    s = run.settings
    cases = EV.grounding_cases(run.synth_root)
    outputs = {}
    for name in run.models:
        # maps are read on the CPU (the grounding evaluation keeps image regions on the CPU)
        outputs[name] = EV.grounding(
            run.models[name].cpu().eval(), cases, seed=run.seed, n_examples=s.grounding_examples
        )
    run.results["grounding"] = {name: o.summary for name, o in outputs.items()}
    sec = run.section("grounding")
    sec.heading("7. Word-to-region attention and grounding")
    sec.text(
        f"{len(cases)} findings of the valid split; half fit the image-blind priors, all methods are scored "
        "on the other half. Pointing game: the map's maximum falls inside the finding's mask "
        "(`pointing_tol`: within one region of it). Baselines never look at the image. Readouts: "
        "`two_stage` is GLoRIA's attention (word softmax, then region softmax), `two_stage_no_cls` the same "
        "without the [CLS] slot, `first_stage` the word softmax alone, `cosine` a softmax over regions of "
        "the word-region cosine. A map that is exactly uniform has no maximum inside the finding."
    )
    for name in run.models:
        add_grounding(sec, outputs[name].summary, name=f"grounding_{name}", heading=run.title(name), level=3)
    _reading(sec, RD.grounding_reading(run.results["grounding"]))
    if "pretrained" not in outputs:
        return
    for i, (case, maps) in enumerate(outputs["pretrained"].examples):
        other = outputs["random_init"].examples[i][1] if i < len(outputs["random_init"].examples) else None
        by_model = {"pretrained": maps, **({"random_init": other} if other is not None else {})}
        sec.figure(figures.attention_example(case, by_model), f"attention_{i}", f"Attention, {case.label}")


# the report's table keeps these metrics (every number of every method stays in results.json)
BENCHMARK_METRICS = {"zero_shot_multiclass": ("accuracy", "macro_f1", "mean_auroc"),
                     "zero_shot_labels": ("auroc", "f1"), "grounding": ("cnr", "miou")}  # fmt: skip
BENCHMARK_SUITE = "synthcxr"  # the packaged suite (gloria/assets/benchmarks/synthcxr.yaml)


def stage_benchmark(run: DemoRun) -> None:
    from gloria.data.synth_benchmarks import write_synth_benchmarks
    from gloria.tasks.benchmark import load_suite, run_suite

    s = run.settings
    manifest = write_synth_benchmarks(run.synth_root, seed=run.seed)  # what `gloria prepare synthcxr` writes
    suite = load_suite(BENCHMARK_SUITE, run.synth_root)
    suite.n_boot, suite.seed = s.n_boot, run.seed
    # grounding maps are read on the CPU (its image regions stay there), so the whole suite runs there
    out = {name: run_suite(run.models[name].cpu().eval(), suite, skip_unscorable=True) for name in run.models}
    run.results["benchmark"] = {
        "suite": BENCHMARK_SUITE,
        "n_boot": s.n_boot,
        "data": manifest["tables"],
        **out,
    }
    sec = run.section("benchmark")
    sec.heading("8. The benchmark suite")
    sec.text(
        f"`gloria benchmark --suite {BENCHMARK_SUITE}` on this run's SynthCXR folder (the tables of `gloria "
        "prepare synthcxr`): the 5x200 task (also with the release's legacy formula), binary and multi-label "
        "zero-shot (positive against negative prompts, thresholds from a validation split), phrase grounding "
        "on MS-CXR-style boxes and RSNA/SIIM-style boxes and masks, beside the image-blind baselines. The "
        "published column holds the numbers papers report on the real data set each entry stands in for: "
        "a SynthCXR number is not comparable with them. Every metric and method is in `results.json`."
    )
    kinds = {e.name: e.kind for e in suite.evaluations}
    names = list(out)

    def key(row: dict[str, Any]) -> tuple[str, str, str]:
        return row["benchmark"], row["method"], row["metric"]

    by_model = {name: {key(r): r for r in out[name]["rows"]} for name in names}
    rows = []
    for row in out[names[0]]["rows"]:
        if row["metric"] not in BENCHMARK_METRICS[kinds[row["benchmark"]]] or row["method"] == "cosine":
            continue
        cells = {"benchmark": row["benchmark"], "method": row["method"], "metric": row["metric"]}
        cells.update(
            {run.title(n): by_model[n][key(row)]["ours"] if key(row) in by_model[n] else "-" for n in names}
        )
        cells["published (real data)"] = row["reference"] or "-"
        rows.append(cells)
    sec.table(rows)
    skipped = {
        name: entry["skipped"] for name, entry in out[names[0]]["evaluations"].items() if "skipped" in entry
    }
    for name, why in skipped.items():
        sec.text(f"`{name}` could not be scored on this run's SynthCXR set: {why}.")
    _reading(sec, RD.benchmark_reading(out))


STAGES: tuple[tuple[str, Callable[[DemoRun], None], bool], ...] = (
    ("synth", stage_synth, True),
    ("pretrain", stage_pretrain, True),
    ("zero_shot", stage_zero_shot, False),
    ("retrieval", stage_retrieval, False),
    ("probe", stage_probe, False),
    ("segmentation", stage_segmentation, False),
    ("grounding", stage_grounding, False),
    ("benchmark", stage_benchmark, False),
    ("learning_curve", curve.stage_learning_curve, False),
)
