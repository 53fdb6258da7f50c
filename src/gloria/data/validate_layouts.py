"""The CSVs ``gloria validate-data`` reads, turned into one table of image paths, reports, splits and
patients, with paths resolved the way training resolves them.

Without flags the layout is told by the header: a prepared split CSV (``path``, ``report``, ``split``,
``patient_id``, ``view``: what ``gloria prepare`` writes), a CheXpert-style CSV (``Path`` whose first part is
the dataset folder, optional ``Report Impression``, ``Split``, ``Frontal/Lateral``: ``train.csv``,
``valid.csv``, ``master_updated.csv``, ``chexpert_5x200.csv``), RSNA labels (``patientId``: one DICOM per
patient under ``stage_2_train_images``) or SIIM RLEs (``ImageId``: DICOMs under ``dicom-images-train``).
From an experiment config the data section's CSVs, columns, ``root`` and ``image_root`` are used instead.
A column named explicitly (a flag or the config) and absent from the file is an error; an unknown split
value, an empty file and a header without rows are errors naming the file (and line).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import pandas as pd

from gloria.data import chexpert, rsna, siim
from gloria.data.csv_reports import SPLIT_ALIASES
from gloria.data.validate import LINE_COLUMN, SOURCE_COLUMN, Issue

CANONICAL = ("path", "report", "split", "patient_id", "view")  # the columns of the returned table
ID_COLUMN = "_id"  # the id column's values, when one is named


@dataclass(frozen=True)
class Roles:
    """Which column of a CSV plays which role (None: none). ``required`` lists roles that must exist."""

    path: str | None = None
    report: str | None = None
    split: str | None = None
    patient: str | None = None
    view: str | None = None
    id: str | None = None  # checked for duplicates (default: the resolved image path)
    required: frozenset[str] = frozenset()
    image_root: Path | None = None  # relative paths are joined to it (default: the layout's rule)
    dataset_root: Path | None = None  # CheXpert paths: the first part replaced by it; RSNA/SIIM: image base


@dataclass
class LoadedCsv:
    frame: pd.DataFrame  # CANONICAL columns present in the file, plus SOURCE_COLUMN / LINE_COLUMN
    layout: str
    issues: list[Issue] = field(default_factory=list)


def read_csv_table(path: Path) -> pd.DataFrame:
    """All cells as strings; an empty file or a broken one raises ``ValueError`` naming it."""
    if not path.is_file():
        raise FileNotFoundError(f"CSV not found: {path}")
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError as err:
        raise ValueError(f"{path}: empty file (no header line)") from err
    except (pd.errors.ParserError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not a readable CSV ({err})") from err
    frame.columns = [str(c).strip() for c in frame.columns]
    return frame


def _chexpert_resolver(csv: Path, roles: Roles, first: str | None) -> Callable[[str], str]:
    if roles.image_root is not None:
        base = roles.image_root
        return lambda p: p if Path(p).is_absolute() else str(base / p)
    if roles.dataset_root is not None:
        root = roles.dataset_root
        return lambda p: p if Path(p).is_absolute() else str(chexpert.image_path(root, p))
    if first is not None and PurePosixPath(first).parts[:1] == (csv.parent.name,):
        return lambda p: p if Path(p).is_absolute() else str(chexpert.image_path(csv.parent, p))
    return lambda p: p if Path(p).is_absolute() else str(csv.parent / p)


def _patient_of_chexpert(path: str) -> str:
    try:
        return chexpert.patient_id(path)
    except ValueError:
        return path


def detect_roles(columns: list[str], explicit: Roles) -> tuple[str, Roles]:
    """The layout's name and its roles, explicit ones (flags, config) taking precedence."""
    has = set(columns)

    def pick(given: str | None, default: str | None) -> str | None:
        return given if given is not None else (default if default in has else None)

    e = explicit
    if e.path is not None and e.path not in ("patientId", "ImageId"):
        layout = "chexpert" if e.path == "Path" else "prepared"
    elif "path" in has:
        layout = "prepared"
    elif "Path" in has:
        layout = "chexpert"
    elif "patientId" in has:
        layout = "rsna"
    elif "ImageId" in has:
        layout = "siim"
    else:
        return "unknown", e
    defaults = {
        "prepared": ("path", "report", "split", "patient_id", "view"),
        "chexpert": ("Path", "Report Impression", "Split", None, "Frontal/Lateral"),
        "rsna": ("patientId", None, "split", "patientId", None),
        "siim": ("ImageId", None, "split", None, None),
    }[layout]
    roles = Roles(
        path=e.path or defaults[0],
        report=pick(e.report, defaults[1]),
        split=pick(e.split, defaults[2]),
        patient=pick(e.patient, defaults[3]),
        view=pick(e.view, defaults[4]),
        id=e.id,
        required=e.required,
        image_root=e.image_root,
        dataset_root=e.dataset_root,
    )
    return layout, roles


def load_csv_for_validation(csv: Path, explicit: Roles = Roles()) -> LoadedCsv:
    """Read ``csv`` into the canonical table (see the module text) and the issues found while reading."""
    frame = read_csv_table(csv)
    layout, roles = detect_roles(list(frame.columns), explicit)
    issues: list[Issue] = []
    if layout == "unknown":
        raise ValueError(
            f"{csv}: no image column (looked for 'path', 'Path', 'patientId', 'ImageId'); found "
            f"{list(frame.columns)}; name it with --path-col"
        )
    wanted = {"path": roles.path, "report": roles.report, "split": roles.split, "patient": roles.patient,
              "view": roles.view, "id": roles.id}  # fmt: skip
    needed = roles.required | {"path"}
    missing = [f"{csv}: {role} column {col!r}" for role, col in wanted.items()
               if col is not None and col not in frame.columns and role in needed]  # fmt: skip
    if missing:
        issues.append(Issue("missing column", "error", tuple(missing)))
        return LoadedCsv(pd.DataFrame(columns=[SOURCE_COLUMN, LINE_COLUMN]), layout, issues)
    if roles.report is None and layout == "prepared":
        issues.append(Issue("no report column (reports not checked)", "warning", (str(csv),)))
    if frame.empty:
        issues.append(Issue("no data rows (header only)", "error", (str(csv),)))
    out = pd.DataFrame(index=frame.index)
    out[LINE_COLUMN] = range(2, len(frame) + 2)
    out[SOURCE_COLUMN] = str(csv)
    ids = frame[str(roles.path)].astype(str)
    if layout == "rsna":
        base = roles.dataset_root or csv.parent
        keep = ~ids.duplicated()  # one row per box: one image per patient
        frame, out, ids = frame[keep], out[keep], ids[keep]
        out["path"] = [str(rsna.image_path(base, i)) for i in ids]
    elif layout == "siim":
        base = roles.dataset_root or csv.parent
        keep = ~ids.duplicated()
        frame, out, ids = frame[keep], out[keep], ids[keep]
        try:
            found = siim.find_dicoms(base)
        except FileNotFoundError:
            found = {}
        out["path"] = [str(found.get(i, base / siim.IMAGE_DIR / f"{i}.dcm")) for i in ids]
    elif layout == "chexpert":
        resolve = _chexpert_resolver(csv, roles, ids.iloc[0] if len(ids) else None)
        out["path"] = [resolve(p) for p in ids]
        if roles.patient is None:
            out["patient_id"] = [_patient_of_chexpert(p) for p in ids]
    else:
        base = roles.image_root or csv.parent
        out["path"] = [p if Path(p).is_absolute() else str(base / p) for p in ids]
    if roles.report is not None:
        out["report"] = frame[roles.report]
    if roles.patient is not None:
        out["patient_id"] = frame[roles.patient].astype(str)
    if roles.view is not None:
        out["view"] = frame[roles.view]
    if roles.id is not None:
        out[ID_COLUMN] = frame[roles.id]
    if roles.split is not None:
        raw = frame[roles.split].astype(str)
        names = raw.str.strip().str.lower().map(SPLIT_ALIASES)
        bad = names.isna().to_numpy()
        if bad.any():
            items = tuple(
                f"{csv} line {line}: {value!r}" for line, value in zip(out[LINE_COLUMN][bad], raw[bad])
            )
            issues.append(
                Issue(f"unknown split value (not one of {sorted(set(SPLIT_ALIASES))})", "error", items)
            )
        out["split"] = names.fillna(raw)
    else:
        out["split"] = csv.stem
    return LoadedCsv(out.reset_index(drop=True), layout, issues)
