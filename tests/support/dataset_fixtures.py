"""Writers of small data sets in the exact real formats (CheXpert, MIMIC-CXR-JPG, RSNA, SIIM, a user CSV).

Each writer builds the real folder layout, file names, column names and quirks (SIIM's leading-space header
and `` -1`` negatives, RSNA's NaN boxes, CheXpert paths relative to the folder above the root) and returns
the dataset root. Images are tiny; DICOMs come from ``support.dicom_files.write_dicom``.
"""

from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np

from support.dicom_files import write_dicom

CHEXPERT_HEADER = [
    "Path", "Sex", "Age", "Frontal/Lateral", "AP/PA",
    "No Finding", "Enlarged Cardiomediastinum", "Cardiomegaly", "Lung Lesion", "Lung Opacity", "Edema",
    "Consolidation", "Pneumonia", "Atelectasis", "Pneumothorax", "Pleural Effusion", "Pleural Other",
    "Fracture", "Support Devices",
]  # fmt: skip
COMPETITION = ["Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Pleural Effusion"]


def gray_image(seed: int, height: int = 40, width: int = 32) -> np.ndarray:
    """A deterministic uint8 [H, W] test image (gradient plus noise)."""
    rng = np.random.default_rng(seed)
    base = np.linspace(0, 200, width)[None, :] + rng.integers(0, 50, size=(height, width))
    return np.clip(base, 0, 255).astype(np.uint8)


def write_jpeg(path: Path, seed: int, height: int = 40, width: int = 32) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), gray_image(seed, height, width)):
        raise OSError(f"could not write {path}")
    return path


def _fmt(value: float | None) -> str:
    return "" if value is None else f"{value:.1f}"


def chexpert_row(
    patient: int, study: int, view: int, *, frontal: bool = True, labels: dict[str, float] | None = None,
    folder: str = "CheXpert-v1.0", split: str = "train",
) -> list[str]:  # fmt: skip
    """One ``train.csv`` row; labels not given are blank."""
    kind = "frontal" if frontal else "lateral"
    path = f"{folder}/{split}/patient{patient:05d}/study{study}/view{view}_{kind}.jpg"
    values = labels or {}
    return [
        path, "Female", "60", "Frontal" if frontal else "Lateral", "AP" if frontal else "",
        *[_fmt(values.get(name)) for name in CHEXPERT_HEADER[5:]],
    ]  # fmt: skip


def write_chexpert(
    parent: Path, rows: list[list[str]], *, valid_rows: list[list[str]] | None = None, images: bool = True,
    folder: str = "CheXpert-v1.0",
) -> Path:  # fmt: skip
    """Write ``<parent>/<folder>/train.csv``, ``valid.csv`` and (``images``) the JPEGs; returns the root."""
    root = parent / folder
    root.mkdir(parents=True, exist_ok=True)
    for name, table in (("train.csv", rows), ("valid.csv", valid_rows or [])):
        with open(root / name, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(CHEXPERT_HEADER)
            writer.writerows(table)
        if images:
            for i, row in enumerate(table):
                write_jpeg(parent / row[0], seed=i)
    return root


def chexpert_5x200_rows(per_task: int, *, start_patient: int = 1) -> list[list[str]]:
    """``per_task`` clean candidates per competition task (plus, per task, a lateral view of the same
    study and a frontal row excluded by an uncertain other label)."""
    rows = []
    patient = start_patient
    for task in COMPETITION:
        for _ in range(per_task):
            rows.append(chexpert_row(patient, 1, 1, labels={task: 1.0, "No Finding": 0.0}))
            rows.append(chexpert_row(patient, 1, 2, frontal=False, labels={task: 1.0}))
            patient += 1
        rows.append(chexpert_row(patient, 1, 1, labels={task: 1.0, "Lung Opacity": -1.0}))
        patient += 1
    return rows


def write_reports_csv(path: Path, rows: list[list[str]], *, split: str = "train") -> Path:
    """The release's reports file roles (``master_updated.csv``): Path, Frontal/Lateral, Split, Report."""
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["Path", "Frontal/Lateral", "Split", "Report Impression"])
        for i, row in enumerate(rows):
            writer.writerow([row[0], row[3], split, f"Finding number {i}. Heart size is normal."])
    return path


MIMIC_REPORT = """                                 FINAL REPORT
 EXAMINATION:  CHEST (PA AND LAT)

 INDICATION:  ___F with cough  // eval for pneumonia

 TECHNIQUE:  Chest PA and lateral

 COMPARISON:  None.

 FINDINGS:

 There is no focal consolidation, pleural effusion or pneumothorax.  Heart
 size is normal.

 IMPRESSION:

 No acute cardiopulmonary process.
"""


def write_mimic(root: Path, studies: list[dict[str, object]]) -> Path:
    """MIMIC-CXR-JPG layout + the three 2.0.0 CSVs. Each study dict: ``subject`` (int), ``study`` (int),
    ``split`` (train/validate/test), ``views`` (list of ViewPosition), ``report`` (text, or None for no
    file), ``labels`` (dict, optional)."""
    label_names = CHEXPERT_HEADER[5:]
    meta, split, chex = [], [], []
    n = 0
    for item in studies:
        subject, study = int(str(item["subject"])), int(str(item["study"]))
        folder = root / "files" / f"p{str(subject)[:2]}" / f"p{subject}"
        for view in list(item["views"]):  # type: ignore[call-overload]
            dicom_id = f"{n:08x}-d{subject}"
            n += 1
            write_jpeg(folder / f"s{study}" / f"{dicom_id}.jpg", seed=n)
            meta.append([dicom_id, subject, study, "CHEST (PA AND LAT)", view, 40, 32, 21800506, 213014.531])
            split.append([dicom_id, study, subject, item["split"]])
        report = item.get("report")
        if report is not None:
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"s{study}.txt").write_text(str(report))
        labels = dict(item.get("labels") or {})  # type: ignore[call-overload]
        chex.append([subject, study, *[_fmt(labels.get(name)) for name in label_names]])
    tables = {
        "mimic-cxr-2.0.0-metadata.csv": (
            ["dicom_id", "subject_id", "study_id", "PerformedProcedureStepDescription", "ViewPosition",
             "Rows", "Columns", "StudyDate", "StudyTime"], meta),
        "mimic-cxr-2.0.0-split.csv": (["dicom_id", "study_id", "subject_id", "split"], split),
        "mimic-cxr-2.0.0-chexpert.csv": (["subject_id", "study_id", *label_names], chex),
    }  # fmt: skip
    for name, (header, table) in tables.items():
        with open(root / name, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(header)
            writer.writerows(table)
    return root


def rsna_patient_id(i: int) -> str:
    return f"{i:08x}-14fd-4e49-80ba-63a80b6bddd6"


def write_rsna(root: Path, n_patients: int, *, images: bool = True, size: int = 64) -> Path:
    """``stage_2_train_labels.csv`` (unsorted; every third patient positive with two boxes) and
    ``stage_2_train_images/<patientId>.dcm`` alternating 8-bit MONOCHROME2 / 12-bit MONOCHROME1."""
    root.mkdir(parents=True, exist_ok=True)
    rows: list[list[object]] = []
    for i in reversed(range(n_patients)):
        pid = rsna_patient_id(i)
        if i % 3 == 0:
            rows.append([pid, 10.0 + i, 20.0, 30.0, 40.0, 1])
            rows.append([pid, 5.0, 6.0, 7.0, 8.0, 1])
        else:
            rows.append([pid, "", "", "", "", 0])
        if images:
            pixels = gray_image(i, size, size)
            path = root / "stage_2_train_images" / f"{pid}.dcm"
            path.parent.mkdir(parents=True, exist_ok=True)
            if i % 2:
                write_dicom(path, (pixels.astype(np.uint16) * 16), photometric="MONOCHROME1", bits_stored=12)
            else:
                write_dicom(path, pixels)
    with open(root / "stage_2_train_labels.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["patientId", "x", "y", "width", "height", "Target"])
        writer.writerows(rows)
    return root


def siim_image_id(i: int) -> str:
    return f"1.2.276.0.7230010.3.1.4.8323329.{i}.1517875201.850819"


def write_siim(root: Path, rles: list[list[str]], *, images: bool = True, size: int = 32) -> Path:
    """``train-rle.csv`` with the real header ``ImageId, EncodedPixels`` and values written as `` <rle>``
    (negatives `` -1``), one row per region; DICOMs nested as
    ``dicom-images-train/<study uid>/<series uid>/<ImageId>.dcm`` (even: 16-bit MONOCHROME2, odd: 8-bit
    MONOCHROME1). ``rles[i]`` lists the regions of image i (empty: negative)."""
    root.mkdir(parents=True, exist_ok=True)
    with open(root / "train-rle.csv", "w", newline="") as handle:
        handle.write("ImageId, EncodedPixels\n")
        for i, regions in enumerate(rles):
            for rle in regions or ["-1"]:
                handle.write(f"{siim_image_id(i)}, {rle}\n")
    if images:
        for i in range(len(rles)):
            folder = root / "dicom-images-train" / f"1.2.276.0.{i}.2" / f"1.2.276.0.{i}.3"
            folder.mkdir(parents=True, exist_ok=True)
            pixels = gray_image(100 + i, size, size)
            if i % 2:
                write_dicom(folder / f"{siim_image_id(i)}.dcm", pixels, photometric="MONOCHROME1")
            else:
                write_dicom(folder / f"{siim_image_id(i)}.dcm", pixels.astype(np.uint16) * 257)
    return root


def write_user_csv(root: Path, n: int, *, empty_every: int = 0) -> Path:
    """``reports.csv`` with ``image`` and ``text`` columns plus a ``label`` column; JPEGs in ``images/``."""
    root.mkdir(parents=True, exist_ok=True)
    with open(root / "reports.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image", "text", "label", "patient"])
        for i in range(n):
            write_jpeg(root / "images" / f"img{i}.jpg", seed=i)
            text = "" if empty_every and i % empty_every == 0 else f"Small effusion {i}.\nNo pneumothorax."
            writer.writerow([f"images/img{i}.jpg", text, i % 2, f"pt{i // 2}"])
    return root


def real_metadata(name: str) -> Path:
    """A real metadata file shipped in torchxrayvision's ``data/`` (read in place; never copied)."""
    import importlib.util

    import pytest

    spec = importlib.util.find_spec("torchxrayvision")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("torchxrayvision (data files) not installed")
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / name
    if not path.is_file():
        pytest.skip(f"{path} not present")
    return path
