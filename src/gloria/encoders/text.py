"""The text tower (method.md section 2): BERT hidden states of the last n layers -> word slots -> words
[K, D, T] and the global text vector [K, D] (mean over all T slots, then summed over the layers).
"""

from __future__ import annotations

import importlib.resources
import logging
import os
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from transformers import AutoModel, AutoTokenizer, BertConfig, BertModel, BertTokenizer

from gloria.config import TextEncoderConfig
from gloria.encoders.offline_models import install_hint, packaged_model_dir
from gloria.encoders.wordpieces import WordPieceAggregator
from gloria.types import TextFeatures

log = logging.getLogger(__name__)


def resolve_vocab_file(vocab_file: str) -> Path:
    """A vocabulary path; a bare file name is looked up in the package's ``assets/``."""
    path = Path(vocab_file)
    if path.is_file():
        return path
    if path.name == vocab_file:
        asset = importlib.resources.files("gloria") / "assets" / vocab_file
        if asset.is_file():
            return Path(str(asset))
    raise FileNotFoundError(
        f"vocabulary file {vocab_file!r} not found (neither as a path nor in gloria/assets/)"
    )


def _hub_cache_dir() -> str:
    try:
        from huggingface_hub.constants import HF_HUB_CACHE

        return str(HF_HUB_CACHE)
    except ImportError:  # pragma: no cover - huggingface_hub ships with transformers
        return os.path.expanduser("~/.cache/huggingface/hub")


def load_pretrained_text_model(
    name: str, *, allow_download: bool = False, dropout: float | None = None
) -> tuple[BertModel, Any]:
    """A Hugging Face model + tokenizer from a local directory, an offline package carrying the hub id
    (``gloria.encoders.offline_models``), or the local hub cache.

    The hub is only contacted when ``allow_download`` is true; otherwise a missing model raises
    ``FileNotFoundError`` saying what is missing and where to put it. ``dropout`` replaces the model's
    hidden and attention dropout probabilities. The model is returned in train mode, like any new module
    (Hugging Face returns it in eval mode, which would silently switch its dropout off in training).
    """
    local_dir = Path(name).expanduser()
    is_dir = local_dir.is_dir()
    packaged = None if is_dir else packaged_model_dir(name)
    if packaged is not None:
        log.info("text model %s read from its offline package: %s", name, packaged)
        local_dir, is_dir = packaged, True
    source = str(local_dir) if is_dir else name
    local_only = is_dir or not allow_download
    try:
        overrides: dict[str, Any] = {}
        if dropout is not None:
            overrides = {"hidden_dropout_prob": dropout, "attention_probs_dropout_prob": dropout}
        model = AutoModel.from_pretrained(
            source, local_files_only=local_only, attn_implementation="eager", **overrides
        )
        tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=local_only)
    except (OSError, ValueError) as err:
        if is_dir:
            raise FileNotFoundError(
                f"text model directory {str(local_dir)!r} is incomplete: it needs config.json, the weights "
                f"(model.safetensors or pytorch_model.bin) and the tokenizer files (vocab.txt). ({err})"
            ) from None
        if isinstance(err, ValueError):
            raise
        raise FileNotFoundError(
            f"text model {name!r} is not available offline: it is neither a local directory nor in the "
            f"Hugging Face cache ({_hub_cache_dir()}). Download it once on a connected machine "
            f"(`huggingface-cli download {name}`) and copy the cache, or set the text model to a local "
            f"directory holding config.json, the weights and vocab.txt.{install_hint(name)}"
        ) from None
    return model.train(), tokenizer


class TextEncoder(nn.Module):
    """BERT-family text tower.

    Attributes keep the release's names: ``model`` (HF ``BertModel``, state-dict keys ``embeddings.*``,
    ``encoder.layer.N.*``, ``pooler.*``) and ``tokenizer``. The embedding dimension D is the hidden size H.
    """

    def __init__(self, cfg: TextEncoderConfig, *, allow_download: bool = False) -> None:
        super().__init__()
        if cfg.last_n_layers < 1:
            raise ValueError(f"text.last_n_layers must be >= 1, got {cfg.last_n_layers}")
        self.cfg = cfg
        if cfg.bert_config is not None:
            if cfg.vocab_file is None:
                raise ValueError(
                    "text.vocab_file is required when text.bert_config builds a model from scratch"
                )
            vocab_path = resolve_vocab_file(cfg.vocab_file)
            self.tokenizer = BertTokenizer(vocab=str(vocab_path), do_lower_case=cfg.do_lower_case)
            vocab_size = len(self.tokenizer.get_vocab())
            given = cfg.bert_config.get("vocab_size", vocab_size)
            if given != vocab_size:
                raise ValueError(
                    f"text.bert_config.vocab_size is {given} but {vocab_path} has {vocab_size} entries"
                )
            bert_kwargs: dict[str, Any] = {"attn_implementation": "eager", **dict(cfg.bert_config)}
            if cfg.dropout is not None:
                bert_kwargs.update(hidden_dropout_prob=cfg.dropout, attention_probs_dropout_prob=cfg.dropout)
            bert_kwargs["vocab_size"] = vocab_size
            bert_cfg = BertConfig(**bert_kwargs)
            self.model: BertModel = BertModel(bert_cfg, add_pooling_layer=True)
        else:
            self.model, self.tokenizer = load_pretrained_text_model(
                cfg.model, allow_download=allow_download, dropout=cfg.dropout
            )
        n_layers = int(self.model.config.num_hidden_layers)
        if cfg.last_n_layers > n_layers + 1:
            raise ValueError(
                f"text.last_n_layers={cfg.last_n_layers} exceeds the {n_layers + 1} hidden states "
                f"of {cfg.model!r}"
            )
        self.embedding_dim = int(self.model.config.hidden_size)
        self.aggregator = WordPieceAggregator.from_tokenizer(self.tokenizer, merge_pieces=cfg.agg_tokens)
        if cfg.freeze_layers:
            self.freeze_layers(cfg.freeze_layers)

    def freeze_layers(self, n: int) -> None:
        """Freeze the embeddings and the lowest ``n`` transformer layers (``n=0`` unfreezes everything)."""
        layers = self.model.encoder.layer
        if not 0 <= n <= len(layers):
            raise ValueError(f"freeze_layers must be in [0, {len(layers)}], got {n}")
        for p in self.model.parameters():
            p.requires_grad_(True)
        if n == 0:
            return
        for p in self.model.embeddings.parameters():
            p.requires_grad_(False)
        for layer in layers[:n]:
            for p in layer.parameters():
                p.requires_grad_(False)

    def forward(
        self, ids: Tensor, attention_mask: Tensor, token_type_ids: Tensor | None = None
    ) -> TextFeatures:
        """Encode ``ids`` [K, T] -> words [K, D, T], embedding [K, D], word_mask [K, T], word strings."""
        if ids.ndim != 2:
            raise ValueError(f"caption_ids must be [K, T], got shape {tuple(ids.shape)}")
        if attention_mask.shape != ids.shape:
            raise ValueError(
                f"attention_mask shape {tuple(attention_mask.shape)} differs from caption_ids "
                f"{tuple(ids.shape)}"
            )
        if token_type_ids is not None and token_type_ids.shape != ids.shape:
            raise ValueError(
                f"token_type_ids shape {tuple(token_type_ids.shape)} differs from caption_ids "
                f"{tuple(ids.shape)}"
            )
        out = self.model(
            input_ids=ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            output_hidden_states=self.cfg.last_n_layers > 1,
            return_dict=True,
        )
        n = self.cfg.last_n_layers
        # [K, L, T, H]
        states = torch.stack(out.hidden_states[-n:], dim=1) if n > 1 else out.last_hidden_state.unsqueeze(1)

        if self.cfg.agg_tokens:
            agg = self.aggregator(states, ids)
            slots, word_strings = agg.vectors, agg.word_strings  # [K, L, T, H]
            word_counts, legacy_counts = agg.word_counts, agg.legacy_word_counts
        else:
            # the release's agg_tokens=False path keeps every token state as it is (PAD states included)
            slots = states
            word_counts, legacy_counts = self.aggregator.count_words(ids)
            word_strings = self.aggregator.word_strings(ids)

        reduce = torch.sum if self.cfg.aggregate_method == "sum" else torch.mean
        words = reduce(slots, dim=1)  # [K, T, H]
        if n > 1:
            embedding = reduce(slots.mean(dim=2), dim=1)  # mean over all T slots, then over layers: [K, H]
        else:
            embedding = out.pooler_output  # [K, H]
            if embedding is None:
                raise ValueError("last_n_layers=1 needs the model's pooler, which this model lacks")
        T = ids.shape[1]
        word_mask = torch.arange(T, device=ids.device).unsqueeze(0) <= word_counts.unsqueeze(1)  # [K, T]
        return TextFeatures(
            words=words.permute(0, 2, 1).contiguous(),
            embedding=embedding,
            word_mask=word_mask,
            legacy_word_counts=legacy_counts,
            word_strings=word_strings,
        )
