"""False-negative-aware contrastive targets: against the one-hot terms and a plain loop over rows."""

from __future__ import annotations

import math

import pytest
import torch

from gloria.alignment.losses import contrastive_terms
from gloria.alignment.targets import group_targets, similarity_targets, soft_contrastive_terms


def loop_terms(logits: torch.Tensor, groups: list[int]) -> tuple[float, float]:
    """From the definition: row i's positives are the j with groups[j] == groups[i], each weighted 1/|P_i|."""
    B = len(groups)

    def side(S: list[list[float]]) -> float:
        total = 0.0
        for i in range(B):
            norm = math.log(sum(math.exp(S[i][j]) for j in range(B)))
            positives = [j for j in range(B) if groups[j] == groups[i]]
            total += -sum(S[i][j] - norm for j in positives) / len(positives)
        return total / B

    S = logits.double().tolist()
    return side(S), side([list(col) for col in zip(*S)])


def test_distinct_groups_equal_the_one_hot_terms() -> None:
    logits = torch.randn(6, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    ours = soft_contrastive_terms(logits, group_targets(torch.arange(6), torch.float64))
    ref = contrastive_terms(logits)
    for a, b in zip(ours, ref):
        torch.testing.assert_close(a, b)


def test_shared_groups_equal_a_loop() -> None:
    logits = torch.randn(7, 7, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 3
    groups = [0, 1, 0, 2, 1, 0, 3]  # three rows of group 0, two of group 1
    i2t, t2i = soft_contrastive_terms(logits, group_targets(torch.tensor(groups), torch.float64))
    ref_i2t, ref_t2i = loop_terms(logits, groups)
    assert i2t.item() == pytest.approx(ref_i2t, rel=1e-12)
    assert t2i.item() == pytest.approx(ref_t2i, rel=1e-12)
    assert i2t.item() != pytest.approx(contrastive_terms(logits)[0].item())  # the targets matter


def test_similarity_targets_rows() -> None:
    sim = torch.tensor([[1.0, 0.5, -0.2], [0.5, 1.0, 0.0], [-0.2, 0.0, 0.3]])
    t = similarity_targets(sim)
    torch.testing.assert_close(t.sum(dim=1), torch.ones(3))
    torch.testing.assert_close(t[0], torch.tensor([1.0, 0.5, 0.0]) / 1.5)
    torch.testing.assert_close(t[2], torch.tensor([0.0, 0.0, 1.0]))  # its own pair kept at weight 1


def test_bad_shapes_raise() -> None:
    with pytest.raises(ValueError, match=r"one-dimensional \[B\]"):
        group_targets(torch.zeros(2, 2))
    with pytest.raises(ValueError, match=r"square \[B, B\]"):
        similarity_targets(torch.zeros(2, 3))
    with pytest.raises(ValueError, match="square logits and targets"):
        soft_contrastive_terms(torch.zeros(3, 3), torch.eye(2))
