"""The evaluation set of zero-shot classification and retrieval: a 5x200-style CSV's images, class (task)
per row and report impression per row (the reader every command, the API and the demo use)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass
class EvalSet:
    """Rows of a 5x200-style CSV: image files, task per row, report impression per row (may be empty)."""

    paths: list[Path]
    tasks: list[str]
    texts: list[str]

    @property
    def classes(self) -> list[str]:
        """The tasks present, sorted (retrieval's class indices)."""
        return sorted(set(self.tasks))


def resolve_image_root(csv_path: str | Path, first: str | Path, image_root: str | Path | None) -> Path:
    """The folder a CSV's relative image paths start from: ``image_root`` when given, else the CSV's folder
    or the one above it (CheXpert paths start with ``CheXpert-v1.0/``), whichever holds ``first``."""
    if image_root is not None:
        return Path(image_root)
    csv_dir = Path(csv_path).resolve().parent
    return next((d for d in (csv_dir, csv_dir.parent) if (d / first).is_file()), csv_dir)


def read_eval_set(
    csv_path: str | Path, image_root: str | Path | None = None, *, min_classes: int = 1
) -> EvalSet:
    """Read ``Path`` / ``task`` (or the release's five task columns) / ``Report Impression``.

    ``Path`` is relative to ``image_root`` (see ``resolve_image_root``). Missing images, an empty CSV or
    fewer than ``min_classes`` classes raise errors naming the file.
    """
    from gloria.data.chexpert_5x200 import REPORT_COLUMN, read_5x200_csv

    frame = read_5x200_csv(csv_path).frame
    if frame.empty:
        raise ValueError(f"{csv_path}: no rows")
    root = resolve_image_root(csv_path, str(frame["Path"].iloc[0]), image_root)
    paths = [p if p.is_absolute() else root / p for p in map(Path, frame["Path"].astype(str))]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"{csv_path}: {len(missing)} image(s) not found, first {missing[0]}")
    texts = (
        frame[REPORT_COLUMN].fillna("").astype(str).tolist() if REPORT_COLUMN in frame else [""] * len(paths)
    )
    tasks = frame["task"].astype(str).tolist()
    if len(set(tasks)) < min_classes:
        raise ValueError(f"{csv_path}: {len(set(tasks))} class(es), at least {min_classes} needed")
    return EvalSet(paths, tasks, texts)
