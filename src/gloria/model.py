"""The GLoRIA model: image and text towers, inputs prepared as the release did, and its loss entry points.

State-dict keys equal the release's without the ``gloria.`` prefix (``img_encoder.*``,
``text_encoder.model.*``). Framework-free: no training loop here (see ``gloria.training``).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from gloria.alignment.options import LossOptions
from gloria.config import AlignmentConfig, GloriaConfig
from gloria.encoders.image import ImageEncoder
from gloria.encoders.text import TextEncoder
from gloria.encoders.tokens import TextTokenizer
from gloria.encoders.tokens import release_cap_lens as release_cap_lens  # re-exported
from gloria.types import ImageFeatures, TextFeatures

log = logging.getLogger(__name__)

ImageInput = str | Path | np.ndarray
TEXT_KEYS = ("caption_ids", "attention_mask", "token_type_ids")


class GLoRIA(nn.Module):
    """Image tower ``img_encoder`` + text tower ``text_encoder``; the embedding dim D is the text hidden size.

    ``alignment`` holds the temperatures and loss weights (release: ``temp1``..``temp3``).
    """

    def __init__(self, config: GloriaConfig, *, allow_download: bool = False) -> None:
        super().__init__()
        self.config = config
        self.alignment: AlignmentConfig = config.alignment
        self.text_encoder = TextEncoder(config.text, allow_download=allow_download)
        self.img_encoder = ImageEncoder(config.image, embed_dim=self.text_encoder.embedding_dim)
        self._preprocessor: Any = None

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def embedding_dim(self) -> int:
        return self.text_encoder.embedding_dim

    # ------------------------------------------------------------------------------------------- encoding

    def encode_images(self, images: Tensor) -> ImageFeatures:
        """images [B, 3, H, W] -> ImageFeatures(regions [B, D, h, w], embedding [B, D]), the encoder's own
        outputs (``alignment.local_feature_scale`` is applied by ``gloria.alignment``, where it is used)."""
        features: ImageFeatures = self.img_encoder(images)
        return features

    def encode_texts(self, batch: Mapping[str, Any]) -> TextFeatures:
        """``batch`` with ``caption_ids``, ``attention_mask``, ``token_type_ids`` [K, T] -> TextFeatures."""
        for key in TEXT_KEYS[:2]:
            if key not in batch:
                raise ValueError(f"text batch is missing key {key!r}; it has {sorted(batch)}")
        return self._text_features(batch["caption_ids"], batch["attention_mask"], batch.get("token_type_ids"))

    def _text_features(
        self, ids: Tensor, attention_mask: Tensor, token_type_ids: Tensor | None
    ) -> TextFeatures:
        features: TextFeatures = self.text_encoder(ids, attention_mask, token_type_ids)
        return features

    def compute_losses(
        self,
        image: ImageFeatures,
        text: TextFeatures,
        *,
        legacy_word_counts: bool = False,
        options: LossOptions | None = None,
    ) -> dict[str, Tensor]:
        """The GLoRIA objective (method.md 4, ``gloria.alignment.losses.gloria_objective``) ->
        {"loss", "global_loss", "local_loss", and the four terms} scalars.

        ``legacy_word_counts`` uses the release's word count (words not starting with "[") for the local
        slots instead of the true count. Without ``options``: the local batch only (no gathering).
        """
        from gloria.alignment.losses import gloria_objective

        if options is None:
            options = LossOptions(legacy_word_counts=legacy_word_counts, gather_negatives=False)
        elif legacy_word_counts:
            options = dataclasses.replace(options, legacy_word_counts=True)
        return gloria_objective(image, text, self.alignment, options)

    # ---------------------------------------------------------------------------------- release inputs

    def _image_preprocessor(self) -> Any:
        if self._preprocessor is None:
            from gloria.data.transforms import ImagePreprocessor

            self._preprocessor = ImagePreprocessor(self.config.transforms, train=False)
        return self._preprocessor

    def process_img(
        self, paths_or_arrays: ImageInput | Sequence[ImageInput], device: torch.device | str | None = None
    ) -> Tensor:
        """Read and preprocess images (JPEG/PNG/DICOM paths or arrays) -> [N, 3, crop, crop] on ``device``."""
        from gloria.data.images import read_image

        if isinstance(paths_or_arrays, str | Path | np.ndarray):
            sources: list[Any] = [paths_or_arrays]
        elif isinstance(paths_or_arrays, Sequence):
            sources = list(paths_or_arrays)
        else:
            raise ValueError(
                "process_img takes a path, a numpy array or a list of them, "
                f"got {type(paths_or_arrays).__name__}"
            )
        if not sources:
            raise ValueError("process_img got an empty list of images")
        preprocess = self._image_preprocessor()
        tensors = []
        for index, source in enumerate(sources):
            if not isinstance(source, str | Path | np.ndarray):
                raise ValueError(
                    f"image {index} must be a path or a numpy array, got {type(source).__name__}"
                )
            tensors.append(preprocess(read_image(source)))
        return torch.stack(tensors).to(device if device is not None else self.device)

    def process_text(
        self, texts: str | Sequence[str], device: torch.device | str | None = None, *, keep_short: bool = True
    ) -> dict[str, Any]:
        """Clean and tokenise texts (method.md 6) -> the release's keys plus ``word_counts`` and ``texts``.

        caption_ids / attention_mask / token_type_ids [K, T] long; cap_lens list[int] (the release's count of
        non-"[" characters of each raw text); word_counts [K] long (true words); texts (cleaned strings).
        ``keep_short=False`` is the release's cleaning, which empties one-word prompts.
        """
        tokens = self.text_tokenizer()(texts, keep_short=keep_short)
        target = device if device is not None else self.device
        return {k: v.to(target) if isinstance(v, Tensor) else v for k, v in tokens.items()}

    def text_tokenizer(self) -> TextTokenizer:
        """The picklable cleaner + tokeniser of ``process_text`` (DataLoader workers run it in training)."""
        return TextTokenizer(
            self.text_encoder.tokenizer, self.text_encoder.aggregator, self.config.text.max_length
        )

    def process_class_prompts(
        self, class_prompts: Mapping[str, str | Sequence[str]], device: torch.device | str | None = None
    ) -> dict[str, dict[str, Any]]:
        """{class: prompts} -> {class: process_text(prompts)}."""
        if not class_prompts:
            raise ValueError("process_class_prompts got no classes")
        return {name: self.process_text(prompts, device) for name, prompts in class_prompts.items()}

    # --------------------------------------------------------------------------------- release forward

    def image_encoder_forward(self, imgs: Tensor) -> tuple[Tensor, Tensor]:
        """imgs [N, 3, H, W] -> (img_emb_l [N, D, h, w], img_emb_g [N, D])."""
        features = self.encode_images(imgs)
        return features.regions, features.embedding

    def text_encoder_forward(
        self, caption_ids: Tensor, attention_mask: Tensor, token_type_ids: Tensor | None = None
    ) -> tuple[Tensor, Tensor, list[list[str]]]:
        """ids [K, T] -> (text_emb_l [K, D, T], text_emb_g [K, D], sents: T word strings per text)."""
        features = self._text_features(caption_ids, attention_mask, token_type_ids)
        return features.words, features.embedding, features.word_strings

    def forward(self, batch: Mapping[str, Any]) -> tuple[Tensor, Tensor, Tensor, Tensor, list[list[str]]]:
        """Release batch (``imgs``, ``caption_ids``, ``attention_mask``, ``token_type_ids``) ->
        (img_emb_l [B, D, h, w], img_emb_g [B, D], text_emb_l [B, D, T], text_emb_g [B, D], sents)."""
        if "imgs" not in batch:
            raise ValueError(f"batch is missing key 'imgs'; it has {sorted(batch)}")
        img_emb_l, img_emb_g = self.image_encoder_forward(batch["imgs"])
        text = self.encode_texts(batch)
        return img_emb_l, img_emb_g, text.words, text.embedding, text.word_strings

    def calc_loss(
        self,
        img_emb_l: Tensor,
        img_emb_g: Tensor,
        text_emb_l: Tensor,
        text_emb_g: Tensor,
        sents: Sequence[Sequence[str]],
    ) -> tuple[Tensor, list[Tensor]]:
        """The release's training loss -> (loss, attn_maps: per text [1, n_k + 1, h, w], matched pair).

        Word slots 0..n_k with n_k counted as the release did from ``sents`` (words not starting with "[").
        """
        from gloria.alignment.losses import matched_attention_maps, word_mask_from_counts

        if len(sents) != text_emb_l.shape[0]:
            raise ValueError(f"sents has {len(sents)} texts but text_emb_l has {text_emb_l.shape[0]}")
        counts = torch.tensor(
            [sum(1 for word in sent if not word.startswith("[")) for sent in sents],
            dtype=torch.long,
            device=text_emb_l.device,
        )
        T = text_emb_l.shape[2]
        word_mask = word_mask_from_counts(counts, T)
        image = ImageFeatures(regions=img_emb_l, embedding=img_emb_g)
        text = TextFeatures(
            words=text_emb_l,
            embedding=text_emb_g,
            word_mask=word_mask,
            legacy_word_counts=counts,
            word_strings=[list(s) for s in sents],
        )
        losses = self.compute_losses(image, text, legacy_word_counts=True)
        with torch.no_grad():
            attn_maps = matched_attention_maps(
                img_emb_l,
                text_emb_l,
                word_mask,
                self.alignment.attention_temperature,
                self.alignment.local_feature_scale,
            )
        return losses["loss"], attn_maps
