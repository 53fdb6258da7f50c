"""Zero-shot prompts for the demo: the release's prompt vocabulary, kept where its words occur in the
SynthCXR training reports, and the demo's own short prompts for a class where none does.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from gloria.constants import class_prompt_vocabulary
from gloria.prompts import class_prompt_candidates

# used only for a class none of whose release prompts fits the training vocabulary
DEMO_PROMPTS: dict[str, list[str]] = {
    "Atelectasis": ["atelectasis", "linear atelectasis", "bibasilar atelectasis", "plate-like atelectasis"],
    "Cardiomegaly": ["cardiomegaly", "mild cardiomegaly", "enlarged heart", "moderate cardiomegaly"],
    "Consolidation": [
        "consolidation",
        "patchy consolidation",
        "airspace consolidation",
        "lobar consolidation",
    ],
    "Edema": ["pulmonary edema", "interstitial edema", "mild pulmonary edema", "perihilar edema"],
    "Pleural Effusion": ["pleural effusion", "small pleural effusion", "left pleural effusion", "effusion"],
}


def words(text: str) -> set[str]:
    """Lower-case ``\\w+`` tokens of ``text``."""
    return set(re.findall(r"\w+", text.lower()))


def corpus_vocabulary(texts: Iterable[str]) -> set[str]:
    """Every lower-case word of ``texts`` (the reports the model was trained on)."""
    vocab: set[str] = set()
    for text in texts:
        vocab |= words(text)
    return vocab


@dataclass(frozen=True)
class DemoPrompts:
    """Positive prompts per class and, per class, where they come from (``release`` or ``demo``)."""

    prompts: dict[str, list[str]]
    source: dict[str, str]
    fitting: dict[str, int]  # release candidates whose words all occur in the training reports


def choose_prompts(classes: Sequence[str], vocabulary: set[str], *, n: int, seed: int) -> DemoPrompts:
    """Up to ``n`` release prompts per class whose words all occur in ``vocabulary`` (a seeded draw of the
    fitting candidates, duplicates removed); the demo's own prompts for a class with none."""
    table: Mapping[str, Mapping[str, Sequence[str]]] = class_prompt_vocabulary()
    rng = random.Random(seed)
    prompts: dict[str, list[str]] = {}
    source: dict[str, str] = {}
    fitting: dict[str, int] = {}
    for name in classes:
        candidates = class_prompt_candidates(table[name]) if name in table else []
        unique = sorted({" ".join(c.split()) for c in candidates})
        fit = [c for c in unique if c and words(c) <= vocabulary]
        fitting[name] = len(fit)
        if fit:
            prompts[name] = rng.sample(fit, min(n, len(fit)))
            source[name] = "release"
        else:
            if name not in DEMO_PROMPTS:
                raise ValueError(f"no prompts for class {name!r}: none of the release's fit the reports")
            prompts[name] = DEMO_PROMPTS[name][:n]
            source[name] = "demo"
    return DemoPrompts(prompts, source, fitting)
