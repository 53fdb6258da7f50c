"""Shared SynthCXR helpers for tests: a small, fast configuration and a generated set per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from gloria.data.synth import SynthConfig, generate

# every kind frequent, so a couple of dozen images exercise every code path and file quirk
RICH_PREVALENCE = {
    "cardiomegaly": 0.4,
    "effusion": 0.4,
    "consolidation": 0.5,
    "atelectasis": 0.4,
    "edema": 0.3,
    "pneumothorax": 0.6,
    "opacity": 0.6,
    "nodule": 0.3,
    "device": 0.3,
}


def small_config(**overrides: object) -> SynthConfig:
    base: dict[str, object] = {"size": 128, "chunk_size": 8, "prevalence": RICH_PREVALENCE, "typo_rate": 0.05}
    base.update(overrides)
    return SynthConfig(**base)  # type: ignore[arg-type]


def file_bytes(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` (relative path -> bytes)."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="session")
def synth_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 40-image SynthCXR set at 128 px (seed 7) shared by the format and ground-truth tests."""
    out = tmp_path_factory.mktemp("synthcxr")
    generate(out, 40, seed=7, config=small_config(), progress=False)
    return out
