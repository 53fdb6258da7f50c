"""The CheXpert 5x200 zero-shot set: a seeded draw of 200 candidates per competition task, reports joined by
``Path``, with the seed and a sha256 of the path list recorded; the release's CSV is accepted as well.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd

from gloria.data.chexpert import COMPETITION_TASKS, patient_id, select_5x200_candidates, study_key
from gloria.data.csv_reports import normalise_report, require_columns

log = logging.getLogger(__name__)

REPORT_COLUMN = "Report Impression"
RELEASE_SEED = 6  # the release's package seeded NumPy's global generator with 6 at import


@dataclass
class FiveBy200:
    """The drawn set: ``frame`` (Path, task, labels, report when given), the seed used and the checksum."""

    frame: pd.DataFrame
    seed: int | None
    paths_sha256: str

    @property
    def studies(self) -> set[str]:
        """``patientNNNNN/studyM`` keys of the drawn images (remove all their views from training)."""
        return {study_key(p) for p in self.frame["Path"]}

    @property
    def patients(self) -> set[str]:
        """``patientNNNNN`` ids of the drawn images: every study of theirs leaves pretraining (no leak)."""
        return {patient_id(p) for p in self.frame["Path"]}


def patient_key(path: str) -> str:
    """The patient an image path belongs to: its ``patientNNNNN`` component (CheXpert layout), else the
    path itself (one image, one patient)."""
    try:
        return patient_id(path)
    except ValueError:
        return str(PurePosixPath(path))


def evaluation_patients(csv_path: str | Path) -> set[str]:
    """Patient keys of an evaluation CSV's ``Path`` column (a 5x200-style set, or any list of images)."""
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise FileNotFoundError(f"evaluation CSV to exclude from training not found: {csv_path}")
    frame = pd.read_csv(csv_path, dtype=str, keep_default_na=False)
    require_columns(frame, ("Path",), csv_path)
    return {patient_key(p) for p in frame["Path"]}


def without_patients(frame: pd.DataFrame, path_column: str, patients: set[str]) -> pd.DataFrame:
    """The rows of ``frame`` whose image (``path_column``) belongs to none of ``patients``."""
    keep = [patient_key(str(p)) not in patients for p in frame[path_column]]
    return frame[keep]


def paths_checksum(paths: pd.Series) -> str:
    """sha256 of the paths in set order (task order, then draw order), one per line."""
    return hashlib.sha256("\n".join(str(p) for p in paths).encode("utf-8")).hexdigest()


def build_5x200(
    frame: pd.DataFrame,
    reports: pd.DataFrame | None = None,
    *,
    n: int = 200,
    seed: int = RELEASE_SEED,
) -> FiveBy200:
    """Draw ``n`` candidates per competition task (in competition order) from a CheXpert ``train.csv`` frame.

    One ``numpy.random.RandomState(seed)`` feeds pandas ``sample(n=n)`` task after task -- the same stream
    as the release's unseeded ``sample`` after its import-time ``np.random.seed(6)`` when nothing else drew
    first (that it matches the release's file can only be checked against that file). With ``reports``
    (``Path`` + ``Report Impression``), candidates without a non-empty report are dropped before the draw
    and the report is joined by ``Path``. Fewer than ``n`` candidates for a task raises ValueError.
    """
    if n <= 0:
        raise ValueError(f"n must be positive, got {n}")
    candidates = select_5x200_candidates(frame)
    if reports is not None:
        require_columns(reports, ("Path", REPORT_COLUMN), "reports frame")
        texts = reports.drop_duplicates("Path").set_index("Path")[REPORT_COLUMN].map(normalise_report)
        candidates = candidates.assign(**{REPORT_COLUMN: candidates["Path"].map(texts).fillna("")})
        has_report = candidates[REPORT_COLUMN] != ""
        log.info("5x200: %d candidates without a report dropped", int((~has_report).sum()))
        candidates = candidates[has_report]
    rng = np.random.RandomState(seed)
    parts = []
    for task in COMPETITION_TASKS:
        pool = candidates[candidates["task"] == task]
        if len(pool) < n:
            raise ValueError(f"5x200: task {task!r} has {len(pool)} candidates, fewer than n={n}")
        parts.append(pool.sample(n=n, random_state=rng))
    drawn = pd.concat(parts).reset_index(drop=True)
    return FiveBy200(frame=drawn, seed=seed, paths_sha256=paths_checksum(drawn["Path"]))


def read_5x200_csv(csv_path: str | Path) -> FiveBy200:
    """Read a 5x200 CSV: ours (``Path``, ``task``) or the release's (``Path`` + the five task columns).

    A row without a ``task`` gets the single competition task that is 1; zero or several raise ValueError
    naming the file and row.
    """
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise FileNotFoundError(
            f"5x200 CSV not found: {csv_path}; create it with `gloria prepare chexpert5x200 --root "
            "CheXpert-v1.0` or put the release's chexpert_5x200.csv there"
        )
    frame = pd.read_csv(csv_path)
    require_columns(frame, ("Path",), csv_path)
    if "task" not in frame.columns:
        require_columns(frame, COMPETITION_TASKS, csv_path)
        positives = frame[list(COMPETITION_TASKS)].apply(pd.to_numeric, errors="coerce").eq(1.0)
        counts = positives.sum(axis=1)
        bad = np.flatnonzero((counts != 1).to_numpy())
        if len(bad):
            raise ValueError(
                f"{csv_path}: row {int(bad[0]) + 2} has {int(counts.iloc[bad[0]])} positive competition "
                "tasks; exactly one expected"
            )
        frame["task"] = positives.idxmax(axis=1)
    unknown = sorted(set(frame["task"]) - set(COMPETITION_TASKS))
    if unknown:
        raise ValueError(f"{csv_path}: unknown task(s) {unknown}")
    return FiveBy200(frame=frame, seed=None, paths_sha256=paths_checksum(frame["Path"]))
