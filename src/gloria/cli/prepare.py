"""``gloria prepare SOURCE --root DIR``: split tables for CheXpert, the 5x200 set, MIMIC-CXR, RSNA, SIIM or a
CSV of your own, one CSV per split plus a JSON summary (counts per split and label, id checksums).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gloria.data.prepare import SplitMode

log = logging.getLogger(__name__)

SOURCES = (
    "chexpert",
    "chexpert5x200",
    "chexpert-test",
    "mimic",
    "rsna",
    "siim",
    "nih",
    "padchest",
    "vindr",
    "mscxr",
    "csv",
    "synthcxr",
)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "prepare",
        help="write split CSVs and a summary for a real data set",
        description="Build per-split CSVs (train/valid/test) for a data set in its original layout.",
    )
    parser.add_argument("source", choices=SOURCES)
    parser.add_argument("--root", type=Path, required=True, help="data set folder (e.g. CheXpert-v1.0)")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: --root)")
    parser.add_argument(
        "--split",
        choices=("release", "patient", "official"),
        default=None,
        help="release: the 2021 release's split where defined; patient: seeded, by patient; official: nih's "
        "train_val_list.txt / test_list.txt (default: patient; nih: official when both lists are in --root; "
        "mimic and a csv with --split-col: their own split)",
    )
    parser.add_argument("--seed", type=int, default=None, help="seed (default 0; chexpert5x200: 6)")
    parser.add_argument(
        "--allow-missing-images",
        action="store_true",
        help="write the splits even when images are missing (they are counted)",
    )
    parser.add_argument(
        "--reports",
        type=Path,
        default=None,
        help="chexpert/chexpert5x200: image-report CSV with Path and Report Impression",
    )
    parser.add_argument(
        "--exclude-5x200",
        type=Path,
        default=None,
        help="chexpert: 5x200 CSV whose studies leave training "
        "(default: <out>/chexpert_5x200.csv "
        "when present)",
    )
    parser.add_argument(
        "--frontal-only", action="store_true", help="chexpert/csv: drop lateral views (csv: needs --view-col)"
    )
    parser.add_argument("--valid-fraction", type=float, default=0.1, help="chexpert: validation patients")
    parser.add_argument("--n", type=int, default=200, help="chexpert5x200: images per task")
    parser.add_argument(
        "--reports-root",
        type=Path,
        default=None,
        help="mimic: folder holding files/p1x/.../sNNN.txt (default: --root)",
    )
    parser.add_argument("--include-findings", action="store_true", help="mimic: findings + impression")
    parser.add_argument("--no-balance", action="store_true", help="siim: keep every training negative")
    parser.add_argument(
        "--csv",
        type=Path,
        default=None,
        help="csv: the file (default: <root>/reports.csv); chexpert-test: test_labels.csv; padchest: its "
        "labels CSV; mscxr: MS_CXR_Local_Alignment_v1.0.0.csv (default: in --root)",
    )
    parser.add_argument(
        "--min-count", type=int, default=50, help="padchest: images a label needs for a column"
    )
    parser.add_argument("--path-col", default="Path", help="csv: image path column")
    parser.add_argument("--report-col", default="Report Impression", help="csv: report text column")
    parser.add_argument("--patient-col", default=None, help="csv: patient id column (default: the path)")
    parser.add_argument("--split-col", default=None, help="csv: existing split column (train/valid/test)")
    parser.add_argument("--view-col", default=None, help="csv: view column")
    parser.add_argument("--image-root", type=Path, default=None, help="csv: base of relative image paths")
    parser.add_argument("--label-cols", default="", help="csv: comma-separated label columns")
    parser.add_argument(
        "--shards",
        type=Path,
        default=None,
        help="also write litdata shards of the image-report pairs here (data.shards; needs litdata)",
    )
    parser.add_argument("--shard-imsize", type=int, default=256, help="shards: longer image side (= imsize)")
    parser.add_argument("--shard-workers", type=int, default=4, help="shards: processes decoding images")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from gloria.data import prepare as prep

    root: Path = args.root
    out: Path = args.out or root
    if not root.is_dir():
        raise FileNotFoundError(f"--root {root} is not a folder")
    if args.source == "synthcxr":  # the benchmark tables of a generated SynthCXR folder, written into it
        from gloria.data.synth_benchmarks import write_synth_benchmarks

        write_synth_benchmarks(root, seed=args.seed or 0)
        return 0
    if args.split == "official" and args.source != "nih":
        raise ValueError(f"--split official is for nih only, not {args.source}")
    if args.source in BENCHMARK_SOURCES:
        return run_benchmark_source(args, root, out, args.seed or 0)
    seed = (
        args.seed if args.seed is not None else (prep.RELEASE_SEED if args.source == "chexpert5x200" else 0)
    )
    if args.source == "chexpert":
        exclude = args.exclude_5x200
        if exclude is None and (out / prep.FIVE_BY_200_CSV).is_file():
            exclude = out / prep.FIVE_BY_200_CSV
        if exclude is None:
            log.warning(
                "no 5x200 CSV found: training keeps every study (run `gloria prepare chexpert5x200` first)"
            )
        prepared = prep.prepare_chexpert(
            root,
            mode=args.split or "patient",
            seed=seed,
            reports=args.reports,
            exclude_5x200=exclude,
            valid_fraction=args.valid_fraction,
            frontal=args.frontal_only,
        )
    elif args.source == "chexpert5x200":
        prepared = prep.prepare_chexpert_5x200(root, seed=seed, reports=args.reports, n=args.n)
    elif args.source == "mimic":
        prepared = prep.prepare_mimic(
            root,
            mode=args.split or "release",
            seed=seed,
            reports_root=args.reports_root,
            include_findings=args.include_findings,
        )
    elif args.source == "rsna":
        prepared = prep.prepare_rsna(root, mode=args.split or "patient", seed=seed)
    elif args.source == "siim":
        prepared = prep.prepare_siim(
            root, mode=args.split or "patient", seed=seed, balance=not args.no_balance
        )
    else:
        from gloria.data.csv_reports import ReportColumns

        labels = tuple(c.strip() for c in args.label_cols.split(",") if c.strip())
        columns = ReportColumns(
            path=args.path_col,
            report=args.report_col,
            split=args.split_col,
            patient=args.patient_col,
            view=args.view_col,
            labels=labels,
        )
        mode: SplitMode = args.split or ("release" if args.split_col else "patient")
        prepared = prep.prepare_csv(
            args.csv or root / "reports.csv",
            columns,
            mode=mode,
            seed=seed,
            image_root=args.image_root,
            frontal=args.frontal_only,
        )
    missing = prep.check_images(prepared, allow_missing=args.allow_missing_images)
    prepared.extra["missing_images"] = missing
    if args.source == "chexpert5x200":
        target = out / prep.FIVE_BY_200_CSV
        out.mkdir(parents=True, exist_ok=True)
        prepared.frame.drop(columns="split").to_csv(target, index=False)
        log.info("wrote %s (seed %s, paths sha256 %s)", target, seed, prepared.extra["paths_sha256"])
    prep.write_prepared(prepared, out)
    if args.source in ("rsna", "siim"):  # their boxes / masks as a grounding table (MS-CXR format)
        from gloria.data import prepare_benchmarks as PB

        table = PB.rsna_box_table(prepared) if args.source == "rsna" else PB.siim_mask_table(prepared)
        PB.write_box_table(table, out, f"{args.source}_{'boxes' if args.source == 'rsna' else 'masks'}")
    if args.shards is not None:
        from gloria.data.shards import records_from_table, write_shards

        splits = records_from_table(prepared.frame)
        write_shards(splits, args.shards, imsize=args.shard_imsize, num_workers=args.shard_workers)
    return 0


BENCHMARK_SOURCES = ("chexpert-test", "nih", "padchest", "vindr", "mscxr")


def run_benchmark_source(args: argparse.Namespace, root: Path, out: Path, seed: int) -> int:
    """The benchmark data sets: split tables (and box tables) with their summaries and manifests."""
    from gloria.data import prepare as prep
    from gloria.data import prepare_benchmarks as PB

    boxes = None
    if args.source == "mscxr":
        table = PB.prepare_ms_cxr(root, csv_path=args.csv)
        missing = prep.missing_images(list(table["path"].drop_duplicates()))
        if missing and not args.allow_missing_images:
            raise FileNotFoundError(
                f"{len(missing)} MS-CXR images are missing, first: {missing[:5]}; pass --allow-missing-images"
            )
        PB.write_box_table(table, out, "ms_cxr")
        return 0
    if args.source == "chexpert-test":
        prepared = PB.prepare_chexpert_test(root, test_csv=args.csv)
    elif args.source == "nih":
        prepared, boxes = PB.prepare_nih(root, seed=seed, mode=args.split or "auto")
    elif args.source == "padchest":
        prepared = PB.prepare_padchest(root, seed=seed, csv_path=args.csv, min_count=args.min_count)
    else:
        prepared, boxes = PB.prepare_vindr(root, seed=seed)
    prepared.extra["missing_images"] = prep.check_images(prepared, allow_missing=args.allow_missing_images)
    prep.write_prepared(prepared, out)
    if boxes is not None:
        PB.write_box_table(boxes, out, f"{prepared.name}_boxes")
    return 0
