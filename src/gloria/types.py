"""Typed results passed between the encoders, the alignment maths and the tasks.

Shapes use one alphabet: B images, K texts, D embedding dim, T token/word slots, h x w image regions.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor


@dataclass
class ImageFeatures:
    """Output of the image tower.

    regions:   [B, D, h, w] projected layer3-stride features (release: ``img_emb_l``)
    embedding: [B, D] projected pooled feature (release: ``img_emb_g``)
    """

    regions: Tensor
    embedding: Tensor


@dataclass
class TextFeatures:
    """Output of the text tower after word-piece and layer aggregation.

    words:        [K, D, T] word vectors, channels first (release: ``text_emb_l``); slot 0 is [CLS],
                  slots 1..n_k the words, slot n_k+1 [SEP], later slots zero
    embedding:    [K, D] global text vector (release: ``text_emb_g``)
    word_mask:    [K, T] bool, True on the slots the local loss uses by default: CLS and every real word
                  (slots 0..n_k, n_k the true word count)
    legacy_word_counts: [K] long, n_k as the release counted it (aggregated words not starting with "[",
                  so an [UNK] word is not counted); the release's local loss used slots 0..n_k of that count
    word_strings: per text, the aggregated word strings of every slot ("[CLS]", words, "[SEP]", "[PAD]"...)
    """

    words: Tensor
    embedding: Tensor
    word_mask: Tensor
    legacy_word_counts: Tensor
    word_strings: list[list[str]]
