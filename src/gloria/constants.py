"""CheXpert names, label policies and the zero-shot prompt vocabulary (datasets.md, method.md section 8).

``CHEXPERT_CLASS_PROMPTS``, ``CHEXPERT_DATA_DIR`` and ``CHEXPERT_5x200`` are computed on access (module
``__getattr__``): the vocabulary comes from ``assets/prompts.yaml``, the paths follow ``GLORIA_DATA_ROOT``.
"""

from __future__ import annotations

import functools
import os
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:
    import pandas as pd

DATA_ROOT_ENV = "GLORIA_DATA_ROOT"
DEFAULT_DATA_ROOT = "./data"
CHEXPERT_DIRNAME = "CheXpert-v1.0"
CHEXPERT_5x200_FILENAME = "chexpert_5x200.csv"

# Lists (as in the release) so that ``frame[CHEXPERT_COMPETITION_TASKS]`` selects columns in pandas.
# The 14 CheXpert labels in the column order of train.csv / valid.csv.
CHEXPERT_TASKS: list[str] = [
    "No Finding",
    "Enlarged Cardiomediastinum",
    "Cardiomegaly",
    "Lung Lesion",
    "Lung Opacity",
    "Edema",
    "Consolidation",
    "Pneumonia",
    "Atelectasis",
    "Pneumothorax",
    "Pleural Effusion",
    "Pleural Other",
    "Fracture",
    "Support Devices",
]

# The five competition tasks, in the competition (and 5x200) order.
CHEXPERT_COMPETITION_TASKS: list[str] = [
    "Atelectasis",
    "Cardiomegaly",
    "Consolidation",
    "Edema",
    "Pleural Effusion",
]

# The release's uncertain-label policy (CheXpert paper): value an uncertain -1 becomes, per competition task.
# U-Ones: -1 -> 1 (Atelectasis, Edema, Pleural Effusion); U-Zeros: -1 -> 0 (Cardiomegaly, Consolidation).
CHEXPERT_UNCERTAIN_MAPPINGS: dict[str, int] = {
    "Atelectasis": 1,
    "Cardiomegaly": 0,
    "Consolidation": 0,
    "Edema": 1,
    "Pleural Effusion": 1,
}


@functools.cache
def _class_prompt_vocabulary() -> dict[str, dict[str, list[str]]]:
    text = resources.files("gloria").joinpath("assets/prompts.yaml").read_text(encoding="utf-8")
    data = yaml.safe_load(text)
    classes = data.get("classes") if isinstance(data, dict) else None
    if not isinstance(classes, dict):
        raise ValueError("gloria/assets/prompts.yaml: missing the 'classes' mapping")
    for name, parts in classes.items():
        if not isinstance(parts, dict) or len(parts) != 3:
            raise ValueError(f"gloria/assets/prompts.yaml: class {name!r} must have exactly three lists")
    return classes


def class_prompt_vocabulary() -> dict[str, dict[str, list[str]]]:
    """A fresh copy of the prompt vocabulary: {class: {part: [phrases]}} in the file's key order."""
    return {
        name: {part: list(items) for part, items in parts.items()}
        for name, parts in _class_prompt_vocabulary().items()
    }


def data_root() -> Path:
    """The data root: ``$GLORIA_DATA_ROOT`` when set, else ``./data`` (relative to the working directory)."""
    return Path(os.environ.get(DATA_ROOT_ENV) or DEFAULT_DATA_ROOT)


def chexpert_5x200_path() -> Path:
    """``<data root>/CheXpert-v1.0/chexpert_5x200.csv``, read at call time."""
    return data_root() / CHEXPERT_DIRNAME / CHEXPERT_5x200_FILENAME


def read_chexpert_5x200(path: str | Path | None = None) -> pd.DataFrame:
    """The 5x200 zero-shot CSV as a DataFrame (default: ``CHEXPERT_5x200``).

    When absent, the ``FileNotFoundError`` says how to create it or where to put the release's copy.
    """
    csv_path = Path(path) if path is not None else chexpert_5x200_path()
    if not csv_path.is_file():
        raise FileNotFoundError(
            f"CheXpert 5x200 CSV not found: {csv_path}. Create it from CheXpert's train.csv with "
            f"`gloria prepare chexpert5x200 --root {csv_path.parent}`, or put the release's "
            f"{CHEXPERT_5x200_FILENAME} at that path ({DATA_ROOT_ENV} sets the data root holding "
            f"{CHEXPERT_DIRNAME}/; now {data_root()})."
        )
    import pandas as pd  # deferred: importing gloria.constants stays cheap

    return pd.read_csv(csv_path)


def __getattr__(name: str) -> Any:
    if name == "CHEXPERT_CLASS_PROMPTS":
        return class_prompt_vocabulary()
    if name == "CHEXPERT_5x200":
        return str(chexpert_5x200_path())
    if name == "CHEXPERT_DATA_DIR":
        return str(data_root() / CHEXPERT_DIRNAME)
    if name == "DATA_BASE_DIR":
        return str(data_root())
    raise AttributeError(f"module 'gloria.constants' has no attribute {name!r}")
