"""SynthCXR knobs: image size, finding prevalence, subtlety, finding scale, report noise, file formats.

Every field has a documented default (docs/synthcxr.md); ``SynthConfig.to_dict`` / ``from_dict`` round-trip
through the ``synthcxr.json`` manifest so a resumed run can check it uses the same settings.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# finding kind -> probability that an image has it (independent draws; several may co-occur)
DEFAULT_PREVALENCE: dict[str, float] = {
    "cardiomegaly": 0.20,
    "effusion": 0.22,
    "consolidation": 0.14,
    "atelectasis": 0.20,
    "edema": 0.14,
    "pneumothorax": 0.12,
    "opacity": 0.16,
    "nodule": 0.06,
    "device": 0.15,
}

FINDING_KINDS: tuple[str, ...] = tuple(DEFAULT_PREVALENCE)


@dataclass(frozen=True)
class SynthConfig:
    """Generator settings. Intensities are fractions of the soft-tissue-vs-lung contrast.

    size: image side in pixels (square, 8-bit). dicom_size: side of the RSNA/SIIM DICOMs (None: ``size``).
    prevalence: per finding kind, the probability of being present. subtlety: multiplies every finding's
    contrast (1.0 default; lower is harder). finding_scale: focal finding radius as a fraction of its lung
    zone's half-height (0.45 default: focal findings cover roughly a tenth of a zone). noise: quantum noise
    standard deviation (fraction of full scale). uncertain_rate: chance a present finding is reported
    with a hedge (label -1). hedge_absent_rate: chance per image of a hedged mention of an absent finding.
    negation_rate: chance an absent finding is negated explicitly (label 0; else unmentioned, blank).
    typo_rate: chance per filler word of a transposition typo. deid_rate: chance per image of "XXXX" tokens.
    valid_fraction: share of patients in CheXpert valid.csv. zero_shot_per_class: rows per class of the
    5x200-style set (None: ``min(200, n // 20)``). chunk_size: images per work unit (resume granularity).
    jpeg_quality: quality of the CheXpert-style JPEGs.
    """

    size: int = 256
    dicom_size: int | None = None
    prevalence: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_PREVALENCE))
    subtlety: float = 1.0
    finding_scale: float = 0.45
    noise: float = 0.02
    uncertain_rate: float = 0.12
    hedge_absent_rate: float = 0.05
    negation_rate: float = 0.6
    typo_rate: float = 0.01
    deid_rate: float = 0.15
    valid_fraction: float = 0.1
    zero_shot_per_class: int | None = None
    chunk_size: int = 64
    jpeg_quality: int = 95

    def __post_init__(self) -> None:
        if not 32 <= self.size <= 4096:
            raise ValueError(f"SynthConfig.size must be in [32, 4096], got {self.size}")
        if self.dicom_size is not None and not 32 <= self.dicom_size <= 4096:
            raise ValueError(f"SynthConfig.dicom_size must be in [32, 4096] or None, got {self.dicom_size}")
        unknown = set(self.prevalence) - set(FINDING_KINDS)
        if unknown:
            raise ValueError(f"SynthConfig.prevalence: unknown finding kinds {sorted(unknown)}")
        for kind, p in self.prevalence.items():
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"SynthConfig.prevalence[{kind!r}] must be in [0, 1], got {p}")
        rates = {
            "uncertain_rate": self.uncertain_rate,
            "hedge_absent_rate": self.hedge_absent_rate,
            "negation_rate": self.negation_rate,
            "typo_rate": self.typo_rate,
            "deid_rate": self.deid_rate,
            "valid_fraction": self.valid_fraction,
        }
        for name, value in rates.items():
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"SynthConfig.{name} must be in [0, 1], got {value}")
        if not 0.0 < self.subtlety <= 5.0:
            raise ValueError(f"SynthConfig.subtlety must be in (0, 5], got {self.subtlety}")
        if not 0.05 <= self.finding_scale <= 1.5:
            raise ValueError(f"SynthConfig.finding_scale must be in [0.05, 1.5], got {self.finding_scale}")
        if not 0.0 <= self.noise <= 0.5:
            raise ValueError(f"SynthConfig.noise must be in [0, 0.5], got {self.noise}")
        if self.chunk_size < 1:
            raise ValueError(f"SynthConfig.chunk_size must be >= 1, got {self.chunk_size}")
        if not 1 <= self.jpeg_quality <= 100:
            raise ValueError(f"SynthConfig.jpeg_quality must be in [1, 100], got {self.jpeg_quality}")
        if self.zero_shot_per_class is not None and self.zero_shot_per_class < 1:
            raise ValueError(f"SynthConfig.zero_shot_per_class must be >= 1, got {self.zero_shot_per_class}")

    def prevalence_of(self, kind: str) -> float:
        """Prevalence of ``kind`` (kinds missing from a partial mapping keep their default)."""
        return float(self.prevalence.get(kind, DEFAULT_PREVALENCE[kind]))

    @property
    def output_dicom_size(self) -> int:
        return self.dicom_size if self.dicom_size is not None else self.size

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["prevalence"] = {k: self.prevalence_of(k) for k in FINDING_KINDS}
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SynthConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise ValueError(f"SynthConfig: unknown keys {sorted(unknown)}")
        return cls(**dict(data))
