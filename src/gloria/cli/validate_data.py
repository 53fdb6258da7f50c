"""``gloria validate-data [CSV...] [-c CONFIG]``: check split CSVs (or any image-report CSV) before training
and exit non-zero on errors (missing columns, no rows, unknown split values, empty reports, missing,
truncated or corrupt images, duplicate ids, patient leakage).

With no flags a CSV is read the way training reads it (layouts in ``gloria.data.validate_layouts``); with
``-c CONFIG`` the CSVs, columns and image folders come from the experiment's data section.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "validate-data",
        help="check split CSVs: reports, images, duplicates, leakage, views",
        description="Validate CSVs together (e.g. the train/valid/test files of `gloria prepare`, or the "
        "CSVs of an experiment config with -c).",
    )
    parser.add_argument(
        "csv",
        nargs="*",
        type=Path,
        help="CSV files; a file's stem names its split when it has no split column",
    )
    parser.add_argument(
        "-c", "--config", type=Path, default=None, help="experiment YAML: validate its data section's CSVs"
    )
    parser.add_argument(
        "--image-root",
        type=Path,
        default=None,
        help="base for relative image paths (default: as training resolves them)",
    )
    parser.add_argument("--path-col", default=None, help="image path column (default: from the header)")
    parser.add_argument("--report-col", default=None, help="report column; when given it must exist")
    parser.add_argument("--id-col", default=None, help="id column checked for duplicates (default: path)")
    parser.add_argument("--patient-col", default=None)
    parser.add_argument("--split-col", default=None)
    parser.add_argument("--view-col", default=None)
    parser.add_argument(
        "--decode", action="store_true", help="decode every image (slow) to find corrupt ones"
    )
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--json", type=Path, default=None, help="write the report as JSON here")
    parser.set_defaults(func=run)


def _explicit_roles(args: argparse.Namespace) -> Any:
    from gloria.data.validate_layouts import Roles

    named = {
        "path": args.path_col,
        "report": args.report_col,
        "split": args.split_col,
        "patient": args.patient_col,
        "view": args.view_col,
        "id": args.id_col,
    }
    return Roles(
        **named,
        required=frozenset(role for role, col in named.items() if col is not None),
        image_root=args.image_root,
    )


def config_inputs(config: Path) -> list[tuple[Path, Any]]:
    """The CSVs of an experiment's data section and how their columns and paths resolve in training."""
    from gloria.data.validate_layouts import Roles
    from gloria.training.experiment import load_experiment
    from gloria.training.sources import resolve

    d = load_experiment(config).data
    root = Path(d.root).expanduser() if d.root else None
    if d.source == "rsna":
        return [(resolve(d.root, d.train_csv or "stage_2_train_labels.csv"), Roles(dataset_root=root))]
    if d.source == "siim":
        return [(resolve(d.root, d.train_csv or "train-rle.csv"), Roles(dataset_root=root))]
    names = [n for n in (d.train_csv, d.valid_csv, d.test_csv) if n]
    if d.source == "chexpert":
        roles = Roles(path="Path", view="Frontal/Lateral", dataset_root=root, required=frozenset({"path"}))
    else:
        roles = Roles(
            path=d.path_column,
            report=d.report_column,
            split=d.split_column,
            patient=d.patient_column,
            required=frozenset({"path", "report"} | ({"split"} if d.split_column else set())),
            image_root=resolve(d.root, d.image_root) if d.image_root else None,
        )
    return [(resolve(d.root, n), roles) for n in names]


def run(args: argparse.Namespace) -> int:
    import pandas as pd

    from gloria.data.validate import Columns, ValidationReport, validate_frame
    from gloria.data.validate_layouts import ID_COLUMN, load_csv_for_validation

    inputs = [(path, _explicit_roles(args)) for path in args.csv]
    if args.config is not None:
        inputs += config_inputs(args.config)
    if not inputs:
        raise ValueError("validate-data needs CSV files or -c CONFIG")
    loaded = [load_csv_for_validation(path, roles) for path, roles in inputs]
    for path, item in zip((p for p, _ in inputs), loaded):
        log.info("%s: %d rows, read as the %s layout", path, len(item.frame), item.layout)
    table = pd.concat([item.frame for item in loaded], ignore_index=True)
    id_col = ID_COLUMN if ID_COLUMN in table.columns else "path"
    report = ValidationReport(rows=len(table), issues=[i for item in loaded for i in item.issues])
    for issue in report.issues:
        (log.error if issue.severity == "error" else log.warning)("%s", issue.message())
    checked = validate_frame(table, Columns(id=id_col), decode=args.decode, workers=args.workers)
    report.issues += checked.issues
    if args.json is not None:
        args.json.write_text(json.dumps(report.to_dict(), indent=2) + "\n")
    errors = sum(1 for i in report.issues if i.severity == "error")
    log.info(
        "%d rows checked: %d error kinds, %d warning kinds", report.rows, errors, len(report.issues) - errors
    )
    return 0 if report.ok else 1
