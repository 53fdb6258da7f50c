"""Word-piece aggregation of the text tower (method.md section 2), vectorised as one index-add by word slot.

Rule: a token not starting with "##" starts a word, a "##" piece is summed into the current word, [CLS] is a
word of its own, [SEP] closes the current word and is appended as a word, everything after it is dropped.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

_JOIN = "\x00"  # cannot occur inside a WordPiece token


@dataclass
class AggregatedWords:
    """Word-slot vectors of a batch of K texts.

    vectors:            [K, L, T, H] (or [K, T, H] when the input had no layer axis); slot 0 [CLS],
                        slots 1..n_k the words, slot n_k+1 [SEP], later slots zero
    word_strings:       per text, T strings (the words, then "[PAD]" for the empty slots)
    word_counts:        [K] long, n_k = the true number of words between [CLS] and [SEP]
    legacy_word_counts: [K] long, aggregated words not starting with "[" (the release's count)
    """

    vectors: Tensor
    word_strings: list[list[str]]
    word_counts: Tensor
    legacy_word_counts: Tensor


@dataclass
class WordSlots:
    """Where each token goes: the index plan shared by the vectors and the counts.

    slot:      [K, T] long, the word slot of each token; T (an overflow slot) for tokens after [SEP]
    n_slots:   [K] long, filled slots (CLS + words + SEP)
    has_sep:   [K] bool
    starts:    [K, T] bool, the tokens that begin a word slot
    """

    slot: Tensor
    n_slots: Tensor
    has_sep: Tensor
    starts: Tensor


class WordPieceAggregator:
    """Aggregates token states into word slots for one WordPiece vocabulary.

    ``vocab`` lists the token string of every id (``vocab[i]`` is the token of id ``i``); ``sep_token`` marks
    the end of a text. With ``merge_pieces=False`` every token is its own slot (the release's
    ``agg_tokens=False`` path still stops at [SEP] here; see ``TextEncoder`` for how it is used).
    """

    def __init__(self, vocab: Sequence[str], sep_token: str = "[SEP]", *, merge_pieces: bool = True) -> None:
        if sep_token not in vocab:
            raise ValueError(f"separator token {sep_token!r} is not in the vocabulary ({len(vocab)} tokens)")
        self.vocab = list(vocab)
        self.sep_token = sep_token
        self.sep_id = self.vocab.index(sep_token)
        self.merge_pieces = merge_pieces
        self._is_piece = torch.tensor([t.startswith("##") for t in self.vocab], dtype=torch.bool)
        self._is_bracket = torch.tensor([t.startswith("[") for t in self.vocab], dtype=torch.bool)
        self._cache: dict[torch.device, tuple[Tensor, Tensor]] = {}

    @classmethod
    def from_tokenizer(cls, tokenizer: object, *, merge_pieces: bool = True) -> WordPieceAggregator:
        """Build from a Hugging Face tokenizer (its ``get_vocab()`` and ``sep_token``)."""
        vocab_map: dict[str, int] = tokenizer.get_vocab()  # type: ignore[attr-defined]
        size = max(vocab_map.values()) + 1
        vocab = ["[unused-id]"] * size
        for token, index in vocab_map.items():
            vocab[index] = token
        sep = getattr(tokenizer, "sep_token", None) or "[SEP]"
        return cls(vocab, sep_token=str(sep), merge_pieces=merge_pieces)

    def _tables(self, device: torch.device) -> tuple[Tensor, Tensor]:
        if device not in self._cache:
            self._cache[device] = (self._is_piece.to(device), self._is_bracket.to(device))
        return self._cache[device]

    def _check_ids(self, ids: Tensor) -> None:
        if ids.ndim != 2:
            raise ValueError(f"token ids must be [K, T], got shape {tuple(ids.shape)}")
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= len(self.vocab)):
            raise ValueError(
                f"token ids out of the vocabulary range [0, {len(self.vocab)}): "
                f"min {int(ids.min())}, max {int(ids.max())}"
            )

    def plan(self, ids: Tensor) -> WordSlots:
        """The slot of every token of ``ids`` [K, T] (no Python loop over tokens)."""
        self._check_ids(ids)
        T = ids.shape[1]
        is_piece, _ = self._tables(ids.device)
        sep = ids == self.sep_id  # [K, T]
        # tokens strictly after the first [SEP] are dropped
        after_sep = (torch.cumsum(sep.long(), dim=1) - sep.long()) > 0
        valid = ~after_sep
        first = torch.zeros_like(sep)
        first[:, :1] = True
        starts = valid & (~is_piece[ids] | sep | first) if self.merge_pieces else valid.clone()
        slot = torch.cumsum(starts.long(), dim=1) - 1  # [K, T]
        slot = torch.where(valid, slot, torch.full_like(slot, T))
        return WordSlots(slot=slot, n_slots=starts.sum(dim=1), has_sep=sep.any(dim=1), starts=starts)

    def count_words(self, ids: Tensor) -> tuple[Tensor, Tensor]:
        """(true word counts [K], the release's counts [K]) of ``ids`` [K, T] without any hidden states."""
        plan = self.plan(ids)
        return self._counts(ids, plan)

    def _counts(self, ids: Tensor, plan: WordSlots) -> tuple[Tensor, Tensor]:
        _, is_bracket = self._tables(ids.device)
        word_counts = plan.n_slots - 1 - plan.has_sep.long()
        legacy = (plan.starts & ~is_bracket[ids]).sum(dim=1)
        return word_counts.clamp_min(0), legacy

    def __call__(self, hidden: Tensor, ids: Tensor) -> AggregatedWords:
        """Aggregate ``hidden`` [K, L, T, H] or [K, T, H] token states of ``ids`` [K, T] into word slots."""
        plan = self.plan(ids)
        K, T = ids.shape
        squeeze = hidden.ndim == 3
        states = hidden.unsqueeze(1) if squeeze else hidden
        if states.ndim != 4 or states.shape[0] != K or states.shape[2] != T:
            raise ValueError(
                f"hidden states must be [K, L, T, H] or [K, T, H] with K={K}, T={T}; "
                f"got {tuple(hidden.shape)}"
            )
        L, H = states.shape[1], states.shape[3]
        # one index_add over the rows of states viewed as [K*L*T, H] (no copy, no permute): token (k, l, t)
        # goes to row (k*L + l) * (T + 1) + slot[k, t]; slot T collects the dropped tokens and is cut off
        base = torch.arange(K * L, device=ids.device).view(K, L, 1) * (T + 1)
        flat_index = (base + plan.slot.unsqueeze(1)).reshape(-1)  # [K*L*T]
        rows = states.reshape(K * L * T, H)
        out = rows.new_zeros(K * L * (T + 1), H).index_add(0, flat_index, rows)
        vectors = out.view(K, L, T + 1, H)[:, :, :T]  # [K, L, T, H]
        if squeeze:
            vectors = vectors[:, 0]
        word_counts, legacy = self._counts(ids, plan)
        return AggregatedWords(
            vectors=vectors,
            word_strings=self.word_strings(ids, plan),
            word_counts=word_counts,
            legacy_word_counts=legacy,
        )

    def word_strings(self, ids: Tensor, plan: WordSlots | None = None) -> list[list[str]]:
        """Per text, T word strings: pieces joined without "##", then "[PAD]" for the empty slots."""
        if plan is None:
            plan = self.plan(ids)
        T = ids.shape[1]
        vocab = self.vocab
        ends = (plan.slot < T).sum(dim=1).tolist()  # tokens kept per text (up to and including [SEP])
        rows: list[list[str]] = []
        for row, end in zip(ids.tolist(), ends):
            tokens = [vocab[i] for i in row[:end]]
            if not self.merge_pieces:
                words = tokens
            else:
                if tokens and tokens[0].startswith("##"):
                    tokens[0] = tokens[0][2:]
                words = _JOIN.join(tokens).replace(_JOIN + "##", "").split(_JOIN) if tokens else []
            rows.append(words + ["[PAD]"] * (T - len(words)))
        return rows
