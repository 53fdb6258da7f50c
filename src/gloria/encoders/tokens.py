"""Report text -> token tensors (method.md section 6): cleaning, WordPiece tokenisation padded to the model's
``max_length``, true word counts. One picklable object, so DataLoader workers can run it (the training data
pipeline) and ``GLoRIA.process_text`` uses the same code.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from gloria.data.reports import clean_text
from gloria.encoders.wordpieces import WordPieceAggregator

ITEM_KEYS = ("caption_ids", "attention_mask", "token_type_ids", "word_counts")


def release_cap_lens(texts: Sequence[str]) -> list[int]:
    """The release's ``cap_lens``: per raw text, the number of characters that are not "[" (a release quirk
    that legacy zero-shot depends on; it is not a word count)."""
    return [sum(1 for ch in text if ch != "[") for text in texts]


class TextTokenizer:
    """Clean and tokenise texts -> CPU tensors ``caption_ids`` / ``attention_mask`` / ``token_type_ids``
    [K, T] long and ``word_counts`` [K] long, plus ``cap_lens`` (list[int]) and ``texts`` (cleaned strings).

    ``keep_short=False`` is the release's cleaning, which empties one-word prompts.
    """

    def __init__(self, tokenizer: Any, aggregator: WordPieceAggregator, max_length: int) -> None:
        self.tokenizer = tokenizer
        self.aggregator = aggregator
        self.max_length = max_length

    def __call__(self, texts: str | Sequence[str], *, keep_short: bool = True) -> dict[str, Any]:
        raw = [texts] if isinstance(texts, str) else list(texts)
        if not raw:
            raise ValueError("process_text got an empty list of texts")
        for index, text in enumerate(raw):
            if not isinstance(text, str):
                raise ValueError(f"text {index} must be a string, got {type(text).__name__}: {text!r}")
        cleaned = [clean_text(text, keep_short=keep_short) for text in raw]
        tokens = self.tokenizer(
            cleaned, padding="max_length", truncation=True, max_length=self.max_length, return_tensors="pt"
        )
        ids = tokens["input_ids"].long()
        type_ids = tokens.get("token_type_ids")
        if type_ids is None:  # tokenizers of models without segment embeddings
            type_ids = torch.zeros_like(ids)
        word_counts, _ = self.aggregator.count_words(ids)
        return {
            "caption_ids": ids,
            "attention_mask": tokens["attention_mask"].long(),
            "token_type_ids": type_ids.long(),
            "cap_lens": release_cap_lens(raw),
            "word_counts": word_counts,
            "texts": cleaned,
        }

    def item(self, text: str) -> dict[str, Any]:
        """One text -> the tensors of one dataset item: ``caption_ids`` etc. [T], ``word_counts`` []."""
        tokens = self(text)
        return {
            key: tokens[key][0] for key in ("caption_ids", "attention_mask", "token_type_ids", "word_counts")
        }
