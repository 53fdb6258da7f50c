"""CheXpert (``CheXpert-v1.0/train.csv``, ``valid.csv``): labels, uncertain-label policies, frontal filter,
patient-level splits and the 5x200 zero-shot candidates (the seeded draw is in ``chexpert_5x200.py``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Literal

import numpy as np
import pandas as pd

from gloria.constants import CHEXPERT_COMPETITION_TASKS, CHEXPERT_TASKS, CHEXPERT_UNCERTAIN_MAPPINGS
from gloria.data.csv_reports import require_columns
from gloria.data.records import LabelledImageRecord
from gloria.data.splits import assign_patient_splits

log = logging.getLogger(__name__)

# The 14 label columns in the order of the Stanford release (files may order them differently: we go by name)
# and the competition tasks, from gloria.constants.
CHEXPERT_LABELS: tuple[str, ...] = tuple(CHEXPERT_TASKS)
COMPETITION_TASKS: tuple[str, ...] = tuple(CHEXPERT_COMPETITION_TASKS)
# The release's per-task mapping of uncertain (-1) labels (CheXpert paper): U-Ones / U-Zeros.
RELEASE_UNCERTAIN: Mapping[str, float] = {k: float(v) for k, v in CHEXPERT_UNCERTAIN_MAPPINGS.items()}
UncertainPolicy = Literal["release", "zeros", "ones", "ignore"]
UNCERTAIN_POLICIES: tuple[str, ...] = ("release", "zeros", "ones", "ignore")
REQUIRED_COLUMNS: tuple[str, ...] = ("Path", "Frontal/Lateral", *CHEXPERT_LABELS)


def read_chexpert_csv(csv_path: str | Path) -> pd.DataFrame:
    """Read a CheXpert ``train.csv``/``valid.csv`` (plain or ``.gz``); labels as float (blank -> NaN).

    Raises FileNotFoundError for a missing file, ValueError naming the file and the missing columns, or the
    row and column of a label value outside {1, 0, -1, blank}.
    """
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise FileNotFoundError(f"CheXpert CSV not found: {csv_path}")
    frame = pd.read_csv(csv_path, dtype={"Path": str, "Frontal/Lateral": str, "AP/PA": str})
    require_columns(frame, REQUIRED_COLUMNS, csv_path)
    for label in CHEXPERT_LABELS:
        values = pd.to_numeric(frame[label], errors="coerce")
        bad = values.isna() & frame[label].notna() | ~values.isin([1.0, 0.0, -1.0]) & values.notna()
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise ValueError(
                f"{csv_path}: row {row + 2} column {label!r}: value {frame[label].iloc[row]!r} "
                "is not 1, 0, -1 or blank"
            )
        frame[label] = values.astype(float)
    return frame


def patient_id(path: str) -> str:
    """The ``patientNNNNN`` component of a CheXpert ``Path``; ValueError when there is none."""
    for part in PurePosixPath(path).parts:
        if part.startswith("patient"):
            return part
    raise ValueError(f"CheXpert path {path!r} has no patientNNNNN component")


def study_key(path: str) -> str:
    """``patientNNNNN/studyM`` of a CheXpert ``Path`` (all views of one study share it)."""
    parts = PurePosixPath(path).parts
    for i, part in enumerate(parts[:-1]):
        if part.startswith("patient"):
            return f"{part}/{parts[i + 1]}"
    raise ValueError(f"CheXpert path {path!r} has no patientNNNNN/studyM components")


def image_path(root: str | Path, path: str) -> Path:
    """Resolve a CSV ``Path`` (relative to the folder *above* the dataset root) against ``root``.

    ``CheXpert-v1.0/train/...`` with ``root=/data/CheXpert-v1.0`` -> ``/data/CheXpert-v1.0/train/...``; the
    first component is replaced by ``root`` whatever its name (``CheXpert-v1.0-small`` works too).
    """
    parts = PurePosixPath(path).parts
    if len(parts) < 2:
        raise ValueError(f"CheXpert path {path!r} should start with the dataset folder name")
    return Path(root).joinpath(*parts[1:])


def frontal_only(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows whose ``Frontal/Lateral`` is ``Frontal``."""
    return frame[frame["Frontal/Lateral"].astype(str).str.strip() == "Frontal"]


def apply_uncertain_policy(
    frame: pd.DataFrame, policy: UncertainPolicy = "release", tasks: Sequence[str] = COMPETITION_TASKS
) -> pd.DataFrame:
    """Targets for ``tasks``: blank -> 0, and uncertain (-1) mapped by ``policy``.

    ``release``: U-Ones for Atelectasis, Edema, Pleural Effusion, U-Zeros for Cardiomegaly, Consolidation
    (other tasks: U-Zeros); ``zeros``/``ones``: every -1 to 0/1; ``ignore``: -1 -> NaN (mask it in the loss).
    """
    if policy not in UNCERTAIN_POLICIES:
        raise ValueError(f"uncertain policy {policy!r} is not one of {UNCERTAIN_POLICIES}")
    require_columns(frame, tasks, "CheXpert frame")
    out = frame[list(tasks)].astype(float).fillna(0.0)
    for task in tasks:
        if policy == "release":
            value = RELEASE_UNCERTAIN.get(task, 0.0)
        elif policy == "zeros":
            value = 0.0
        elif policy == "ones":
            value = 1.0
        else:
            value = float("nan")
        out[task] = out[task].replace(-1.0, value)
    return out


def split_by_patient(
    frame: pd.DataFrame,
    *,
    valid_fraction: float = 0.1,
    seed: int = 0,
    exclude_studies: Iterable[str] = (),
    exclude_patients: Iterable[str] = (),
) -> pd.DataFrame:
    """Copy of ``frame`` with ``patient_id`` and ``split`` (train/valid) columns, no patient in both.

    Rows of the studies in ``exclude_studies`` (``patientNNNNN/studyM`` keys) and every row of the patients
    in ``exclude_patients`` (``patientNNNNN``, e.g. the 5x200 set's, so no other study of theirs stays in
    pretraining) are removed first, all views included. ``out.attrs["excluded_rows"]`` counts them.
    """
    if not 0.0 < valid_fraction < 1.0:
        raise ValueError(f"valid_fraction must be in (0, 1), got {valid_fraction}")
    out = frame.copy()
    out["patient_id"] = [patient_id(p) for p in out["Path"]]
    studies, patients = set(exclude_studies), set(exclude_patients)
    keep = ~out["patient_id"].isin(patients)
    if studies:
        keep &= ~pd.Series([study_key(p) in studies for p in out["Path"]], index=out.index)
    removed = int((~keep).sum())
    if studies or patients:
        log.info(
            "removing %d rows of %d excluded studies and %d excluded patients",
            removed,
            len(studies),
            len(patients),
        )
    out = out[keep].copy()
    fractions = {"train": 1.0 - valid_fraction, "valid": valid_fraction}
    out["split"] = assign_patient_splits(out, "patient_id", fractions, seed=seed)
    out.attrs["excluded_rows"] = removed
    return out


# The 12 columns besides the task that must be 0 for a 5x200 candidate (No Finding is not looked at).
FIVE_BY_200_OTHERS: tuple[str, ...] = (
    *COMPETITION_TASKS,
    "Enlarged Cardiomediastinum",
    "Lung Lesion",
    "Lung Opacity",
    "Pneumonia",
    "Pneumothorax",
    "Pleural Other",
    "Fracture",
    "Support Devices",
)


def select_5x200_candidates(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows of a CheXpert ``train.csv`` frame eligible for the 5x200 set, with a ``task`` column.

    Frontal only, blanks as 0; for each competition task (in competition order) the rows where the task is
    1 and the 12 other columns of :data:`FIVE_BY_200_OTHERS` are 0, so a -1 in any of the 13 excludes the
    row. No Finding is ignored. The result is concatenated in task order, original index kept.
    """
    require_columns(frame, ("Path", "Frontal/Lateral", *FIVE_BY_200_OTHERS), "CheXpert frame")
    frontal = frontal_only(frame)
    values = frontal[list(FIVE_BY_200_OTHERS)].apply(pd.to_numeric, errors="coerce").fillna(0.0)
    parts = []
    for task in COMPETITION_TASKS:
        others = [c for c in FIVE_BY_200_OTHERS if c != task]
        eligible = (values[task] == 1.0) & (values[others] == 0.0).all(axis=1)
        part = frontal[eligible].copy()
        part["task"] = task
        parts.append(part)
    return pd.concat(parts)


def labelled_records(
    frame: pd.DataFrame,
    *,
    policy: UncertainPolicy = "release",
    tasks: Sequence[str] = COMPETITION_TASKS,
) -> list[LabelledImageRecord]:
    """Classification records from a prepared CheXpert frame (``path``, ``split``, ``patient_id``)."""
    require_columns(frame, ("path", "split", "patient_id", *tasks), "CheXpert frame")
    targets = apply_uncertain_policy(frame, policy, tasks)
    views = (
        frame["Frontal/Lateral"] if "Frontal/Lateral" in frame.columns else pd.Series("", index=frame.index)
    )
    return [
        LabelledImageRecord(
            path=Path(str(path)),
            labels={task: float(value) for task, value in zip(tasks, row)},
            split=str(split),
            patient_id=str(patient),
            view=str(view),
        )
        for path, split, patient, view, row in zip(
            frame["path"], frame["split"], frame["patient_id"], views, targets.itertuples(index=False)
        )
    ]
