"""``gloria prepare`` for the benchmark data sets: CheXpert test labels, NIH ChestX-ray14, PadChest,
VinDr-CXR, MS-CXR, and the RSNA box / SIIM mask tables, as split tables (``Prepared``) plus phrase-box
tables in the MS-CXR format (``gloria.data.phrase_boxes``) with a manifest.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pandas as pd

from gloria.data import chexpert, nih, padchest, siim, vindr
from gloria.data.manifest import table_manifest, write_json_atomic
from gloria.data.phrase_boxes import MS_CXR_COLUMNS, boxes_in_range, read_phrase_boxes, write_csv_atomic
from gloria.data.prepare import Prepared
from gloria.data.records import boxes_from_json
from gloria.data.splits import DEFAULT_FRACTIONS, assign_patient_splits

log = logging.getLogger(__name__)

CHEXPERT_TEST_CSV = "test_labels.csv"
MS_CXR_CSV = "MS_CXR_Local_Alignment_v1.0.0.csv"
RSNA_PHRASE = "lung opacity concerning for pneumonia"


def write_box_table(frame: pd.DataFrame, out: str | Path, name: str) -> dict[str, Any]:
    """``<out>/<name>.csv`` (MS-CXR columns first) and ``<out>/<name>_manifest.json`` (returned)."""
    path = write_csv_atomic(frame, Path(out) / f"{name}.csv", [*MS_CXR_COLUMNS, "path"])
    manifest: dict[str, Any] = table_manifest(path, "dicom_id")
    known = frame.dropna(subset=["image_width", "image_height"])
    manifest.update(
        {
            "boxes": int(frame["x"].notna().sum()),
            "masks": int(frame["mask_rle"].notna().sum()) if "mask_rle" in frame.columns else 0,
            "images": int(frame["dicom_id"].nunique()),
            "categories": {str(k): int(v) for k, v in frame["category"].value_counts().sort_index().items()},
            "boxes_in_range": boxes_in_range(known.dropna(subset=["x"])) if len(known) else None,
            "unknown_image_size": int(len(frame) - len(known)),
        }
    )
    write_json_atomic(manifest, Path(out) / f"{name}_manifest.json")
    log.info("wrote %s: %d boxes on %d images", path, manifest["boxes"], manifest["images"])
    return manifest


def prepare_chexpert_test(root: Path, *, test_csv: Path | None = None) -> Prepared:
    """The CheXpert test set's labels (``test_labels.csv``: Path + the 14 labels, radiologist consensus 0/1)
    as ``test`` and Stanford's ``valid.csv`` (when present) as ``valid``, where zero-shot thresholds are
    chosen. Paths with or without the dataset folder (``test/patient64741/...``) are accepted."""
    test_csv = test_csv or root / CHEXPERT_TEST_CSV
    if not test_csv.is_file():
        raise FileNotFoundError(f"CheXpert test labels not found: {test_csv} (pass --csv)")
    test = pd.read_csv(test_csv, dtype={"Path": str})
    chexpert.require_columns(test, ("Path", *chexpert.CHEXPERT_LABELS), test_csv)
    for label in chexpert.CHEXPERT_LABELS:
        values = pd.to_numeric(test[label], errors="coerce")
        bad = values.notna() & ~values.isin([0.0, 1.0, -1.0]) | values.isna() & test[label].notna()
        if bad.any():
            row = int(bad.to_numpy().nonzero()[0][0])
            raise ValueError(
                f"{test_csv}: row {row + 2} column {label!r}: {test[label].iloc[row]!r} is not 1/0/-1"
            )
        test[label] = values
    test["split"] = "test"
    parts = [test]
    if (root / "valid.csv").is_file():
        parts.append(chexpert.read_chexpert_csv(root / "valid.csv").assign(split="valid"))
    frame = pd.concat(parts, ignore_index=True)

    def resolve(p: str) -> str:
        first = Path(p).parts[0]
        return str(root / p) if first in ("test", "valid", "train") else str(chexpert.image_path(root, p))

    frame["path"] = [resolve(p) for p in frame["Path"]]
    frame["patient_id"] = [chexpert.patient_id(p) for p in frame["Path"]]
    return Prepared("chexpert_test", frame, "Path", chexpert.CHEXPERT_LABELS)


def prepare_nih(root: Path, *, seed: int, mode: str = "auto") -> tuple[Prepared, pd.DataFrame | None]:
    """Entries split by the official lists (``mode`` official, or auto when both are in ``root``) or by
    patient; the box table from ``BBox_List_2017.csv`` when present."""
    entries = nih.read_entries(nih.find_entries(root))
    official = all((root / f).is_file() for f in nih.OFFICIAL_LISTS)
    if mode == "official" and not official:
        raise FileNotFoundError(f"--split official needs {list(nih.OFFICIAL_LISTS)} in {root}")
    use_official = official and mode in ("auto", "official")
    entries["split"] = (
        nih.official_split(entries, root, seed=seed)
        if use_official
        else nih.patient_split(entries, seed=seed)
    )
    entries["path"] = nih.image_paths(root, entries["Image Index"])
    entries["patient_id"] = entries["Patient ID"]
    boxes = None
    box_csv = next(iter(sorted(root.glob("BBox_List_2017.csv*"))), None)
    if box_csv is not None:
        boxes = nih.read_boxes(box_csv, entries)
        paths = dict(zip(entries["Image Index"], entries["path"]))
        boxes["path"] = boxes["dicom_id"].map(paths)
        boxes["split"] = boxes["dicom_id"].map(dict(zip(entries["Image Index"], entries["split"])))
    prepared = Prepared(
        "nih",
        entries,
        "Image Index",
        (*nih.NIH_FINDINGS, "No Finding"),
        extra={"seed": seed, "split_mode": "official" if use_official else "patient"},
    )
    return prepared, boxes


def prepare_padchest(root: Path, *, seed: int, csv_path: Path | None = None, min_count: int = 50) -> Prepared:
    """PadChest images split by patient (seeded), a 0/1 column per label on >= ``min_count`` images."""
    csv_path = csv_path or next(
        iter(sorted(root.glob("PADCHEST_chest_x_ray_images_labels_160K*.csv*"))), None
    )
    if csv_path is None:
        raise FileNotFoundError(f"no PADCHEST_chest_x_ray_images_labels_160K*.csv in {root} (pass --csv)")
    frame, labels = padchest.read_padchest(csv_path, min_count=min_count)
    frame["patient_id"] = frame["PatientID"]
    frame["split"] = assign_patient_splits(frame, "patient_id", DEFAULT_FRACTIONS, seed=seed)
    frame["path"] = [str(root / str(d) / str(i)) for d, i in zip(frame["ImageDir"], frame["ImageID"])]
    return Prepared(
        "padchest",
        frame,
        "ImageID",
        tuple(labels),
        dropped={"no_labels": int(frame.attrs.get("dropped_unlabelled", 0))},
        extra={"seed": seed, "min_count": min_count},
    )


def _dicom_shapes(paths: dict[str, Path]) -> dict[str, tuple[int, int]]:
    return {k: siim.dicom_shape(p) for k, p in paths.items() if p.is_file()}


def prepare_vindr(root: Path, *, seed: int) -> tuple[Prepared, pd.DataFrame]:
    """Per-image labels (any radiologist) split by image (seeded; VinDr has no patient ids) and every
    radiologist's boxes (``rad_id`` kept), image sizes from the DICOM headers in ``train/`` when present."""
    frame = vindr.read_vindr(next(iter(sorted(root.glob("train.csv*"))), root / "train.csv"))
    labels = vindr.image_labels(frame)
    labels["patient_id"] = labels["image_id"]
    labels["split"] = assign_patient_splits(labels, "patient_id", DEFAULT_FRACTIONS, seed=seed)
    paths = {i: root / "train" / f"{i}.dicom" for i in labels["image_id"]}
    labels["path"] = [str(paths[i]) for i in labels["image_id"]]
    boxes = vindr.box_table(frame, _dicom_shapes(paths))
    boxes["path"] = boxes["dicom_id"].map({k: str(v) for k, v in paths.items()})
    boxes["split"] = boxes["dicom_id"].map(dict(zip(labels["image_id"], labels["split"])))
    classes = tuple(c for c in labels.columns if c not in ("image_id", "patient_id", "split", "path"))
    return Prepared("vindr", labels, "image_id", classes, extra={"seed": seed}), boxes


def prepare_ms_cxr(root: Path, *, csv_path: Path | None = None) -> pd.DataFrame:
    """MS-CXR's phrase boxes with each ``path`` (MIMIC-CXR-JPG ``files/...``) resolved against ``root``."""
    csv_path = csv_path or root / MS_CXR_CSV
    frame = read_phrase_boxes(csv_path)
    frame["path"] = [p if Path(p).is_absolute() else str(root / p) for p in frame["path"].astype(str)]
    return frame


def rsna_box_table(prepared: Prepared) -> pd.DataFrame:
    """Every box of a prepared RSNA frame in the MS-CXR format (size from the DICOM header, else 1024)."""
    rows = []
    for pid, boxes, path, split in prepared.frame[["patientId", "boxes", "path", "split"]].itertuples(
        index=False
    ):
        parsed = boxes_from_json(str(boxes), where=f"patientId {pid}")
        if not parsed:
            continue
        H, W = siim.dicom_shape(path) if Path(path).is_file() else (1024, 1024)
        for x, y, w, h in parsed:
            box = {"x": x, "y": y, "w": w, "h": h, "image_width": W, "image_height": H}
            rows.append({"dicom_id": pid, "category": "Pneumonia", "label_text": RSNA_PHRASE, **box})
            rows[-1].update(path=path, split=split)
    return pd.DataFrame(rows, columns=[*MS_CXR_COLUMNS, "path", "split"])


def siim_mask_table(prepared: Prepared) -> pd.DataFrame:
    """Every pneumothorax region of a prepared SIIM frame as a ``mask_rle`` row (size from its header)."""
    rows = []
    columns = ["ImageId", "rles", "path", "split", "height", "width"]
    for image_id, rles, path, split, H, W in prepared.frame[columns].itertuples(index=False):
        for rle in siim.split_rles(str(rles)):
            size = {"image_width": W, "image_height": H, "path": path, "split": split, "mask_rle": rle}
            rows.append(
                {"dicom_id": image_id, "category": "Pneumothorax", "label_text": "pneumothorax", **size}
            )
    return pd.DataFrame(rows, columns=[*MS_CXR_COLUMNS, "path", "split", "mask_rle"])


__all__ = [
    "prepare_chexpert_test",
    "prepare_ms_cxr",
    "prepare_nih",
    "prepare_padchest",
    "prepare_vindr",
    "rsna_box_table",
    "siim_mask_table",
    "write_box_table",
]
