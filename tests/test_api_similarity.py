"""gloria.api: get_similarities / zero_shot_classification wiring, batch independence, legacy rules, chunked
image encoding (each image once), with a small fake model and once with the real tiny model."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from gloria.alignment.similarity import cosine_matrix, default_local_similarity, zscore
from gloria.api import get_similarities, zero_shot_classification
from gloria.config import AlignmentConfig, GloriaConfig
from gloria.types import ImageFeatures, TextFeatures
from support.alignment_reference import numpy_legacy_local

T = 12


class FakeModel:
    """Regions = a fixed projection of 2x3-pooled pixels; words = an embedding table of the ids."""

    def __init__(self, D: int = 6) -> None:
        gen = torch.Generator().manual_seed(1)
        self.config = GloriaConfig(alignment=AlignmentConfig(word_temperature=4.0, logit_temperature=8.0))
        self.proj = torch.randn(D, 3, generator=gen, dtype=torch.float64)
        self.table = torch.randn(40, D, generator=gen, dtype=torch.float64)
        self.image_batches: list[int] = []

    def encode_images(self, images: torch.Tensor) -> ImageFeatures:
        self.image_batches.append(images.shape[0])
        regions = torch.einsum("dc,nchw->ndhw", self.proj, F.adaptive_avg_pool2d(images.double(), (2, 3)))
        return ImageFeatures(regions=regions, embedding=regions.flatten(2).max(dim=2).values)

    def encode_texts(self, batch: dict[str, Any]) -> TextFeatures:
        ids, attn = batch["caption_ids"], batch["attention_mask"]
        words = (self.table[ids] * attn.unsqueeze(2)).transpose(1, 2)  # [K, D, T]
        counts = attn.sum(dim=1) - 2  # real words: without [CLS] and [SEP]
        mask = torch.arange(T).unsqueeze(0) <= counts.unsqueeze(1)
        return TextFeatures(words, words.sum(dim=2) / T, mask, counts, [[] for _ in range(ids.shape[0])])


def texts(lengths: list[int], seed: int) -> dict[str, Any]:
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, 40, (len(lengths), T), generator=gen)
    attn = (torch.arange(T).unsqueeze(0) < torch.tensor(lengths).unsqueeze(1)).long()
    return {
        "caption_ids": ids,
        "attention_mask": attn,
        "token_type_ids": torch.zeros_like(ids),
        "cap_lens": [n + 2 for n in lengths],  # a character count: runs past the words, as in the release
        "texts": [f"prompt {seed}.{k}" for k in range(len(lengths))],
    }


def classes() -> dict[str, dict[str, Any]]:
    return {"a": texts([4, 6, 3], 1), "b": texts([5, 7], 2), "c": texts([3, 3, 8, 5], 3)}


def test_legacy_similarities_are_the_release_formulas() -> None:
    model, imgs, txts = FakeModel(), torch.randn(4, 3, 8, 9), texts([4, 6, 3], 7)
    feats = model.encode_images(imgs)
    text = model.encode_texts(txts)
    glob = cosine_matrix(feats.embedding, text.embedding).numpy()
    local = numpy_legacy_local(feats.regions.numpy(), text.words.numpy(), txts["cap_lens"])
    assert np.allclose(get_similarities(model, imgs, txts, "global", legacy=True), glob, rtol=1e-12)
    assert np.allclose(
        get_similarities(model, imgs, txts, "local", legacy=True, chunk_size=3), local, rtol=1e-10
    )
    assert np.allclose(
        get_similarities(model, imgs, txts, "both", legacy=True), (glob + local) / 2, rtol=1e-10
    )


def test_default_both_zscores_over_the_texts_of_one_image() -> None:
    model, imgs, txts = FakeModel(), torch.randn(3, 3, 8, 9), texts([4, 6, 3, 5], 8)
    feats, text = model.encode_images(imgs), model.encode_texts(txts)
    glob = cosine_matrix(feats.embedding, text.embedding)
    local = default_local_similarity(feats.regions, text.words, text.word_mask, model.config.alignment)
    expected = (zscore(glob, 1) + zscore(local, 1)).numpy() / 2
    assert np.allclose(get_similarities(model, imgs, txts), expected, rtol=1e-10)
    assert np.allclose(get_similarities(model, imgs, txts, "local"), local.numpy(), rtol=1e-10)


def test_default_zero_shot_scores_do_not_depend_on_other_images() -> None:
    model, mapping = FakeModel(), classes()
    imgs = torch.randn(5, 3, 8, 9)
    alone = zero_shot_classification(model, imgs[:1], mapping)
    together = zero_shot_classification(model, imgs, mapping, chunk_size=2)
    assert list(together.columns) == ["a", "b", "c"] and together.shape == (5, 3)
    assert np.allclose(together.iloc[0].to_numpy(), alone.iloc[0].to_numpy(), rtol=1e-10)
    perm = torch.randperm(5)
    shuffled = zero_shot_classification(model, imgs[perm], mapping)
    assert np.allclose(shuffled.to_numpy(), together.to_numpy()[perm.numpy()], rtol=1e-10)


def test_zero_shot_per_class_max_or_mean_over_prompts() -> None:
    model, mapping, imgs = FakeModel(), classes(), torch.randn(2, 3, 8, 9)
    merged = {key: torch.cat([m[key] for m in mapping.values()]) for key in ("caption_ids", "attention_mask")}
    both = get_similarities(model, imgs, merged)  # z-scored over all 9 prompts of an image
    parts = np.split(both, [3, 5], axis=1)
    scores = zero_shot_classification(model, imgs, mapping, ensemble="max").to_numpy()
    assert np.allclose(scores, np.stack([np.max(p, axis=1) for p in parts], axis=1), rtol=1e-10)
    # mean (the one meaning, as in `gloria zero-shot`): global cosine to the mean unit prompt embedding,
    # the mean of the prompts' local scores, each z-scored over the classes, averaged
    feats = model.encode_images(imgs)
    glob, local = [], []
    for txts in mapping.values():
        text = model.encode_texts(txts)
        centroid = F.normalize(text.embedding, dim=1).mean(dim=0, keepdim=True)
        glob.append(cosine_matrix(feats.embedding, centroid)[:, 0])
        sims = default_local_similarity(feats.regions, text.words, text.word_mask, model.config.alignment)
        local.append(sims.mean(dim=1))
    expected = (zscore(torch.stack(glob, 1), 1) + zscore(torch.stack(local, 1), 1)) / 2
    scores = zero_shot_classification(model, imgs, mapping, ensemble="mean").to_numpy()
    assert np.allclose(scores, expected.numpy(), rtol=1e-10)


def test_legacy_zero_shot_zscores_each_class_across_images() -> None:
    model, mapping, imgs = FakeModel(), classes(), torch.randn(6, 3, 8, 9)
    per_class = np.stack(
        [get_similarities(model, imgs, txts, legacy=True).max(axis=1) for txts in mapping.values()], axis=1
    )
    expected = (per_class - per_class.mean(axis=0)) / per_class.std(axis=0)
    scores = zero_shot_classification(model, imgs, mapping, legacy=True, chunk_size=4)
    assert np.allclose(scores.to_numpy(), expected, rtol=1e-10)
    single = zero_shot_classification(model, imgs[:1], mapping, legacy=True)
    assert np.allclose(single.to_numpy(), per_class[:1], rtol=1e-10)  # one image: no standardisation


def test_each_image_is_encoded_once_in_chunks() -> None:
    model = FakeModel()
    zero_shot_classification(model, torch.randn(7, 3, 8, 9), classes(), chunk_size=3)
    assert model.image_batches == [3, 3, 1]


def test_bad_inputs_raise_value_errors() -> None:
    model, imgs, txts = FakeModel(), torch.randn(2, 3, 8, 9), texts([4, 5], 1)
    no_caps = {k: v for k, v in txts.items() if k != "cap_lens"}
    with pytest.raises(ValueError, match=r"missing key\(s\) \['cap_lens'\]"):
        get_similarities(model, imgs, no_caps, legacy=True)
    with pytest.raises(ValueError, match="similarity_type"):
        get_similarities(model, imgs, txts, "cosine")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"\[N, 3, H, W\].*\(3, 8, 9\)"):
        get_similarities(model, imgs[0], txts)
    with pytest.raises(ValueError, match=r"'prompt 1\.1' has cap_len 13"):
        get_similarities(model, imgs, {**txts, "cap_lens": [3, 13]}, legacy=True)
    with pytest.raises(ValueError, match="ensemble"):
        zero_shot_classification(model, imgs, classes(), ensemble="median")  # type: ignore[arg-type]


def test_real_tiny_model_zero_shot(tiny_model) -> None:
    mapping = tiny_model.process_class_prompts(
        {"Effusion": ["small left pleural effusion", "bilateral effusions"], "Normal": ["no acute disease"]}
    )
    imgs = torch.randn(3, 3, 64, 64)
    scores = zero_shot_classification(tiny_model, imgs, mapping)
    legacy = zero_shot_classification(tiny_model, imgs, mapping, legacy=True)
    assert list(scores.columns) == ["Effusion", "Normal"] and scores.shape == legacy.shape == (3, 2)
    assert np.allclose(legacy.to_numpy().mean(axis=0), 0, atol=1e-5)  # columns standardised across images
    first = zero_shot_classification(tiny_model, imgs[:1], mapping)
    assert np.allclose(first.to_numpy()[0], scores.to_numpy()[0], rtol=1e-4, atol=1e-5)
