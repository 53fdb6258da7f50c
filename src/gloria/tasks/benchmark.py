"""One benchmark run: a suite file names the evaluations (multi-class, binary / multi-label zero-shot,
phrase grounding) and their data; every result becomes table rows with intervals, the data's manifest hash
and the published reference numbers (``gloria.tasks.benchmark_references``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from gloria.data.manifest import file_sha256
from gloria.safe_yaml import load_yaml_file
from gloria.tasks.benchmark_references import REFERENCES, references_for
from gloria.tasks.metrics import NotScorableError

log = logging.getLogger(__name__)

Kind = Literal["zero_shot_multiclass", "zero_shot_labels", "grounding"]
KINDS: tuple[Kind, ...] = ("zero_shot_multiclass", "zero_shot_labels", "grounding")
PACKAGED_SUITES = ("synthcxr",)  # suites run by name (their prompt files sit beside them)
# metrics shown in the table per kind (every number stays in the JSON)
SHOWN: dict[str, tuple[str, ...]] = {
    "zero_shot_multiclass": ("accuracy", "macro_f1", "mean_auroc"),
    "zero_shot_labels": ("auroc", "auprc", "f1", "mcc"),
    "grounding": ("cnr", "miou", "mdice", "pointing"),
}
OPTIONS: dict[str, frozenset[str]] = {
    "zero_shot_multiclass": frozenset(
        {"prompts", "n_prompts", "prompt_seed", "ensemble", "legacy", "image_root"}
    ),
    "zero_shot_labels": frozenset(
        {
            "prompts",
            "classes",
            "path_col",
            "uncertain",
            "scoring",
            "threshold_rule",
            "valid_fraction",
            "valid_data",
        }
    ),
    "grounding": frozenset({"thresholds", "readouts", "fit_fraction"}),
}


@dataclass
class Evaluation:
    """One entry of a suite: ``name``, ``kind``, the data CSV, an optional reference key and options."""

    name: str
    kind: Kind
    data: Path
    reference: str | None = None
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class Suite:
    """Evaluations and bootstrap settings; ``base`` (the suite's folder) resolves relative prompt files."""

    evaluations: list[Evaluation]
    base: Path
    data_root: Path
    n_boot: int = 1000
    seed: int = 0


def packaged_suites() -> dict[str, Path]:
    """The suites shipped inside the package (``gloria/assets/benchmarks/<name>.yaml``), by name."""
    import importlib.resources

    folder = Path(str(importlib.resources.files("gloria") / "assets" / "benchmarks"))
    return {p.stem: p for p in sorted(folder.glob("*.yaml")) if p.stem in PACKAGED_SUITES}


def suite_file(spec: str | Path) -> Path:
    """A suite YAML path, or the name of a packaged suite (``synthcxr``)."""
    path = Path(spec)
    if path.is_file():
        return path
    packaged = packaged_suites()
    if str(spec) in packaged:
        return packaged[str(spec)]
    raise FileNotFoundError(f"suite file not found: {spec} (packaged suites: {sorted(packaged)})")


def load_suite(path: str | Path, root: str | Path | None = None) -> Suite:
    """Read a suite YAML (or a packaged suite by name); data paths are relative to ``root`` (default: the
    suite's ``root`` key, relative to the suite file, else the suite's folder). Errors name the file and
    the entry."""
    path = suite_file(path)
    raw = load_yaml_file(path)  # no aliases; a syntax error names the file and line
    if not isinstance(raw, Mapping) or not isinstance(raw.get("evaluations"), list) or not raw["evaluations"]:
        raise ValueError(f"{path}: a suite needs a non-empty 'evaluations' list")
    unknown_top = set(raw) - {"evaluations", "root", "n_boot", "seed"}
    if unknown_top:
        raise ValueError(f"{path}: unknown key(s) {sorted(unknown_top)}")
    base = path.resolve().parent
    data_root = Path(root) if root is not None else base / str(raw.get("root", "."))
    evaluations: list[Evaluation] = []
    for i, entry in enumerate(raw["evaluations"]):
        where = f"{path}: evaluation {i + 1}"
        if not isinstance(entry, Mapping):
            raise ValueError(f"{where}: expected a mapping")
        name, kind, data = entry.get("name"), entry.get("kind"), entry.get("data")
        if not isinstance(name, str) or not name:
            raise ValueError(f"{where}: needs a 'name'")
        if kind not in KINDS:
            raise ValueError(f"{where} ({name}): kind {kind!r} is not one of {list(KINDS)}")
        if not isinstance(data, str):
            raise ValueError(f"{where} ({name}): needs 'data', a CSV path")
        reference = entry.get("reference")
        if reference is not None and reference not in REFERENCES:
            raise ValueError(
                f"{where} ({name}): unknown reference {reference!r}; known: {sorted(REFERENCES)}"
            )
        options = {k: v for k, v in entry.items() if k not in {"name", "kind", "data", "reference"}}
        extra = set(options) - OPTIONS[kind]
        if extra:
            raise ValueError(f"{where} ({name}): unknown option(s) {sorted(extra)} for {kind}")
        if any(e.name == name for e in evaluations):
            raise ValueError(f"{where}: duplicate name {name!r}")
        data_path = Path(data)
        evaluations.append(
            Evaluation(
                name,
                kind,
                data_path if data_path.is_absolute() else data_root / data_path,
                reference,
                options,
            )
        )
    return Suite(evaluations, base, data_root, int(raw.get("n_boot", 1000)), int(raw.get("seed", 0)))


def _prompt_path(suite: Suite, value: str) -> Path:
    p = Path(value)
    return p if p.is_absolute() else suite.base / p


def _data_path(suite: Suite, value: str) -> Path:
    p = Path(value)
    return p if p.is_absolute() else suite.data_root / p


def run_multiclass(model: Any, ev: Evaluation, suite: Suite, cache: Any) -> dict[str, Any]:
    """Today's multi-class zero-shot (5x200 style, ``legacy`` included) through ``gloria.tasks.zero_shot``."""
    from gloria.data.eval_set import read_eval_set
    from gloria.tasks import zero_shot as Z

    o = ev.options
    data = read_eval_set(ev.data, _data_path(suite, str(o["image_root"])) if "image_root" in o else None)
    if "prompts" in o:
        positive, negative = Z.load_prompt_file(_prompt_path(suite, str(o["prompts"])))
    else:
        from gloria.prompts import generate_chexpert_class_prompts

        positive, negative = (
            generate_chexpert_class_prompts(int(o.get("n_prompts", 5)), seed=int(o.get("prompt_seed", 6))),
            None,
        )
    ensemble = str(o.get("ensemble", "max"))
    legacy = bool(o.get("legacy", False))
    run = Z.run_zero_shot(  # the one zero-shot runner (the CLI and the API score through it too)
        model,
        data,
        positive,
        negative,
        ensemble=ensemble,  # type: ignore[arg-type]
        legacy=legacy,
        n_boot=suite.n_boot,
        seed=suite.seed,
        cache=cache,
    )
    result = dict(run.evaluation)
    result.update({"ensemble": ensemble, "legacy": legacy})
    return result


def run_labels(model: Any, ev: Evaluation, suite: Suite, cache: Any) -> dict[str, Any]:
    """Binary / multi-label zero-shot (``gloria.tasks.zero_shot_labels``); classes default to the prompt
    classes that are columns of the CSV."""
    import pandas as pd

    from gloria.tasks import zero_shot as Z
    from gloria.tasks import zero_shot_labels as L

    o = ev.options
    if "prompts" not in o:
        raise ValueError(f"{ev.name}: zero_shot_labels needs 'prompts', a prompt file")
    positive, negative = Z.load_prompt_file(_prompt_path(suite, str(o["prompts"])))
    if "classes" in o:
        classes = [str(c) for c in o["classes"]]
    else:
        columns = set(pd.read_csv(ev.data, nrows=0).columns) if ev.data.is_file() else set()
        classes = [c for c in positive if c in columns]
        if not classes:
            raise ValueError(
                f"{ev.name}: none of the prompt classes {list(positive)} is a column of {ev.data}"
            )
    scoring = str(o.get("scoring", "pairs"))
    if scoring == "pairs" and negative is None:
        negative = Z.default_negatives(classes)

    def read(path: Path) -> L.LabelSet:
        return L.read_label_csv(
            path,
            classes,
            path_col=str(o.get("path_col", "path")),
            uncertain=o.get("uncertain", "ignore"),
            valid_fraction=float(o.get("valid_fraction", 0.2)),
            seed=suite.seed,
        )

    data = read(ev.data)
    if "valid_data" in o:  # a separate CSV of validation rows (e.g. a prepared *_valid.csv): all rows
        valid = read(_data_path(suite, str(o["valid_data"])))
        valid.valid = np.ones(len(valid.paths), dtype=bool)
        data.valid = np.zeros(len(data.paths), dtype=bool)
        data = L.concat_label_sets(valid, data)
    return L.run_label_zero_shot(
        model,
        data,
        positive,
        negative,
        scoring=scoring,  # type: ignore[arg-type]
        rule=o.get("threshold_rule", "mcc"),
        n_boot=suite.n_boot,
        seed=suite.seed,
        cache=cache,
    ).evaluation


def run_grounding_entry(model: Any, ev: Evaluation, suite: Suite, cache: Any) -> dict[str, Any]:
    """Phrase grounding on an MS-CXR-format table (``gloria.tasks.grounding_metrics``)."""
    from gloria.data.phrase_boxes import read_phrase_boxes
    from gloria.tasks.grounding_metrics import THRESHOLDS, run_grounding

    o = ev.options
    return run_grounding(
        model,
        read_phrase_boxes(ev.data),
        image_root=ev.data.resolve().parent,
        readouts=list(o.get("readouts", ["two_stage"])),
        thresholds=[float(t) for t in o.get("thresholds", THRESHOLDS)],
        fit_fraction=float(o.get("fit_fraction", 0.5)),
        n_boot=suite.n_boot,
        seed=suite.seed,
    )


RUNNERS = {
    "zero_shot_multiclass": run_multiclass,
    "zero_shot_labels": run_labels,
    "grounding": run_grounding_entry,
}


def _rows(ev: Evaluation, result: Mapping[str, Any], data: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Table rows of one evaluation: per shown metric (grounding: per method), ours and the references."""
    rows = []
    targets: list[tuple[str, Mapping[str, Any]]]
    if ev.kind == "zero_shot_labels":
        targets = [("macro", result["macro"])]
    elif ev.kind == "grounding":
        targets = list(result["methods"].items())
    else:
        targets = [("", result)]
    for method, values in targets:
        for metric in SHOWN[ev.kind]:
            if metric not in values:
                continue
            refs = references_for(ev.reference, metric) if method in ("", "macro", "two_stage") else []
            rows.append(
                {
                    "benchmark": ev.name,
                    "method": method or "model",
                    "metric": metric,
                    "ours": values[metric],
                    "data": f"{data['file']} ({data['sha256'][:12]})",
                    "reference": "; ".join(r.text() for r in refs),
                    "source": "; ".join(sorted({part for r in refs for part in r.source.split("; ")})),
                }
            )
    return rows


def run_suite(
    model: Any,
    suite: Suite,
    *,
    cache: Any = None,
    only: Sequence[str] = (),
    skip_unscorable: bool = False,
) -> dict[str, Any]:
    """Run every evaluation (or those named in ``only``); returns ``{evaluations: {...}, rows: [...]}``.

    An evaluation whose data cannot be scored (``gloria.tasks.metrics.NotScorableError``: e.g. a validation
    split without a positive) raises; with ``skip_unscorable`` (small generated sets: the demo) it is
    recorded as ``{"skipped": reason}`` with no table rows, and the suite goes on. Any other error (a bad
    prompt file, a missing column) always raises."""
    chosen = [e for e in suite.evaluations if not only or e.name in only]
    missing = sorted(set(only) - {e.name for e in suite.evaluations})
    if missing:
        raise ValueError(f"--only names no evaluation of the suite: {missing}")
    results: dict[str, Any] = {}
    rows: list[dict[str, Any]] = []
    for ev in chosen:
        if not ev.data.is_file():
            raise FileNotFoundError(f"{ev.name}: data file not found: {ev.data}")
        data: dict[str, Any] = {"file": str(ev.data), "sha256": file_sha256(ev.data)}
        if "valid_data" in ev.options:
            valid_path = _data_path(suite, str(ev.options["valid_data"]))
            data["valid_data"] = {"file": str(valid_path), "sha256": file_sha256(valid_path)}
        log.info("benchmark %s (%s) on %s", ev.name, ev.kind, ev.data)
        try:
            result = RUNNERS[ev.kind](model, ev, suite, cache)
        except NotScorableError as err:
            if not skip_unscorable:
                raise
            log.warning("benchmark %s skipped: %s", ev.name, err)
            results[ev.name] = {"kind": ev.kind, "data": data, "reference": ev.reference, "skipped": str(err)}
            continue
        results[ev.name] = {"kind": ev.kind, "data": data, "reference": ev.reference, "result": result}
        rows += _rows(ev, result, {"file": ev.data.name, "sha256": data["sha256"]})
    return {"n_boot": suite.n_boot, "seed": suite.seed, "evaluations": results, "rows": rows}
