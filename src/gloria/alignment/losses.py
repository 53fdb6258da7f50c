"""The contrastive objective of GLoRIA (method.md section 4), one implementation for one and N processes:
L = w_local * (CE(S_l) + CE(S_l^T)) + w_global * (CE(S_g) + CE(S_g^T)), and the matched pairs' attention maps.

With ``LossOptions.gather_negatives`` and several processes, each process scores its rows and columns of the
global score matrix against every process's pairs (``gloria.alignment.gather``); with one process (or
without gathering) both come from the one [B, B] matrix, computed once. Training, ``GLoRIA.compute_losses``
and ``gloria.loss`` all call ``gloria_objective``.

Shapes: B matched image-text pairs, D embedding dim, T word slots, h x w regions.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from gloria.alignment.attention import check_regions_words, scaled_local_features, two_stage_attention
from gloria.alignment.gather import block_contrastive_terms, gather_no_grad, gather_with_grad, world
from gloria.alignment.options import LossOptions, Recompute
from gloria.alignment.similarity import cosine_matrix, local_logits
from gloria.alignment.targets import group_targets, key_groups
from gloria.config import AlignmentConfig
from gloria.types import ImageFeatures, TextFeatures

LOSS_KEYS = ("loss", "global_loss", "local_loss", "global_i2t", "global_t2i", "local_i2t", "local_t2i")


def contrastive_terms(logits: Tensor, targets: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """logits [B,B] (row i image, column k text) -> (CE(S, arange), CE(S^T, arange)), image->text first."""
    if logits.dim() != 2 or logits.shape[0] != logits.shape[1]:
        raise ValueError(f"contrastive logits must be square [B, B], got {tuple(logits.shape)}")
    return block_contrastive_terms(logits, logits, 0, targets)


def _pair_terms(
    score: Callable[[tuple[Tensor, ...], tuple[Tensor, ...]], Tensor],
    images: tuple[Tensor, ...],
    texts: tuple[Tensor, ...],
    *,
    gather: bool,
    targets: Tensor | None,
) -> tuple[Tensor, Tensor]:
    """(image->text, text->image) cross-entropies of ``score(images, texts)`` [n, k], this process's pairs.

    Every tensor is [B, ...] (pair i = images[.][i] with texts[.][i]); floating tensors are gathered with
    gradient, the others (masks) without. Without gathering, or with one process, one [B, B] matrix serves
    rows and columns.
    """
    rank, size = world()
    if not gather or size == 1:
        scores = score(images, texts)
        return block_contrastive_terms(scores, scores, 0, targets)

    def everyone(parts: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
        return tuple(gather_with_grad(t) if t.is_floating_point() else gather_no_grad(t) for t in parts)

    rows = score(images, everyone(texts))  # [B, NB]: this rank's images vs every text
    cols = score(everyone(images), texts)  # [NB, B]: every image vs this rank's texts
    return block_contrastive_terms(rows, cols, rank * images[0].shape[0], targets)


def global_loss_terms(
    img: Tensor,
    txt: Tensor,
    temperature: float = 10.0,
    eps: float = 1e-8,
    *,
    gather: bool = False,
    targets: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """img [B,D], txt [B,D] -> (l_i2t, l_t2i) of S_g = temperature * cos(img_i, txt_k)."""
    if img.shape != txt.shape:
        raise ValueError(
            f"global loss needs matched [B, D] embeddings, got {tuple(img.shape)} and {tuple(txt.shape)}"
        )

    def score(i: tuple[Tensor, ...], t: tuple[Tensor, ...]) -> Tensor:
        return temperature * cosine_matrix(i[0], t[0], eps)

    return _pair_terms(score, (img,), (txt,), gather=gather, targets=targets)


def local_loss_terms(
    regions: Tensor,
    words: Tensor,
    word_mask: Tensor,
    cfg: AlignmentConfig,
    options: LossOptions | None = None,
    *,
    chunk_size: int | None = None,
    recompute: Recompute | None = None,
    targets: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """regions [B,D,h,w], words [B,D,T], word_mask [B,T] -> (l_i2t, l_t2i) of S_l = logit_temperature * Z,
    with ``cfg.local_feature_scale`` applied here. ``chunk_size`` / ``recompute`` override ``options``'
    ``texts_per_block`` / ``recompute``."""
    check_regions_words(regions, words, word_mask)
    if regions.shape[0] != words.shape[0]:
        raise ValueError(
            f"local loss needs matched pairs: regions {tuple(regions.shape)}, words {tuple(words.shape)}"
        )
    opts = options or LossOptions(gather_negatives=False)
    blocks = {
        "chunk_size": opts.texts_per_block if chunk_size is None else chunk_size,
        "image_chunk_size": opts.images_per_block,
        "recompute": opts.recompute if recompute is None else recompute,
    }
    scale = cfg.local_feature_scale
    regions, words = scaled_local_features(regions, scale), scaled_local_features(words, scale)
    word_mask = word_mask.to(device=words.device, dtype=torch.bool)

    def score(i: tuple[Tensor, ...], t: tuple[Tensor, ...]) -> Tensor:
        return local_logits(i[0], t[0], t[1], cfg, **blocks)

    return _pair_terms(score, (regions,), (words, word_mask), gather=opts.gather_negatives, targets=targets)


def loss_word_mask(
    text: TextFeatures, word_mask: Tensor | None = None, legacy_word_counts: bool = False
) -> Tensor:
    """The [K,T] slots of the local loss: ``word_mask`` if given, the release's slots 0..n_k of
    ``legacy_word_counts`` if asked, else ``text.word_mask`` (CLS and every real word)."""
    if word_mask is not None:
        return word_mask
    if legacy_word_counts:
        return word_mask_from_counts(text.legacy_word_counts.to(text.words.device), text.words.shape[2])
    return text.word_mask


def word_mask_from_counts(counts: Tensor, num_slots: int) -> Tensor:
    """[K] word counts n_k -> [K, T] bool mask of slots 0..n_k (CLS and the words): the one slot rule
    (the release's ``cap_lens`` c_k is n_k + 1 slots)."""
    return torch.arange(num_slots, device=counts.device).unsqueeze(0) <= counts.unsqueeze(1)


def false_negative_targets(
    groups: Tensor | None, options: LossOptions, dtype: torch.dtype = torch.float32
) -> Tensor | None:
    """The [M, M] targets of ``options.false_negatives`` from this process's [B] or [B, ...] integer keys
    (``"same_text"``: the token ids the text encoder saw), gathered from every process when the negatives
    are (M = processes * B, else M = B): pairs with equal keys share their row's target mass evenly.

    None (the one-hot targets, bit for bit) for ``"none"`` and when every key of the M pairs is distinct.
    """
    if options.false_negatives == "none":
        if groups is not None:
            raise ValueError("group keys were given but loss.false_negatives is 'none'")
        return None
    if groups is None:
        raise ValueError(
            f"loss.false_negatives={options.false_negatives!r} needs the batch's group keys "
            "(the token ids of the texts: caption_ids [B, T])"
        )
    _, size = world()
    every = gather_no_grad(groups) if options.gather_negatives and size > 1 else groups
    ids = key_groups(every)  # [M]
    if int(ids.max()) + 1 == ids.shape[0]:  # all distinct: the identity, kept as the one-hot path
        return None
    return group_targets(ids, dtype)


def gloria_objective(
    image: ImageFeatures,
    text: TextFeatures,
    cfg: AlignmentConfig,
    options: LossOptions | None = None,
    *,
    word_mask: Tensor | None = None,
    targets: Tensor | None = None,
    groups: Tensor | None = None,
) -> dict[str, Tensor]:
    """The GLoRIA loss of this process's B pairs: {"loss", "global_loss", "local_loss", and the four terms
    "global_i2t", "global_t2i", "local_i2t", "local_t2i"}; every value a scalar in the inputs' dtype.

    image.regions [B,D,h,w], image.embedding [B,D], text.words [B,D,T], text.embedding [B,D]; ``options``
    default: ``LossOptions()`` (negatives gathered under several processes). ``word_mask`` [B,T] replaces the
    slots of ``options.legacy_word_counts`` / ``text.word_mask``. ``targets`` [M, M] over every gathered pair
    (M = processes * B) replaces the one-hot targets (see ``block_contrastive_terms``). ``groups`` [B] or
    [B, ...] integer keys of this process's pairs (for ``options.false_negatives`` other than ``"none"``;
    ``"same_text"``: ``caption_ids``) give the targets of :func:`false_negative_targets`.
    """
    opts = options or LossOptions()
    B = image.embedding.shape[0]
    if text.embedding.shape[0] != B:
        raise ValueError(f"{B} images but {text.embedding.shape[0]} texts: pairs must match one to one")
    if groups is not None and groups.shape[0] != B:
        raise ValueError(f"{B} pairs but group keys of shape {tuple(groups.shape)}")
    if targets is not None and opts.false_negatives != "none":
        raise ValueError(f"targets were given and loss.false_negatives={opts.false_negatives!r}: pick one")
    if targets is None:
        targets = false_negative_targets(groups, opts, image.embedding.dtype)
    mask = loss_word_mask(text, word_mask, opts.legacy_word_counts)
    l_i2t, l_t2i = local_loss_terms(image.regions, text.words, mask, cfg, opts, targets=targets)
    g_i2t, g_t2i = global_loss_terms(
        image.embedding, text.embedding, cfg.logit_temperature, gather=opts.gather_negatives, targets=targets
    )
    local = l_i2t + l_t2i
    glob = g_i2t + g_t2i
    return {
        "loss": cfg.local_weight * local + cfg.global_weight * glob,
        "global_loss": glob,
        "local_loss": local,
        "global_i2t": g_i2t,
        "global_t2i": g_t2i,
        "local_i2t": l_i2t,
        "local_t2i": l_t2i,
    }


def gloria_loss(
    image: ImageFeatures,
    text: TextFeatures,
    cfg: AlignmentConfig,
    word_mask: Tensor | None = None,
    *,
    legacy_word_counts: bool = False,
    chunk_size: int | None = None,
    recompute: Recompute = "auto",
    gather: bool = False,
    targets: Tensor | None = None,
) -> dict[str, Tensor]:
    """``gloria_objective`` with its options as keywords (``chunk_size``: texts per block); by default the
    local batch only (``gather=True``: negatives from every process)."""
    options = LossOptions(
        legacy_word_counts=legacy_word_counts,
        gather_negatives=gather,
        texts_per_block=chunk_size,
        recompute=recompute,
    )
    return gloria_objective(image, text, cfg, options, word_mask=word_mask, targets=targets)


def matched_attention_maps(
    regions: Tensor,
    words: Tensor,
    word_mask: Tensor,
    attention_temperature: float,
    local_feature_scale: float | None = None,
) -> list[Tensor]:
    """Attention of text k's masked slots over image k's regions: a list of B tensors [1, n_k, h, w]
    (n_k = slots selected for text k, in slot order), as the release's ``calc_loss`` returned them."""
    regions = scaled_local_features(regions, local_feature_scale)
    words = scaled_local_features(words, local_feature_scale)
    _, attention = two_stage_attention(words, regions, word_mask, attention_temperature)  # [B, T, h, w]
    return [attention[k, word_mask[k]].unsqueeze(0) for k in range(attention.shape[0])]


__all__ = [
    "LOSS_KEYS",
    "contrastive_terms",
    "false_negative_targets",
    "global_loss_terms",
    "gloria_loss",
    "gloria_objective",
    "local_loss_terms",
    "loss_word_mask",
    "matched_attention_maps",
    "word_mask_from_counts",
]
