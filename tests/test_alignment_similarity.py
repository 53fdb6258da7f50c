"""Inference similarities (method.md 5): cosine, z-score, the legacy zero-shot formula on hand-checked and
numpy-loop cases, the c_k > T-1 error, default and retrieval local similarities."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from gloria.alignment.similarity import (
    combine_default,
    combine_legacy,
    cosine_matrix,
    default_local_similarity,
    legacy_local_similarity,
    retrieval_local_similarity,
    zscore,
)
from gloria.config import AlignmentConfig
from support.alignment_reference import local_similarity_loop, numpy_legacy_local


def test_legacy_hand_case_one_image_two_prompts() -> None:
    regions = torch.tensor([[[[1.0, 0.0]], [[0.0, 1.0]]]], dtype=torch.float64)  # regions e1, e2
    words = torch.zeros(2, 2, 4, dtype=torch.float64)
    words[:, :, 0] = torch.tensor([0.3, 0.7])  # [CLS]: not in the legacy slice
    words[:, 0, 1] = 1.0  # slot 1 = e1 in both prompts; prompt 0 slot 2 is [SEP]-like junk, outside c_0 = 1
    words[0, :, 2] = torch.tensor([-2.0, 5.0])
    local = legacy_local_similarity(regions, words, [1, 2])
    # prompt 0: one word, p = 1 everywhere, alpha = (1/2, 1/2), cos(e1, (e1 + e2)/2) = 1/sqrt(2)
    # prompt 1: words e1 and a zero slot; alpha_1 = (s, 1-s), s = sigmoid(4e/(e+1) - 2); zero word: R = 0
    s = 1 / (1 + math.exp(-(4 * math.e / (math.e + 1) - 2)))
    expected = [5 / math.sqrt(2), 5 * s / math.sqrt(s * s + (1 - s) ** 2)]
    assert local.shape == (1, 2)
    assert np.allclose(local.numpy()[0], expected, rtol=1e-12)
    glob = cosine_matrix(
        torch.tensor([[1.0, 0.0]], dtype=torch.float64), torch.tensor([[1.0, 1.0], [2.0, 0.0]]).double()
    )
    assert np.allclose(glob.numpy(), [[1 / math.sqrt(2), 1.0]])
    both = combine_legacy(glob, local)
    assert np.allclose(both.numpy()[0], [(expected[0] + 1 / math.sqrt(2)) / 2, (expected[1] + 1) / 2])


def test_legacy_equals_numpy_loop_past_the_words() -> None:
    regions = torch.randn(3, 4, 2, 3, dtype=torch.float64)
    words = torch.randn(4, 4, 12, dtype=torch.float64)
    words[:, :, 6:] = 0  # the slice runs into zero slots for c_k >= 6, as in the release
    cap_lens = [2, 5, 9, 11]
    ours = legacy_local_similarity(regions, words, cap_lens, chunk_size=3)
    assert np.allclose(ours.numpy(), numpy_legacy_local(regions.numpy(), words.numpy(), cap_lens), rtol=1e-10)


def test_legacy_rejects_prompts_longer_than_the_slots() -> None:
    regions = torch.randn(1, 4, 2, 2)
    words = torch.randn(2, 4, 97)
    legacy_local_similarity(regions, words, [96, 3])  # 96 = T - 1 still fits
    long_prompt = "x" * 108
    with pytest.raises(ValueError, match=rf"prompt '{long_prompt}' has cap_len 108.*1\.\.96"):
        legacy_local_similarity(regions, words, [3, 108], prompts=["short", long_prompt])
    with pytest.raises(ValueError, match="cap_len 97"):
        legacy_local_similarity(regions, words, [97, 3])
    with pytest.raises(ValueError, match="cap_lens has 1 entries"):
        legacy_local_similarity(regions, words, [3])


def test_default_and_retrieval_local_similarity() -> None:
    cfg = AlignmentConfig(attention_temperature=3.0, word_temperature=6.0, logit_temperature=7.0)
    regions = torch.randn(3, 5, 2, 2, dtype=torch.float64)
    words = torch.randn(2, 5, 8, dtype=torch.float64)
    mask = torch.zeros(2, 8, dtype=torch.bool)
    mask[0, :4] = True
    mask[1, :6] = True
    default = default_local_similarity(regions, words, mask, cfg)
    ref = 7.0 * local_similarity_loop(regions, words, [[0, 1, 2, 3], [0, 1, 2, 3, 4, 5]], 3.0, 6.0)
    assert torch.allclose(default, ref, rtol=1e-10)
    retrieval = retrieval_local_similarity(regions, words, mask, cfg)
    ref_r = 7.0 * local_similarity_loop(regions, words, [[1, 2, 3], [1, 2, 3, 4, 5]], 3.0, 6.0)
    assert torch.allclose(retrieval, ref_r, rtol=1e-10)
    only_cls = mask.clone()
    only_cls[1, 1:] = False
    with pytest.raises(ValueError, match=r"text\(s\) \[1\] have no word besides \[CLS\]"):
        retrieval_local_similarity(regions, words, only_cls, cfg)


def test_cosine_zscore_and_default_combination() -> None:
    a, b = torch.randn(4, 6, dtype=torch.float64), torch.randn(5, 6, dtype=torch.float64)
    ref = np.array([[x @ y / (np.linalg.norm(x) * np.linalg.norm(y)) for y in b.numpy()] for x in a.numpy()])
    assert np.allclose(cosine_matrix(a, b).numpy(), ref, rtol=1e-12)
    assert torch.all(cosine_matrix(torch.zeros(1, 6), b.float()) == 0)  # clamped denominator, no NaN
    with pytest.raises(ValueError, match=r"\(4, 6\) and \(5, 5\)"):
        cosine_matrix(a, b[:, :5])
    x = torch.randn(4, 7, dtype=torch.float64)
    xn = x.numpy()
    assert np.allclose(zscore(x, 1).numpy(), (xn - xn.mean(1, keepdims=True)) / xn.std(1, keepdims=True))
    assert np.allclose(zscore(x, 0).numpy(), (xn - xn.mean(0)) / xn.std(0))
    assert torch.all(zscore(torch.ones(2, 3), 1) == 0)
    g, loc = torch.randn(3, 5), torch.randn(3, 5)
    both = combine_default(g, loc)
    assert torch.allclose(both[1:2], combine_default(g[1:2], loc[1:2]))  # rows independent of other images
