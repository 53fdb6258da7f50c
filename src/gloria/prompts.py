"""The release's zero-shot prompt generator (method.md section 8): n prompts per CheXpert class.

Prompts are ``f"{a} {b} {c}"`` over the class's three lists in the file's key order, drawn with
``random.Random.sample`` class after class from one generator.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence

from gloria.constants import class_prompt_vocabulary


def class_prompt_candidates(parts: Mapping[str, Sequence[str]]) -> list[str]:
    """Every ``f"{a} {b} {c}"`` over the three lists (first outermost); duplicates and stray spaces kept."""
    lists = list(parts.values())
    if len(lists) != 3:
        raise ValueError(f"a prompt class needs exactly three lists, got {list(parts)}")
    first, second, third = lists
    return [f"{a} {b} {c}" for a in first for b in second for c in third]


def generate_chexpert_class_prompts(
    n: int = 5,
    seed: int | None = None,
    vocabulary: Mapping[str, Mapping[str, Sequence[str]]] | None = None,
) -> dict[str, list[str]]:
    """{class: n prompts} for the CheXpert competition classes (or ``vocabulary``), in the file's order.

    One ``random.Random(seed)`` is consumed by ``sample(candidates, n)`` class after class. ``seed=6`` in
    a fresh process reproduces the release's first call (it seeded the global ``random`` with 6 at import).
    ``seed=None`` uses a fresh OS-seeded generator: each call draws different prompts (call with a seed to
    get the same ones again). The global ``random`` state is never touched. ``n`` larger than a class's
    number of candidates raises ``ValueError`` naming the class.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    rng = random.Random(seed)
    classes = class_prompt_vocabulary() if vocabulary is None else vocabulary
    prompts: dict[str, list[str]] = {}
    for name, parts in classes.items():
        candidates = class_prompt_candidates(parts)
        if n > len(candidates):
            raise ValueError(f"n={n} is larger than the {len(candidates)} prompts of class {name!r}")
        prompts[name] = rng.sample(candidates, n)
    return prompts
