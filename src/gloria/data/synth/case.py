"""SynthCXR case: everything about image ``index`` of a data set, drawn from (seed, index) alone.

Independent random streams (numpy ``SeedSequence([seed, index]).spawn``) drive the findings plan, anatomy,
finding geometry, pixels, report and identifiers, so each case is reproducible on its own.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from pydicom.uid import generate_uid

from gloria.data.synth.anatomy import Anatomy, Frame, build_frame, measured_ctr, sample_anatomy
from gloria.data.synth.config import SynthConfig
from gloria.data.synth.findings import Finding, cardiomegaly_ctr, dome_lift, draw_findings, plan_findings
from gloria.data.synth.labels import labels_from_spans
from gloria.data.synth.render import render
from gloria.data.synth.reports import Report, write_report

SIIM_UID_ROOT = "1.2.276.0.7230010.3.1."


@dataclass(frozen=True)
class CaseIds:
    """Identifiers and acquisition details of one case (CheXpert path, RSNA patientId, SIIM UIDs)."""

    patient: str
    split: str
    chexpert_path: str
    sex: str
    age: int
    ap_pa: str
    rsna_patient_id: str
    siim_study_uid: str
    siim_series_uid: str
    siim_image_id: str
    siim_photometric: str
    siim_bits_stored: int


@dataclass
class Case:
    """One synthetic study: image [H, W] uint8, its findings, report, CheXpert labels and identifiers."""

    index: int
    image: npt.NDArray[np.uint8]
    anatomy: Anatomy
    frame: Frame
    ctr: float
    findings: list[Finding]
    report: Report
    labels: dict[str, float | None]
    ids: CaseIds


def _ids(seed: int, index: int, rng: np.random.Generator, cfg: SynthConfig) -> CaseIds:
    patient = f"patient{index + 1:05d}"
    split = "valid" if rng.random() < cfg.valid_fraction else "train"
    entropy = ["synthcxr", str(seed), str(index)]
    photometric = "MONOCHROME1" if rng.random() < 0.25 else "MONOCHROME2"
    bits = int(rng.choice([8, 12, 16], p=[0.4, 0.4, 0.2]))
    return CaseIds(
        patient=patient,
        split=split,
        chexpert_path=f"CheXpert-v1.0/{split}/{patient}/study1/view1_frontal.jpg",
        sex="Female" if rng.random() < 0.5 else "Male",
        age=int(rng.integers(18, 91)),
        ap_pa="AP" if rng.random() < 0.6 else "PA",
        rsna_patient_id=str(uuid.UUID(bytes=rng.bytes(16), version=4)),
        siim_study_uid=str(generate_uid(prefix=SIIM_UID_ROOT + "2.", entropy_srcs=[*entropy, "study"])),
        siim_series_uid=str(generate_uid(prefix=SIIM_UID_ROOT + "3.", entropy_srcs=[*entropy, "series"])),
        siim_image_id=str(generate_uid(prefix=SIIM_UID_ROOT + "4.", entropy_srcs=[*entropy, "image"])),
        siim_photometric=photometric,
        siim_bits_stored=bits,
    )


def make_case(seed: int, index: int, cfg: SynthConfig) -> Case:
    """Generate case ``index`` of the data set with ``seed`` (independent of the data set's size)."""
    if index < 0:
        raise ValueError(f"make_case: index must be >= 0, got {index}")
    streams = np.random.SeedSequence([int(seed), int(index)]).spawn(6)
    plan_rng, anatomy_rng, draw_rng, pixel_rng, text_rng, id_rng = (np.random.default_rng(s) for s in streams)
    plans = plan_findings(plan_rng, cfg)
    anatomy = sample_anatomy(anatomy_rng, cardiomegaly_ctr(plans, plan_rng, cfg))
    frame = build_frame(anatomy, cfg.size, dome_lift(plans))
    findings = draw_findings(frame, plans, draw_rng, cfg)
    image = render(frame, findings, pixel_rng, cfg.noise)
    report = write_report([f.plan for f in findings], text_rng, cfg)  # as drawn (a line's side)
    labels = labels_from_spans(report.spans)
    return Case(
        index,
        image,
        anatomy,
        frame,
        measured_ctr(frame),
        findings,
        report,
        labels,
        _ids(seed, index, id_rng, cfg),
    )
