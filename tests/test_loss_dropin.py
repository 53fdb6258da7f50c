"""The release-signature loss functions in ``gloria.loss`` against loops with cap_lens (method.md 4)."""

from __future__ import annotations

import pytest
import torch

from gloria import loss
from support.alignment_reference import attention_loop, global_loss_loop, local_loss_loop


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(((a - b).abs().max() / b.abs().max()).detach())


@pytest.mark.parametrize(("dtype", "tol"), [(torch.float64, 1e-8), (torch.float32, 1e-4)])
@pytest.mark.parametrize("agg", ["sum", "mean"])
def test_local_loss_equals_loop_with_cap_lens(dtype, tol, agg) -> None:
    B, D, T = 5, 10, 12
    img = torch.randn(B, D, 4, 4, dtype=dtype, requires_grad=True)
    words = torch.randn(B, D, T, dtype=dtype, requires_grad=True)
    cap_lens = [3, 7, 1, 12, 5]
    loss0, loss1, maps = loss.local_loss(img, words, cap_lens, 4.0, 5.0, 10.0, agg)
    r0, r1 = local_loss_loop(img, words, [list(range(c)) for c in cap_lens], 4.0, 5.0, 10.0, agg)
    assert loss0.dtype == dtype
    assert rel_err(loss0, r0) <= tol and rel_err(loss1, r1) <= tol
    for a, b in zip(
        torch.autograd.grad(loss0 + 2 * loss1, (img, words)), torch.autograd.grad(r0 + 2 * r1, (img, words))
    ):
        assert rel_err(a, b) <= tol
    assert [tuple(m.shape) for m in maps] == [(1, c, 4, 4) for c in cap_lens]
    _, ref_attn = attention_loop(words[1:2, :, :7].detach(), img[1:2].detach(), 4.0)
    assert torch.allclose(maps[1], ref_attn, rtol=1e-5, atol=1e-7)


def test_global_loss_equals_loop_and_keeps_float64() -> None:
    img = torch.randn(6, 8, dtype=torch.float64, requires_grad=True)
    txt = torch.randn(6, 8, dtype=torch.float64, requires_grad=True)
    l0, l1 = loss.global_loss(img, txt, eps=1e-8, temp3=7.0)
    r0, r1 = global_loss_loop(img, txt, 7.0)
    assert l0.dtype == torch.float64
    assert rel_err(l0, r0) <= 1e-12 and rel_err(l1, r1) <= 1e-12
    for a, b in zip(torch.autograd.grad(l0 - l1, (img, txt)), torch.autograd.grad(r0 - r1, (img, txt))):
        assert rel_err(a, b) <= 1e-10


def test_attention_fn_is_exported_and_errors_name_values() -> None:
    weighted, attn = loss.attention_fn(torch.randn(2, 4, 3), torch.randn(2, 4, 2, 2), 4.0)
    assert weighted.shape == (2, 4, 3) and attn.shape == (2, 3, 2, 2)
    img, words = torch.randn(2, 4, 2, 2), torch.randn(2, 4, 6)
    with pytest.raises(ValueError, match=r"cap_lens\[1\] = 7 is outside 1..6"):
        loss.local_loss(img, words, [2, 7])
    with pytest.raises(ValueError, match="cap_lens has 3 entries for a batch of 2"):
        loss.local_loss(img, words, [2, 3, 4])
    with pytest.raises(ValueError, match="agg must be"):
        loss.local_loss(img, words, [2, 3], agg="max")
