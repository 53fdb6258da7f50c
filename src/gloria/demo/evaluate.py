"""Demo stages 3, 4 and 7 on one model: the 5x200-style set and the grounding cases of SynthCXR (the
evaluations themselves are the runners of ``gloria.tasks``).
"""

from __future__ import annotations

import logging
from pathlib import Path

from gloria.data.eval_set import EvalSet, read_eval_set
from gloria.model import GLoRIA
from gloria.tasks import grounding as G

log = logging.getLogger(__name__)

ZERO_SHOT_CSV = "CheXpert-v1.0/chexpert_5x200.csv"


def read_zero_shot_set(synth_root: Path) -> EvalSet:
    """SynthCXR's ``chexpert_5x200.csv`` (paths relative to the set's root); at least two classes needed."""
    return read_eval_set(synth_root / ZERO_SHOT_CSV, synth_root, min_classes=2)


def grounding_cases(synth_root: Path) -> list[G.GroundingCase]:
    """Grounding cases of the images in SynthCXR's ``valid`` split (never seen in pretraining)."""
    cases = [c for c in G.synth_grounding_cases(synth_root) if "/valid/" in c.image_path.as_posix()]
    if len(cases) < 2:
        raise ValueError(f"only {len(cases)} grounding cases in the valid split of {synth_root}")
    return cases


def grounding(
    model: GLoRIA, cases: list[G.GroundingCase], *, seed: int, n_examples: int
) -> G.GroundingOutput:
    """Readouts of the model next to the image-blind baselines (random, class and class+words priors)."""
    return G.evaluate_grounding(model, cases, seed=seed, n_examples=n_examples)
