"""GLoRIA losses (method.md 4) against the release-structured loop: values and gradients, masks, dtype."""

from __future__ import annotations

import pytest
import torch

from gloria.alignment.losses import global_loss_terms, gloria_loss, local_loss_terms, matched_attention_maps
from gloria.config import AlignmentConfig
from gloria.types import ImageFeatures, TextFeatures
from support.alignment_reference import global_loss_loop, local_loss_loop

TOL = {torch.float64: 1e-8, torch.float32: 1e-4}


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(((a - b).abs().max() / b.abs().max()).detach())


def batch(B: int, dtype: torch.dtype, T: int = 10, D: int = 16):
    regions = torch.randn(B, D, 3, 3, dtype=dtype, requires_grad=True)
    img = torch.randn(B, D, dtype=dtype, requires_grad=True)
    words = torch.randn(B, D, T, dtype=dtype)
    counts = torch.randint(1, T - 2, (B,))
    slots = torch.arange(T)
    words[slots.view(1, 1, T).expand_as(words) > counts.view(B, 1, 1) + 1] = 0  # zero slots after SEP
    words.requires_grad_(True)
    txt = torch.randn(B, D, dtype=dtype, requires_grad=True)
    text = TextFeatures(
        words=words,
        embedding=txt,
        word_mask=slots.unsqueeze(0) <= counts.unsqueeze(1),
        legacy_word_counts=(counts - 1).clamp_min(0),
        word_strings=[[] for _ in range(B)],
    )
    return ImageFeatures(regions=regions, embedding=img), text, counts


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize(
    ("agg", "chunk_size", "recompute"), [("sum", None, False), ("mean", 2, True), ("sum", 3, True)]
)
def test_gloria_loss_equals_loop(dtype, agg, chunk_size, recompute) -> None:
    image, text, counts = batch(6, dtype)
    # three distinct temperatures, so that swapping any two of them fails
    cfg = AlignmentConfig(
        local_agg=agg,
        local_weight=0.7,
        global_weight=1.3,
        attention_temperature=3.0,
        word_temperature=6.0,
        logit_temperature=9.0,
    )
    out = gloria_loss(image, text, cfg, chunk_size=chunk_size, recompute=recompute)
    slots = [list(range(int(c) + 1)) for c in counts]
    l0, l1 = local_loss_loop(image.regions, text.words, slots, 3.0, 6.0, 9.0, agg)
    g0, g1 = global_loss_loop(image.embedding, text.embedding, 9.0)
    ref = 0.7 * (l0 + l1) + 1.3 * (g0 + g1)
    assert out["loss"].dtype == dtype
    for key, value in (("loss", ref), ("local_loss", l0 + l1), ("global_loss", g0 + g1), ("local_i2t", l0)):
        assert rel_err(out[key], value) <= TOL[dtype], key
    leaves = (image.regions, image.embedding, text.words, text.embedding)
    for a, b in zip(torch.autograd.grad(out["loss"], leaves), torch.autograd.grad(ref, leaves)):
        assert rel_err(a, b) <= TOL[dtype]


def test_legacy_word_counts_use_slots_0_to_n() -> None:
    image, text, _ = batch(5, torch.float64)
    cfg = AlignmentConfig()
    out = gloria_loss(image, text, cfg, legacy_word_counts=True)
    slots = [list(range(int(c) + 1)) for c in text.legacy_word_counts]
    l0, l1 = local_loss_loop(image.regions, text.words, slots)
    assert rel_err(out["local_loss"], l0 + l1) <= 1e-8
    assert not torch.allclose(out["local_loss"], gloria_loss(image, text, cfg)["local_loss"])


def test_junk_in_masked_slots_never_changes_the_loss() -> None:
    image, text, _ = batch(4, torch.float64)
    cfg = AlignmentConfig()
    base = gloria_loss(image, text, cfg)["loss"]
    junk = text.words.detach().clone()
    junk[~text.word_mask.unsqueeze(1).expand_as(junk)] = 50.0
    text.words = junk
    assert torch.allclose(gloria_loss(image, text, cfg)["loss"], base, rtol=1e-13, atol=0)


def test_terms_shapes_and_errors() -> None:
    image, text, _ = batch(3, torch.float32)
    g0, g1 = global_loss_terms(image.embedding, text.embedding)
    assert g0.dim() == 0 and g1.dim() == 0
    with pytest.raises(ValueError, match=r"\(3, 16\).*\(2, 16\)"):
        global_loss_terms(image.embedding, text.embedding[:2])
    with pytest.raises(ValueError, match=r"matched pairs"):
        local_loss_terms(image.regions[:2], text.words, text.word_mask, AlignmentConfig())


def test_matched_attention_maps_shapes() -> None:
    image, text, counts = batch(4, torch.float32)
    maps = matched_attention_maps(image.regions, text.words, text.word_mask, 4.0)
    assert [tuple(m.shape) for m in maps] == [(1, int(c) + 1, 3, 3) for c in counts]
    assert all(torch.allclose(m.sum(dim=(2, 3)), torch.ones(1, m.shape[1])) for m in maps)
