"""local_scores vs the plain per-text loop of method.md 3-4: values, gradients, masks, chunks, recompute."""

from __future__ import annotations

import itertools

import pytest
import torch

from gloria.alignment.local import DEFAULT_BLOCK_ELEMENTS, local_scores, plan_text_chunks
from support.alignment_reference import local_similarity_loop

TOL = {torch.float64: 1e-8, torch.float32: 1e-4}


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(((a - b).abs().max() / b.abs().max()).detach())


def random_case(N: int, K: int, dtype: torch.dtype, D: int = 12, h: int = 3, w: int = 4, T: int = 9):
    regions = torch.randn(N, D, h, w, dtype=dtype, requires_grad=True)
    words = torch.randn(K, D, T, dtype=dtype, requires_grad=True)
    mask = torch.zeros(K, T, dtype=torch.bool)
    slots = []
    for k in range(K):
        count = int(torch.randint(1, T + 1, (1,)))
        js = sorted(torch.randperm(T)[:count].tolist())  # scattered slots, not only a prefix
        mask[k, js] = True
        slots.append(js)
    return regions, words, mask, slots


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("agg", ["sum", "mean", "max"])
@pytest.mark.parametrize(
    ("chunk_size", "image_chunk_size", "recompute"),
    [(None, None, False), (2, 3, False), (3, 2, True), (1, 1, True)],
)
def test_values_and_gradients_equal_loop(dtype, agg, chunk_size, image_chunk_size, recompute) -> None:
    regions, words, mask, slots = random_case(5, 7, dtype)
    ours = local_scores(
        regions,
        words,
        mask,
        attention_temperature=4.0,
        word_temperature=5.0,
        agg=agg,
        chunk_size=chunk_size,
        image_chunk_size=image_chunk_size,
        recompute=recompute,
    )
    ref = local_similarity_loop(regions, words, slots, 4.0, 5.0, agg)
    assert ours.dtype == dtype and ours.shape == (5, 7)
    assert rel_err(ours, ref) <= TOL[dtype]
    weights = torch.randn_like(ref)
    g_ours = torch.autograd.grad((ours * weights).sum(), (regions, words))
    g_ref = torch.autograd.grad((ref * weights).sum(), (regions, words))
    for a, b in zip(g_ours, g_ref):
        assert rel_err(a, b) <= TOL[dtype]


def test_masked_slots_never_change_scores_or_gradients() -> None:
    regions, words, mask, _ = random_case(4, 5, torch.float64)
    kw = {"attention_temperature": 4.0, "word_temperature": 5.0}
    base = local_scores(regions, words, mask, **kw)
    junk = words.detach().clone()
    junk[~mask.unsqueeze(1).expand_as(junk)] = 1e3 * torch.randn(
        int((~mask).sum()) * words.shape[1], dtype=junk.dtype
    )
    junk.requires_grad_(True)
    other = local_scores(regions, junk, mask, **kw)
    assert torch.allclose(base, other, rtol=1e-12, atol=1e-12)
    (g_words,) = torch.autograd.grad(other.sum(), junk)
    assert torch.all(g_words[~mask.unsqueeze(1).expand_as(g_words)] == 0)
    # appending padded slots (wider T, all masked) changes nothing either
    wide = torch.cat([words, torch.randn(5, words.shape[1], 6, dtype=words.dtype)], dim=2)
    wide_mask = torch.cat([mask, torch.zeros(5, 6, dtype=torch.bool)], dim=1)
    assert torch.allclose(base, local_scores(regions, wide, wide_mask, **kw), rtol=1e-12, atol=1e-12)


def test_permuting_images_and_texts_permutes_the_matrix() -> None:
    regions, words, mask, _ = random_case(6, 5, torch.float64)
    kw = {"attention_temperature": 4.0, "word_temperature": 5.0, "chunk_size": 2}
    base = local_scores(regions, words, mask, **kw)
    pi, pk = torch.randperm(6), torch.randperm(5)
    permuted = local_scores(regions[pi], words[pk], mask[pk], **kw)
    assert torch.allclose(permuted, base[pi][:, pk], rtol=1e-12, atol=1e-12)


def test_rectangular_and_float64_preserved() -> None:
    regions, words, mask, slots = random_case(2, 9, torch.float64)
    ours = local_scores(regions, words, mask, attention_temperature=3.0, word_temperature=7.0, chunk_size=4)
    assert ours.dtype == torch.float64
    assert rel_err(ours, local_similarity_loop(regions, words, slots, 3.0, 7.0)) <= 1e-8


def test_bad_shapes_name_the_shapes() -> None:
    regions, words, mask, _ = random_case(2, 3, torch.float32)
    kw = {"attention_temperature": 4.0, "word_temperature": 5.0}
    with pytest.raises(ValueError, match=r"\(2, 11, 3, 4\)"):
        local_scores(regions[:, 1:], words, mask, **kw)
    with pytest.raises(ValueError, match=r"word_mask must be \[K, T\] = \(3, 9\).*\(3, 8\)"):
        local_scores(regions, words, mask[:, 1:], **kw)
    with pytest.raises(ValueError, match=r"regions must be \[N, D, h, w\], got shape \(2, 12, 12\)"):
        local_scores(regions.flatten(2), words, mask, **kw)
    empty = mask.clone()
    empty[1] = False
    with pytest.raises(ValueError, match=r"no word slot for text\(s\) \[1\]"):
        local_scores(regions, words, empty, **kw)
    with pytest.raises(ValueError, match="agg"):
        local_scores(regions, words, mask, agg="median", **kw)  # type: ignore[arg-type]


def test_text_chunks_cover_every_text_once_sorted_by_length() -> None:
    mask = torch.arange(10).unsqueeze(0) < torch.tensor([3, 9, 1, 5, 7, 2, 8]).unsqueeze(1)
    chunks = plan_text_chunks(mask, rows=4, chunk_size=3)
    assert [c.tolist() for c in chunks] == [[2, 5, 0], [3, 4, 6], [1]]
    auto = plan_text_chunks(mask, rows=DEFAULT_BLOCK_ELEMENTS // 20)  # 20 // 9 = 2 texts per block
    assert [len(c) for c in auto] == [2, 2, 2, 1]


def saved_bytes(fn) -> int:
    storages: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    out.sum().backward()
    return sum(storages.values())


def test_recompute_saves_less_for_backward_and_gives_the_same_gradients() -> None:
    regions, words, mask, _ = random_case(6, 6, torch.float64, D=8, h=5, w=5, T=12)
    kw = {"attention_temperature": 4.0, "word_temperature": 5.0, "chunk_size": 2}
    plain = saved_bytes(lambda: local_scores(regions, words, mask, **kw))
    g_plain = regions.grad.clone()
    regions.grad = None
    rec = saved_bytes(lambda: local_scores(regions, words, mask, recompute=True, **kw))
    assert rec < plain / 2
    assert torch.allclose(regions.grad, g_plain, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("attention_temperature", [0.0, 100.0, -2.0])
def test_any_attention_temperature_matches_loop(attention_temperature) -> None:
    # 100 takes the max-subtracting softmax over regions; 0 and -2 the plain exponentials
    regions, words, mask, slots = random_case(3, 4, torch.float64)
    ours = local_scores(
        regions, words, mask, attention_temperature=attention_temperature, word_temperature=5.0
    )
    ref = local_similarity_loop(regions, words, slots, attention_temperature, 5.0)
    assert rel_err(ours, ref) <= 1e-8
    for a, b in zip(
        torch.autograd.grad(ours.sum(), (regions, words)), torch.autograd.grad(ref.sum(), (regions, words))
    ):
        assert rel_err(a, b) <= 1e-8


def test_autocast_runs_the_scores_in_float32_with_gradients() -> None:
    torch.manual_seed(0)
    regions = torch.randn(3, 8, 2, 3, requires_grad=True)
    words = torch.randn(4, 8, 5, requires_grad=True)
    mask = torch.tensor(
        [[1, 1, 1, 0, 0], [1, 1, 0, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]], dtype=torch.bool
    )
    kwargs = {"attention_temperature": 4.0, "word_temperature": 5.0}
    expected = local_scores(regions, words, mask, **kwargs)
    (g_regions,) = torch.autograd.grad(expected.sum(), regions)
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        got = local_scores(regions, words, mask, **kwargs)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, expected)
    (g_auto,) = torch.autograd.grad(got.sum(), regions)
    torch.testing.assert_close(g_auto, g_regions)


def test_blocked_recompute_in_float32_is_exact_to_1e5_of_the_float64_loop(monkeypatch) -> None:
    """Tiny blocks (several image blocks and text chunks) recomputed in backward, float32, against the
    float64 plain loop of the spec: values and gradients within 1e-5 (norm-wise)."""
    import gloria.alignment.local as local

    monkeypatch.setattr(local, "DEFAULT_BLOCK_ELEMENTS", 200)  # 12 regions x 9 slots: 1 image per block
    regions, words, mask, slots = random_case(6, 7, torch.float64)
    assert local.plan_image_block(6, 12, 9) == 1
    r32 = regions.detach().float().requires_grad_(True)
    w32 = words.detach().float().requires_grad_(True)
    ours = local_scores(r32, w32, mask, attention_temperature=4.0, word_temperature=5.0, recompute=True)
    ref = local_similarity_loop(regions, words, slots, 4.0, 5.0)
    assert rel_err(ours.double(), ref) <= 1e-5
    weights = torch.randn_like(ref)
    g_ours = torch.autograd.grad((ours * weights.float()).sum(), (r32, w32))
    g_ref = torch.autograd.grad((ref * weights).sum(), (regions, words))
    for a, b in zip(g_ours, g_ref):
        assert rel_err(a.double(), b) <= 1e-5


def test_recompute_keeps_memory_linear_in_the_batch() -> None:
    """Saved-for-backward bytes at B = 8, 16, 32 (B images x B texts): about x2 per doubling with
    recompute, about x4 without."""

    def saved(B: int, recompute: bool) -> int:
        torch.manual_seed(B)
        regions, words, mask, _ = random_case(B, B, torch.float32, D=8, h=5, w=5, T=12)
        kw = {"attention_temperature": 4.0, "word_temperature": 5.0, "recompute": recompute}
        return saved_bytes(lambda: local_scores(regions, words, mask, **kw))

    rec = [saved(B, True) for B in (8, 16, 32)]
    full = [saved(B, False) for B in (8, 16, 32)]
    assert all(1.7 < b / a < 2.4 for a, b in itertools.pairwise(rec)), rec
    assert all(b / a > 3.3 for a, b in itertools.pairwise(full)), full


def test_auto_recompute_when_the_kept_attention_would_not_fit(monkeypatch) -> None:
    import gloria.alignment.local as local

    regions, words, mask, _ = random_case(6, 6, torch.float64, D=8, h=5, w=5, T=12)
    kw = {"attention_temperature": 4.0, "word_temperature": 5.0, "chunk_size": 2}
    plain = saved_bytes(lambda: local_scores(regions, words, mask, recompute=False, **kw))
    rec = saved_bytes(lambda: local_scores(regions, words, mask, recompute=True, **kw))
    monkeypatch.setattr(local, "free_memory_bytes", lambda device: 1 << 40)
    assert saved_bytes(lambda: local_scores(regions, words, mask, **kw)) == plain
    assert local.kept_attention_bytes(6, 25, 10, torch.float64) == 4 * 6 * 25 * 10 * 8
    monkeypatch.setattr(local, "free_memory_bytes", lambda device: 1 << 10)  # nothing fits in 1 KiB
    assert saved_bytes(lambda: local_scores(regions, words, mask, **kw)) == rec


def test_default_image_blocks_stay_within_the_block_budget() -> None:
    from gloria.alignment.local import plan_image_block

    per_block = plan_image_block(1024, 361, 97)
    assert (
        per_block == DEFAULT_BLOCK_ELEMENTS // (361 * 97) and per_block * 361 * 97 <= DEFAULT_BLOCK_ELEMENTS
    )
    assert plan_image_block(4, 361, 97) == 4  # small batches: all images in one block, as before
    assert plan_image_block(1024, 361, 97, image_chunk_size=8) == 8
