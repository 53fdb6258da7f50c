"""How many CheXpert training rows the 5x200 set's patients keep when only the drawn studies leave.

Run: python scripts/measure_5x200_leak.py [--train-csv PATH] [--out bench/results/chexpert_5x200_leak.json]
Reads the real train.csv (default: torchxrayvision's copy, in place), draws the 5x200 set (seed 6), splits by
patient (seed 0, valid fraction 0.1) with the study-level and with the patient-level exclusion, and writes the
counts with the commit, torch version, threads and load average.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import os
import subprocess
from collections.abc import Sequence
from pathlib import Path

import torch

from gloria.data.chexpert import read_chexpert_csv, split_by_patient
from gloria.data.chexpert_5x200 import build_5x200

log = logging.getLogger("measure_5x200_leak")


def default_train_csv() -> Path:
    spec = importlib.util.find_spec("torchxrayvision")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("torchxrayvision is not installed: pass --train-csv")
    return Path(next(iter(spec.submodule_search_locations))) / "data" / "chexpert_train.csv.gz"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--train-csv", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=Path("bench/results/chexpert_5x200_leak.json"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    train_csv = args.train_csv or default_train_csv()
    frame = read_chexpert_csv(train_csv)
    drawn = build_5x200(frame, seed=6)
    patients = drawn.patients
    by_study = split_by_patient(frame, valid_fraction=0.1, seed=0, exclude_studies=drawn.studies)
    leaked = by_study[by_study["patient_id"].isin(patients)]
    by_patient = split_by_patient(
        frame, valid_fraction=0.1, seed=0, exclude_studies=drawn.studies, exclude_patients=patients
    )
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=False).stdout
    result = {
        "train_csv": train_csv.name,
        "rows": len(frame),
        "five_by_200_images": len(drawn.frame),
        "five_by_200_studies": len(drawn.studies),
        "five_by_200_patients": len(patients),
        "study_exclusion": {
            "rows_removed": int(by_study.attrs["excluded_rows"]),
            "rows_of_drawn_patients_left": {s: int((leaked["split"] == s).sum()) for s in ("train", "valid")},
        },
        "patient_exclusion": {
            "rows_removed": int(by_patient.attrs["excluded_rows"]),
            "rows_of_drawn_patients_left": int(by_patient["patient_id"].isin(patients).sum()),
        },
        "commit": commit.strip() or None,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "load_average": os.getloadavg()[0],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    log.info("%s", json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
