"""Chunked retrieval equals the full-matrix computation; the paper protocol on hand-made features."""

from __future__ import annotations

import pytest
import torch

from gloria.alignment.similarity import combine_default, cosine_matrix, retrieval_local_similarity
from gloria.config import AlignmentConfig
from gloria.tasks import metrics as M
from gloria.tasks import retrieval as R


def _inputs(N: int = 23, K: int = 19, D: int = 8, T: int = 7, h: int = 3, w: int = 3) -> R.RetrievalInputs:
    g = torch.Generator().manual_seed(0)
    mask = torch.zeros(K, T, dtype=torch.bool)
    counts = torch.randint(1, T - 1, (K,), generator=g)
    for k in range(K):
        mask[k, : int(counts[k]) + 1] = True
    return R.RetrievalInputs(
        image_embedding=torch.randn(N, D, generator=g, dtype=torch.float64),
        text_embedding=torch.randn(K, D, generator=g, dtype=torch.float64),
        regions=torch.randn(N, D, h, w, generator=g, dtype=torch.float64),
        words=torch.randn(K, D, T, generator=g, dtype=torch.float64),
        word_mask=mask,
    )


@pytest.mark.parametrize("similarity", R.SIMILARITIES)
@pytest.mark.parametrize("direction", R.DIRECTIONS)
def test_chunked_scores_and_precision_equal_the_full_matrix(
    direction: R.Direction, similarity: R.Similarity
) -> None:
    inputs = _inputs()
    cfg = AlignmentConfig()
    glob = cosine_matrix(inputs.image_embedding, inputs.text_embedding)
    assert inputs.regions is not None and inputs.words is not None and inputs.word_mask is not None
    loc = retrieval_local_similarity(inputs.regions, inputs.words, inputs.word_mask, cfg)
    if direction == "text_to_image":
        glob, loc = glob.t(), loc.t()
    full = {"global": glob, "local": loc, "both": combine_default(glob, loc)}[similarity]
    chunked = R.full_scores(inputs, direction=direction, similarity=similarity, alignment=cfg, chunk_size=4)
    torch.testing.assert_close(chunked, full, rtol=1e-10, atol=1e-10)
    img_lab = torch.arange(23) % 3
    txt_lab = torch.arange(19) % 3
    result = R.evaluate_retrieval(
        inputs,
        img_lab,
        txt_lab,
        direction=direction,
        similarity=similarity,
        alignment=cfg,
        ks=(1, 5, 10),
        chunk_size=5,
    )
    q, c = (img_lab, txt_lab) if direction == "image_to_text" else (txt_lab, img_lab)
    assert result.precision == pytest.approx(
        M.precision_at_k(full.numpy(), q.numpy(), c.numpy(), ks=(1, 5, 10))
    )
    assert result.n_queries == q.shape[0] and result.n_candidates == c.shape[0]


def test_both_row_of_one_query_ignores_the_other_queries() -> None:
    inputs = _inputs()
    cfg = AlignmentConfig()
    whole = R.full_scores(inputs, direction="image_to_text", similarity="both", alignment=cfg)
    assert inputs.regions is not None
    alone = R.full_scores(
        R.RetrievalInputs(
            inputs.image_embedding[5:6],
            inputs.text_embedding,
            inputs.regions[5:6],
            inputs.words,
            inputs.word_mask,
        ),
        direction="image_to_text",
        similarity="both",
        alignment=cfg,
    )
    torch.testing.assert_close(alone[0], whole[5])


def test_perfectly_aligned_features_retrieve_their_class() -> None:
    # class prototypes: image and text embeddings of class c point the same way
    protos = torch.eye(4, dtype=torch.float64)
    img_lab = torch.arange(40) % 4
    txt_lab = torch.arange(20) % 4
    noise = 0.05 * torch.randn(40, 4, dtype=torch.float64)
    inputs = R.RetrievalInputs(protos[img_lab] + noise, protos[txt_lab])
    res = R.evaluate_retrieval(
        inputs,
        img_lab,
        txt_lab,
        direction="image_to_text",
        similarity="global",
        alignment=AlignmentConfig(),
        ks=(1, 5),
    )
    assert res.precision == {1: 1.0, 5: 1.0}
    # shuffled text labels: P@5 drops towards the class share (0.25)
    shuffled = txt_lab[torch.randperm(20)]
    res = R.evaluate_retrieval(
        inputs,
        img_lab,
        shuffled,
        direction="image_to_text",
        similarity="global",
        alignment=AlignmentConfig(),
        ks=(5,),
    )
    assert res.precision[5] < 0.9


def test_bad_inputs_raise() -> None:
    inputs = R.RetrievalInputs(torch.randn(3, 4), torch.randn(2, 4))
    with pytest.raises(ValueError, match="needs image regions"):
        next(
            R.score_chunks(inputs, direction="image_to_text", similarity="local", alignment=AlignmentConfig())
        )
    with pytest.raises(ValueError, match="K values"):
        R.evaluate_retrieval(
            inputs,
            [0, 1, 0],
            [0, 1],
            direction="image_to_text",
            similarity="global",
            alignment=AlignmentConfig(),
            ks=(3,),
        )
    with pytest.raises(ValueError, match="labels"):
        R.evaluate_retrieval(
            inputs,
            [0, 1],
            [0, 1],
            direction="image_to_text",
            similarity="global",
            alignment=AlignmentConfig(),
        )
