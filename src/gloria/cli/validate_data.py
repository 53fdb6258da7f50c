"""``gloria validate-data CSV...``: check prepared split CSVs (or any image-report CSV) before training and
exit non-zero on errors (empty reports, missing/corrupt images, duplicate ids, patient leakage)."""

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
        description="Validate CSVs together (e.g. the train/valid/test files of `gloria prepare`).",
    )
    parser.add_argument(
        "csv",
        nargs="+",
        type=Path,
        help="CSV files; a file's stem names its split when it has no split column",
    )
    parser.add_argument(
        "--image-root",
        type=Path,
        default=None,
        help="base for relative image paths (default: each CSV's folder)",
    )
    parser.add_argument("--path-col", default="path")
    parser.add_argument("--report-col", default="report")
    parser.add_argument("--id-col", default=None, help="id column checked for duplicates (default: path)")
    parser.add_argument("--patient-col", default="patient_id")
    parser.add_argument("--split-col", default="split")
    parser.add_argument("--view-col", default="view")
    parser.add_argument(
        "--decode", action="store_true", help="decode every image (slow) to find corrupt ones"
    )
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--json", type=Path, default=None, help="write the report as JSON here")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import pandas as pd

    from gloria.data.validate import LINE_COLUMN, SOURCE_COLUMN, Columns, validate_frame

    frames = []
    for path in args.csv:
        if not path.is_file():
            raise FileNotFoundError(f"CSV not found: {path}")
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        if args.path_col not in frame.columns:
            raise ValueError(f"{path}: missing column {args.path_col!r}; found {list(frame.columns)}")
        base = args.image_root or path.parent
        frame[args.path_col] = [p if Path(p).is_absolute() else str(base / p) for p in frame[args.path_col]]
        if args.split_col not in frame.columns:
            frame[args.split_col] = path.stem
        frame[SOURCE_COLUMN] = str(path)
        frame[LINE_COLUMN] = range(2, len(frame) + 2)
        frames.append(frame)
    table = pd.concat(frames, ignore_index=True)
    columns = Columns(
        path=args.path_col,
        report=args.report_col,
        id=args.id_col or args.path_col,
        patient=args.patient_col,
        split=args.split_col,
        view=args.view_col,
    )
    report = validate_frame(table, columns, decode=args.decode, workers=args.workers)
    if args.json is not None:
        args.json.write_text(json.dumps(report.to_dict(), indent=2) + "\n")
    errors = sum(1 for i in report.issues if i.severity == "error")
    log.info(
        "%d rows checked: %d error kinds, %d warning kinds", report.rows, errors, len(report.issues) - errors
    )
    return 0 if report.ok else 1
