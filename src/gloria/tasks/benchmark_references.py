"""Published numbers the field compares against, with the paper each came from (issue 15's list), in the
units our tables use (AUROC, F1, Dice, IoU as fractions; CNR as is).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Reference:
    """One published number: the model, the metric (our key), its value and where it was reported."""

    model: str
    metric: str
    value: float | tuple[float, float]
    source: str

    def text(self) -> str:
        v = self.value
        shown = f"{v[0]:.2f}-{v[1]:.2f}" if isinstance(v, tuple) else f"{v:.3g}"
        return f"{self.model} {shown}"


MEDKLIP = "Wu et al. 2023, MedKLIP (ICCV), zero-shot tables"
KAD = "Zhang et al. 2023, KAD (Nature Communications), CheXpert test comparison"
CHEXZERO = "Tiu et al. 2022, CheXzero (Nature Biomedical Engineering)"
BIOVIL = "Boecking et al. 2022, BioViL (ECCV), MS-CXR phrase grounding"
BIOVIL_T = "Bannur et al. 2023, BioViL-T (CVPR), MS-CXR phrase grounding"

REFERENCES: dict[str, tuple[Reference, ...]] = {
    # zero-shot, binary
    "rsna_pneumonia_zero_shot": (
        Reference("GLoRIA", "auroc", 0.715, MEDKLIP),
        Reference("BioViL", "auroc", 0.828, MEDKLIP),
        Reference("CheXzero", "auroc", 0.858, MEDKLIP),
        Reference("MedKLIP", "auroc", 0.869, MEDKLIP),
    ),
    # zero-shot, multi-label
    "chexpert_test_zero_shot": (
        Reference("GLoRIA", "auroc", 0.750, KAD),
        Reference("GLoRIA", "f1", 0.570, KAD),
        Reference("CheXzero", "auroc", 0.889, CHEXZERO),
        Reference("CheXzero", "f1", 0.606, CHEXZERO),
        Reference("KAD", "auroc", 0.905, KAD),
        Reference("KAD", "f1", 0.646, KAD),
    ),
    # phrase grounding
    "ms_cxr_grounding": (
        Reference("GLoRIA", "cnr", 0.93, BIOVIL),
        Reference("BioViL", "cnr", (1.03, 1.07), f"{BIOVIL}; {BIOVIL_T}"),
        Reference("BioViL-T", "cnr", 1.33, BIOVIL_T),
        Reference("BioViL-T", "miou", 0.24, BIOVIL_T),
    ),
    # zero-shot grounding with boxes or masks
    "rsna_pneumonia_grounding": (
        Reference("GLoRIA", "mdice", 0.347, MEDKLIP),
        Reference("GLoRIA", "miou", 0.218, MEDKLIP),
        Reference("MedKLIP", "mdice", 0.465, MEDKLIP),
        Reference("MedKLIP", "miou", 0.317, MEDKLIP),
    ),
    "siim_pneumothorax_grounding": (
        Reference("GLoRIA", "mdice", 0.021, MEDKLIP),
        Reference("MedKLIP", "mdice", 0.040, MEDKLIP),
    ),
}


def references_for(key: str | None, metric: str) -> list[Reference]:
    """The published numbers of benchmark ``key`` for ``metric`` (none for an unknown key or metric)."""
    if key is not None and key not in REFERENCES:
        raise ValueError(f"unknown reference {key!r}; known: {sorted(REFERENCES)}")
    return [r for r in REFERENCES.get(key or "", ()) if r.metric == metric]
