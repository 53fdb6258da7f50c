"""SynthCXR per-image ground truth: findings with side/zone/severity, box, mask (RLE) and naming words.

A record is a JSON-able dict (one line of ``synthcxr_ground_truth.jsonl``); it also carries what the RSNA-
and SIIM-style tables need (boxes and RLE rows at the DICOM size), so tables can be written from records.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from gloria.data.rle import rle_encode
from gloria.data.synth.case import Case
from gloria.data.synth.config import SynthConfig
from gloria.data.synth.findings import mask_box
from gloria.data.synth.labels import KIND_LABEL

RSNA_BOX_KINDS = ("opacity", "consolidation")
SIIM_MASK_KINDS = ("pneumothorax",)
CHEXPERT_DIR = "CheXpert-v1.0"
RSNA_DIR = "rsna_pneumonia"
SIIM_DIR = "siim_pneumothorax"


def rsna_path(patient_id: str) -> str:
    return f"{RSNA_DIR}/stage_2_train_images/{patient_id}.dcm"


def siim_path(study: str, series: str, image_id: str) -> str:
    return f"{SIIM_DIR}/dicom-images-train/{study}/{series}/{image_id}.dcm"


def resize_mask(mask: npt.NDArray[np.bool_], size: int) -> npt.NDArray[np.bool_]:
    """Nearest-neighbour resize of a square mask to ``size`` x ``size`` (identity when equal)."""
    if mask.shape[0] == size:
        return mask
    out: npt.NDArray[np.bool_] = cv2.resize(
        mask.astype(np.uint8), (size, size), interpolation=cv2.INTER_NEAREST
    ).astype(bool)
    return out


def siim_rles(case: Case, size: int) -> list[str]:
    """One RLE per connected pneumothorax region at ``size`` (``["-1"]`` for a negative image)."""
    union = np.zeros((size, size), dtype=np.uint8)
    for finding in case.findings:
        if finding.kind in SIIM_MASK_KINDS:
            union |= resize_mask(finding.mask, size).astype(np.uint8)
    if not union.any():
        return ["-1"]
    count, labels = cv2.connectedComponents(union, connectivity=8)
    return [rle_encode(labels == k) for k in range(1, count)]


def rsna_boxes(case: Case, size: int) -> list[list[int]]:
    """Boxes [x, y, w, h] at ``size`` of the opacity-like findings (RSNA's "Lung Opacity" target)."""
    boxes: list[list[int]] = []
    for finding in case.findings:
        if finding.kind in RSNA_BOX_KINDS and finding.mask.any():
            boxes.append(list(mask_box(resize_mask(finding.mask, size))))
    return boxes


def case_record(case: Case, cfg: SynthConfig) -> dict[str, Any]:
    """The ground-truth record of ``case`` (mask RLEs and boxes at the generator size ``cfg.size``)."""
    ids = case.ids
    spans = [
        {
            "start": s.start,
            "end": s.end,
            "text": case.report.text[s.start : s.end],
            "role": s.role,
            "section": s.section,
            "label": s.label,
            "value": s.value,
            "finding": s.finding,
        }
        for s in case.report.spans
    ]
    findings = []
    for j, finding in enumerate(case.findings):
        plan = finding.plan
        findings.append(
            {
                "kind": plan.kind,
                "label": KIND_LABEL[plan.kind],
                "side": plan.side,
                "levels": list(plan.levels),
                "grade": plan.grade,
                "hedged": plan.hedged,
                "attrs": dict(sorted(plan.attrs.items())),
                "box": list(finding.box),
                "area": int(finding.mask.sum()),
                "mask_rle": rle_encode(finding.mask),
                "spans": [k for k, s in enumerate(case.report.spans) if s.finding == j],
            }
        )
    dsize = cfg.output_dicom_size
    return {
        "index": case.index,
        "patient": ids.patient,
        "split": ids.split,
        "chexpert_path": ids.chexpert_path,
        "sex": ids.sex,
        "age": ids.age,
        "ap_pa": ids.ap_pa,
        "rsna_patient_id": ids.rsna_patient_id,
        "rsna_path": rsna_path(ids.rsna_patient_id),
        "siim_image_id": ids.siim_image_id,
        "siim_path": siim_path(ids.siim_study_uid, ids.siim_series_uid, ids.siim_image_id),
        "siim_photometric": ids.siim_photometric,
        "siim_bits_stored": ids.siim_bits_stored,
        "size": cfg.size,
        "dicom_size": dsize,
        "ctr": round(case.ctr, 4),
        "report": case.report.text,
        "impression": case.report.impression,
        "impression_start": case.report.impression_start,
        "labels": case.labels,
        "findings": findings,
        "spans": spans,
        "rsna_boxes": rsna_boxes(case, dsize),
        "siim_rles": siim_rles(case, dsize),
    }
