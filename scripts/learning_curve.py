"""The demo's pretraining against optimiser steps: one run of the default recipe, scored at log-spaced steps.

    python scripts/learning_curve.py --threads 1                  # 3,000 steps on CPU (an hour or more)
    python scripts/learning_curve.py --threads 1 --no-train       # evaluate the checkpoints saved so far
    python scripts/learning_curve.py --device cuda --steps 20000  # the long run, on a GPU

One SynthCXR set (the demo's size and seed, made by the demo's synth stage) and one pretraining run of the
demo's recipe (``gloria.demo.settings.SIZES[--size]``) through the training runner, to ``--steps`` optimiser
steps instead of the recipe's epochs. The recipe has no learning-rate schedule (``scheduler.name: none``:
Adam at a constant rate), so running longer changes nothing before the demo's budget: the first
``epochs x steps per epoch`` steps are the demo's own run. A callback saves the weights at each step of
:func:`curve_steps` (0 = the random initialisation, the demo's budget exactly, log-spaced others) and every
saved checkpoint is read back by the one loader (``gloria.load_gloria``) and scored by the demo's evaluation
stages: zero-shot accuracy and macro F1 with intervals, image-to-text P@5, the pointing game of every readout
beside the image-blind priors, and the linear probe over the demo's probe seeds. The numbers go to ``--data``
(``src/gloria/assets/learning_curve.json``, with the provenance record: the demo's report places its run on
this packaged curve, ``gloria.demo.curve``) after each checkpoint, so a later call skips the
steps already there; the picture to ``--figure``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer

from gloria import provenance
from gloria.demo import stages as S
from gloria.demo import training
from gloria.demo.curve import PRIORS, READOUTS, SAME_RUN, figure, reading
from gloria.demo.run import DemoRun
from gloria.demo.settings import SIZES, DemoSettings
from gloria.tasks.metrics import chance_levels
from gloria.training.runner import run_experiment
from gloria.viz import plots

log = logging.getLogger("learning_curve")

RUN_NAME = "learning_curve"
# what must match for the evaluations of an earlier call to be kept


def curve_steps(total: int, budget: int) -> list[int]:
    """0 (the random initialisation), the demo's ``budget``, 50 and the 1-2-5 series from 100 (100, 200,
    500, 1000, ...) below ``total``, and ``total`` itself; sorted."""
    steps = {0, total, 50} if total > 50 else {0, total}
    if budget <= total:
        steps.add(budget)
    decade = 100
    while decade < total:
        steps.update(m * decade for m in (1, 2, 5) if m * decade < total)
        decade *= 10
    return sorted(steps)


def steps_per_epoch(csv: Path, batch_size: int) -> int:
    """Optimiser steps per epoch of the runner on the pretraining CSV: train-split rows // batch (the
    pretraining loader drops the last partial batch)."""
    import pandas as pd

    frame = pd.read_csv(csv)
    rows = int((frame["Split"].astype(str).str.lower() == "train").sum())
    return rows // batch_size if rows >= batch_size else 1


class StepCheckpoints(Callback):
    """Saves the weights (no optimiser state) at each listed optimiser step, step 0 before training, and
    beside them ``log.json``: the wall time and mean training loss since the previous saved step (kept when
    the run is stopped before its end)."""

    def __init__(self, folder: Path, steps: Sequence[int]) -> None:
        self.folder = folder
        self.steps = set(steps)
        self.losses: list[float] = []
        self.started = time.perf_counter()

    def path(self, step: int) -> Path:
        return self.folder / f"step_{step:06d}.ckpt"

    def read_log(self) -> dict[str, Any]:
        path = self.folder / "log.json"
        return json.loads(path.read_text()) if path.is_file() else {}

    def _save(self, trainer: Trainer) -> None:
        step = trainer.global_step
        if step in self.steps and not self.path(step).is_file():
            trainer.save_checkpoint(self.path(step), weights_only=True)
            entries = self.read_log()
            mean = sum(self.losses) / len(self.losses) if self.losses else None
            entries[str(step)] = {"seconds": time.perf_counter() - self.started, "mean_train_loss": mean,
                                  "batches": len(self.losses)}  # fmt: skip
            (self.folder / "log.json").write_text(json.dumps(entries, indent=1))
            self.losses = []
            log.info("saved step %d: %s (mean loss %s)", step, self.path(step), mean)

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.started = time.perf_counter()
        self._save(trainer)

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if isinstance(loss, torch.Tensor):
            self.losses.append(float(loss.detach()))
        self._save(trainer)


def stopped_at(last: Path) -> tuple[int, Path] | None:
    """The step of the run's ``last.ckpt`` (written every 100 steps for resuming), or None without one."""
    from gloria.pretrained.safe_pickle import safe_torch_load

    if not last.is_file():
        return None
    step = safe_torch_load(last).get("global_step", 0)
    return int(step), last


def pretrain(
    settings: DemoSettings, run: DemoRun, csv: Path, steps: list[int], runs: Path, *, resume: bool
) -> dict[str, Any]:
    """The demo's pretraining experiment to ``max(steps)`` steps, validated every ``pretrain_epochs`` epochs
    (the demo validates every epoch; validation changes no weight), ``last.ckpt`` every 100 steps (resume)."""
    cfg = training.pretrain_config(
        settings,
        run.synth_root,
        csv,
        run.seed,
        name=RUN_NAME,
        overrides={"trainer": {"max_steps": max(steps), "max_epochs": 100_000,
                               "check_val_every_n_epoch": settings.pretrain_epochs,
                               "checkpoint_every_n_steps": 100}},
    )  # fmt: skip
    saver = StepCheckpoints(runs / RUN_NAME / "steps", steps)
    last = runs / RUN_NAME / "checkpoints" / "last.ckpt"
    started = resume and last.is_file()
    log.info("pretraining to step %d%s", max(steps), " (resuming from last.ckpt)" if started else "")
    t0 = time.perf_counter()
    res = run_experiment(cfg, out_dir=runs, resume="last" if started else None, callbacks=[saver])
    return {
        "global_step": res.get("global_step"),
        "seconds": time.perf_counter() - t0,
        "resumed": bool(started),
        "train_loss_curve": [float(v) for v in res.get("train_loss_curve", [])],
        "val_loss_curve": res.get("val_loss_curve"),
    }


def evaluate(run: DemoRun, checkpoint: Path, name: str) -> dict[str, Any]:
    """The demo's evaluation stages on one checkpoint (read by ``gloria.load_gloria``)."""
    import lightning.pytorch as L

    from gloria import load_gloria

    run.models = {name: load_gloria(checkpoint, "cpu")}
    run.embeddings, run.results = {}, {}
    for stage in (S.stage_zero_shot, S.stage_retrieval, S.stage_probe, S.stage_grounding):
        L.seed_everything(run.seed, workers=True, verbose=False)
        stage(run)
    r = run.results
    zs = r["zero_shot"][name]
    p5 = {row["similarity"]: float(row["precision_at_k"]["5"]) for row in r["retrieval"][name]
          if row["direction"] == "image_to_text"}  # fmt: skip
    grounding = r["grounding"][name]
    return {
        "checkpoint": str(checkpoint),
        "zero_shot": {"accuracy": zs["accuracy"], "macro_f1": zs["macro_f1"]},
        "p5": p5,
        "pointing": {
            k: {
                "pointing": float(grounding[k]["pointing"]),
                "pointing_tol": float(grounding[k]["pointing_tol"]),
            }
            for k in (*READOUTS, *PRIORS)
        },
        "probe": r["probe"]["over_seeds"][name],
        "probe_seeds": r["probe"]["seeds"],
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--size", choices=sorted(SIZES), default="default")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=3000, help="optimiser steps of the run")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--no-train", action="store_true", help="only evaluate the checkpoints saved so far")
    parser.add_argument("--out", default="runs/learning_curve")
    parser.add_argument("--data", default="src/gloria/assets/learning_curve.json")
    parser.add_argument("--figure", default="docs/images/learning_curve.png")
    args = parser.parse_args(argv)
    meta = provenance.start(args.threads)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    torch.use_deterministic_algorithms(True, warn_only=True)
    command = "python scripts/learning_curve.py " + " ".join(sys.argv[1:] if argv is None else argv)
    meta["command"] = command.strip()
    settings = SIZES[args.size].replace(device=args.device)
    out = Path(args.out)
    run = DemoRun(settings, args.seed, out, command)
    if not (run.synth_root / "CheXpert-v1.0" / "master_updated.csv").exists():
        S.stage_synth(run)
    csv = S.prepare_pretraining(run)
    per_epoch = steps_per_epoch(csv, settings.pretrain_batch_size)
    budget = settings.pretrain_epochs * per_epoch
    steps = curve_steps(args.steps, budget)
    runs = out / "runs"
    folder = runs / RUN_NAME / "steps"
    saver = StepCheckpoints(folder, steps)
    data = Path(args.data)
    record: dict[str, Any] = {}
    if data.exists():  # evaluations of an earlier call on the same data and recipe are kept
        earlier = json.loads(data.read_text())
        now = json.loads(json.dumps(settings.to_dict()))  # tuples as the JSON holds them (lists)
        same = all(earlier.get("settings", {}).get(k) == now[k] for k in SAME_RUN)
        if same and earlier.get("seed") == args.seed:
            record = {k: v for k, v in earlier.items() if k != "meta"}
            record["earlier_meta"] = [*earlier.get("earlier_meta", []), earlier["meta"]]  # every call's
            log.info(
                "kept the evaluations at steps %s from %s", sorted(map(int, record["checkpoints"])), data
            )
    assert run.eval_set is not None
    largest, same_class = chance_levels(run.eval_set.tasks)
    schedule = ("the recipe's: Adam at a constant learning rate (scheduler.name none), gradient clip 0.25; "
                "steps up to the demo's budget are the demo's own run")  # fmt: skip
    record.update(
        settings=settings.to_dict(),
        seed=args.seed,
        steps_per_epoch=per_epoch,
        demo_budget=budget,
        steps=steps,
        target_steps=args.steps,
        chance={"zero_shot": largest, "retrieval": same_class},
        schedule=schedule,
    )
    record.setdefault("checkpoints", {})
    if not args.no_train and not saver.path(max(steps)).is_file():
        record["train"] = pretrain(settings, run, csv, steps, runs, resume=True)
    record["step_log"] = saver.read_log()
    paths = {s: saver.path(s) for s in steps if saver.path(s).is_file()}
    stopped = stopped_at(runs / RUN_NAME / "checkpoints" / "last.ckpt")
    if stopped is not None and stopped[0] > max(paths, default=-1):  # a run stopped between listed steps
        paths[stopped[0]] = stopped[1]
    todo = [s for s in sorted(paths) if str(s) not in record["checkpoints"]]
    log.info("evaluating steps %s (%d already in %s)", todo, len(record["checkpoints"]), data.name)
    t0 = time.perf_counter()
    for i, step in enumerate(todo):
        record["checkpoints"][str(step)] = {"step": step, **evaluate(run, paths[step], f"step_{step}")}
        record["checkpoints"] = dict(sorted(record["checkpoints"].items(), key=lambda kv: int(kv[0])))
        record["reached_step"] = max(map(int, record["checkpoints"]))
        record["reading"] = reading(record)
        provenance.write(data, record, meta)
        eta = (time.perf_counter() - t0) / (i + 1) * (len(todo) - i - 1)
        point = record["checkpoints"][str(step)]
        log.info("step %d: zero-shot %.3f, P@5 %.3f, probe 1%% %.3f (%d/%d, ETA %.0f s)", step,
                 point["zero_shot"]["accuracy"]["value"], point["p5"]["global"],
                 point["probe"]["0.01"]["mean"], i + 1, len(todo), eta)  # fmt: skip
    if record["checkpoints"]:
        record["reading"] = reading(record)
        provenance.write(data, record, meta)
        plots.save(figure(record), Path(args.figure), dpi=110)
        for line in record["reading"]:
            log.info("%s", line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
