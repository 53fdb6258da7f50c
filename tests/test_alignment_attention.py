"""Two-stage word->region attention (method.md 3) against a pair-by-pair loop; masks; release signature."""

from __future__ import annotations

import pytest
import torch

from gloria.alignment.attention import attention_fn, two_stage_attention
from support.alignment_reference import attention_loop


def test_attention_fn_equals_loop_and_shapes() -> None:
    query = torch.randn(3, 8, 5, dtype=torch.float64)
    context = torch.randn(3, 8, 2, 3, dtype=torch.float64)
    weighted, attn = attention_fn(query, context, 4.0)
    ref_w, ref_a = attention_loop(query, context, 4.0)
    assert weighted.shape == (3, 8, 5) and attn.shape == (3, 5, 2, 3)
    assert torch.allclose(weighted, ref_w, rtol=1e-12, atol=1e-12)
    assert torch.allclose(attn, ref_a, rtol=1e-12, atol=1e-12)
    # every word's attention is a distribution over the 6 regions
    assert torch.allclose(attn.sum(dim=(2, 3)), torch.ones(3, 5, dtype=torch.float64))


def test_hand_case_one_word_two_regions() -> None:
    # one word e1, regions e1 and e2: p = [1, 1] (one word), alpha = softmax(4 * [1, 1]) = [1/2, 1/2]
    query = torch.tensor([[[1.0], [0.0]]])  # [1, D=2, n=1]
    context = torch.tensor([[[[1.0, 0.0]], [[0.0, 1.0]]]])  # [1, D=2, h=1, w=2]
    weighted, attn = attention_fn(query, context, 4.0)
    assert torch.allclose(attn.flatten(), torch.tensor([0.5, 0.5]))
    assert torch.allclose(weighted.flatten(), torch.tensor([0.5, 0.5]))


def test_masked_slots_are_ignored_and_zero() -> None:
    words = torch.randn(2, 6, 7, dtype=torch.float64)
    regions = torch.randn(2, 6, 3, 3, dtype=torch.float64)
    mask = torch.tensor([[1, 1, 1, 0, 0, 0, 0], [1, 0, 1, 1, 0, 1, 0]], dtype=torch.bool)
    context, attention = two_stage_attention(words, regions, mask, 4.0)
    for k in range(2):
        ref_c, ref_a = attention_loop(words[k : k + 1, :, mask[k]], regions[k : k + 1], 4.0)
        assert torch.allclose(context[k][:, mask[k]], ref_c[0], rtol=1e-12, atol=1e-12)
        assert torch.allclose(attention[k][mask[k]], ref_a[0], rtol=1e-12, atol=1e-12)
        assert torch.all(context[k][:, ~mask[k]] == 0) and torch.all(attention[k][~mask[k]] == 0)


def test_attention_bad_shapes() -> None:
    with pytest.raises(ValueError, match=r"regions \(3, 6, 3, 3\) vs words \(2, 6, 7\)"):
        two_stage_attention(
            torch.randn(2, 6, 7), torch.randn(3, 6, 3, 3), torch.ones(2, 7, dtype=torch.bool), 4.0
        )
    with pytest.raises(ValueError, match=r"query must be \[B, D, n\], got shape \(6, 7\)"):
        attention_fn(torch.randn(6, 7), torch.randn(1, 6, 3, 3), 4.0)
