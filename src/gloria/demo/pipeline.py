"""``gloria demo``: runs the stages in order, each timed and logged, and writes one report.

``results.json`` and ``report.md`` are rewritten after every stage, so a failure late in the run keeps what
came before; a failed evaluation stage is recorded and the next one still runs (synth and pretrain failures
stop the run).
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import torch

from gloria.demo import stages
from gloria.demo.readings import headline_reading, reuse_commands
from gloria.demo.run import TITLE, DemoRun
from gloria.demo.settings import DemoSettings
from gloria.demo.summary import headline_rows
from gloria.tasks.report import Report, markdown_table

log = logging.getLogger(__name__)

# each stage's share of a default demo's time (docs/demo.md: pretraining ~300 s, U-Net ~185 s, probe ~40 s of
# ~570 s on 2 cores); the whole demo's time left is the finished stages' time scaled by their share
STAGE_SHARE = {"synth": 0.02, "pretrain": 0.53, "zero_shot": 0.03, "retrieval": 0.03, "probe": 0.07,
               "segmentation": 0.30, "grounding": 0.02, "benchmark": 0.05,
               "learning_curve": 0.001}  # fmt: skip


def progress_line(finished: list[str], elapsed: float, width: int = 20) -> str:
    """``demo [#####---------------] 27%, 80 s so far, about 215 s left`` after the ``finished`` stages."""
    known = sum(STAGE_SHARE.values())
    done = sum(STAGE_SHARE.get(s, 0.0) for s in finished) / known
    bar = "#" * round(width * done) + "-" * (width - round(width * done))
    left = f", about {elapsed / done * (1.0 - done):.0f} s left" if 0.0 < done < 1.0 else ""
    return f"demo [{bar}] {100 * done:.0f}%, {elapsed:.0f} s so far{left}"


# ------------------------------------------------------------------------------------------------ report


def write_report(run: DemoRun) -> tuple[Path, Path]:
    """Compose ``report.md`` (header, headline table, stage sections) and ``results.json`` from the run."""
    report = Report(TITLE, run.out)
    s = run.settings
    report.text(
        f"`{run.command}` -- size `{s.name}`, preset `{s.preset}`, seed {run.seed}, device `{s.device}`. "
        "Every number below comes from this run; pictures are in `figures/`."
    )
    report.heading("Results")
    rows = headline_rows(run.results)
    if rows:
        cells = [{k: "-" if v is None else v for k, v in row.items()} for row in rows]
        report.lines += [*markdown_table(cells), ""]
        report.text(
            "Baselines: zero-shot = always answering the largest class (accuracy, macro F1) and 0.5 "
            "(AUROC); retrieval = chance of a same-class candidate; segmentation = predicting no mask "
            "anywhere; grounding = the better image-blind location prior (class, or class plus side/level "
            "words) and a random map. Intervals: percentile bootstrap, 95%."
        )
        reading = headline_reading(run.results)
        if reading:
            report.text("**Reading.** " + " ".join(reading))
    for stage, _, _ in stages.STAGES:
        if stage in run.sections:
            report.lines += run.sections[stage].lines
    model_dir = (run.results.get("pretrain") or {}).get("model_dir")
    if model_dir:
        report.heading("Reuse the trained model")
        report.text(
            f"`{model_dir}` holds the pretrained model (safetensors weights, `config.yaml`, tokenizer "
            "files); `gloria.load_gloria` and every command's `--model` read it, no unpickling needed. "
            "For example:"
        )
        example = (
            run.eval_set.paths[0].as_posix() if run.eval_set is not None and run.eval_set.paths else None
        )
        commands = reuse_commands(str(run.out), model_dir, run.settings.preset, example)
        report.lines += ["```", *commands, "```", ""]
    failed = run.results.get("failed") or {}
    if failed:
        report.heading("Failed stages")
        report.lines += [f"- `{k}`: {v}" for k, v in failed.items()] + [""]
    report.results.update(run.results)
    return report.write()


# ------------------------------------------------------------------------------------------------ entry


def run_demo(settings: DemoSettings, *, out: str | Path, seed: int, command: str = "gloria demo") -> DemoRun:
    """Run every stage; returns the run (``results``, ``results['failed']`` naming failed stages)."""
    import lightning.pytorch as L

    run = DemoRun(settings, seed, Path(out), command)
    run.out.mkdir(parents=True, exist_ok=True)
    run.results.update({"seed": seed, "settings": settings.to_dict(), "command": command, "timings": {},
                        "failed": {}, "threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
                        "load_average_start": round(os.getloadavg()[0], 2)})  # fmt: skip
    deterministic_before = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    started = time.perf_counter()
    try:
        for number, (stage, body, essential) in enumerate(stages.STAGES, start=1):
            log.info("[%d/%d] %s ...", number, len(stages.STAGES), stage)
            t0 = time.perf_counter()
            L.seed_everything(seed, workers=True, verbose=False)
            try:
                body(run)
            except Exception as err:
                run.results["failed"][stage] = f"{type(err).__name__}: {err}"
                log.exception("stage %s failed", stage)
                if essential:
                    break
            finally:
                seconds = time.perf_counter() - t0
                run.results["timings"][stage] = round(seconds, 1)
                write_report(run)
            log.info("[%d/%d] %s done in %.1f s", number, len(stages.STAGES), stage, seconds)
            log.info("%s", progress_line(list(run.results["timings"]), time.perf_counter() - started))
    finally:
        torch.use_deterministic_algorithms(deterministic_before)
    log.info("demo finished in %.1f s: %s", time.perf_counter() - started, run.out / "report.md")
    return run
