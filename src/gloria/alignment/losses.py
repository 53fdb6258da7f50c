"""The contrastive objectives of GLoRIA (method.md section 4): global and local image-text losses,
L = w_local * (CE(S_l) + CE(S_l^T)) + w_global * (CE(S_g) + CE(S_g^T)), and the matched pairs' attention maps.

Shapes: B matched image-text pairs, D embedding dim, T word slots, h x w regions.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from gloria.alignment.attention import check_regions_words, two_stage_attention
from gloria.alignment.similarity import cosine_matrix, default_local_similarity
from gloria.config import AlignmentConfig
from gloria.types import ImageFeatures, TextFeatures


def contrastive_terms(logits: Tensor) -> tuple[Tensor, Tensor]:
    """logits [B,B] (row i image, column k text) -> (CE(S, arange), CE(S^T, arange)), image->text first."""
    if logits.dim() != 2 or logits.shape[0] != logits.shape[1]:
        raise ValueError(f"contrastive logits must be square [B, B], got {tuple(logits.shape)}")
    labels = torch.arange(logits.shape[0], device=logits.device)
    return F.cross_entropy(logits, labels), F.cross_entropy(logits.t(), labels)


def global_loss_terms(
    img: Tensor, txt: Tensor, temperature: float = 10.0, eps: float = 1e-8
) -> tuple[Tensor, Tensor]:
    """img [B,D], txt [B,D] -> (l_i2t, l_t2i) of S_g = temperature * cos(img_i, txt_k)."""
    if img.shape != txt.shape:
        raise ValueError(
            f"global loss needs matched [B, D] embeddings, got {tuple(img.shape)} and {tuple(txt.shape)}"
        )
    return contrastive_terms(temperature * cosine_matrix(img, txt, eps))


def local_loss_terms(
    regions: Tensor,
    words: Tensor,
    word_mask: Tensor,
    cfg: AlignmentConfig,
    *,
    chunk_size: int | None = None,
    recompute: bool = False,
) -> tuple[Tensor, Tensor]:
    """regions [B,D,h,w], words [B,D,T], word_mask [B,T] -> (l_i2t, l_t2i) of S_l = logit_temperature * Z."""
    check_regions_words(regions, words, word_mask)
    if regions.shape[0] != words.shape[0]:
        raise ValueError(
            f"local loss needs matched pairs: regions {tuple(regions.shape)}, words {tuple(words.shape)}"
        )
    scores = default_local_similarity(
        regions, words, word_mask, cfg, chunk_size=chunk_size, recompute=recompute
    )  # logit_temperature * Z
    return contrastive_terms(scores)


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
    """[K] word counts n_k -> [K, T] bool mask of slots 0..n_k (CLS and the words)."""
    return torch.arange(num_slots, device=counts.device).unsqueeze(0) <= counts.unsqueeze(1)


def gloria_loss(
    image: ImageFeatures,
    text: TextFeatures,
    cfg: AlignmentConfig,
    word_mask: Tensor | None = None,
    *,
    legacy_word_counts: bool = False,
    chunk_size: int | None = None,
    recompute: bool = False,
) -> dict[str, Tensor]:
    """Total loss of a batch of B matched pairs: {"loss", "global_loss", "local_loss", and the four terms
    "global_i2t", "global_t2i", "local_i2t", "local_t2i"}; every value a scalar in the inputs' dtype."""
    mask = loss_word_mask(text, word_mask, legacy_word_counts)
    l_i2t, l_t2i = local_loss_terms(
        image.regions, text.words, mask, cfg, chunk_size=chunk_size, recompute=recompute
    )
    g_i2t, g_t2i = global_loss_terms(image.embedding, text.embedding, cfg.logit_temperature)
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


def matched_attention_maps(
    regions: Tensor, words: Tensor, word_mask: Tensor, attention_temperature: float
) -> list[Tensor]:
    """Attention of text k's masked slots over image k's regions: a list of B tensors [1, n_k, h, w]
    (n_k = slots selected for text k, in slot order), as the release's ``calc_loss`` returned them."""
    _, attention = two_stage_attention(words, regions, word_mask, attention_temperature)  # [B, T, h, w]
    return [attention[k, word_mask[k]].unsqueeze(0) for k in range(attention.shape[0])]


__all__ = [
    "contrastive_terms",
    "global_loss_terms",
    "gloria_loss",
    "local_loss_terms",
    "loss_word_mask",
    "matched_attention_maps",
]
