"""Release-contract details on real inputs: a release checkpoint whose ``bert_type`` is a local directory
loads from it, and ``process_text`` tokenises every real Indiana University report exactly as the release's
cleaning does wherever that cleaning does not empty the text."""

from __future__ import annotations

import re
import tarfile
import xml.etree.ElementTree as ET  # a file shipped in an installed package, not user input
from pathlib import Path

import pytest
import torch

from gloria.config import tiny_config
from gloria.model import GLoRIA
from gloria.pretrained.loading import load_gloria
from support.dataset_fixtures import real_metadata
from support.release_ckpt import (
    random_release_state_dict,
    release_hyper_parameters,
    write_release_checkpoint,
    write_text_model_dir,
)


def test_release_checkpoint_with_a_local_bert_type_directory(tmp_path: Path) -> None:
    text_dir = write_text_model_dir(tmp_path / "saved-bert")
    hp = release_hyper_parameters(model_name="resnet_18", bert_type=str(text_dir), word_num=32, imsize=72,
                                  crop_size=64)  # fmt: skip
    ckpt = write_release_checkpoint(tmp_path / "r18.ckpt", random_release_state_dict("resnet18", seed=2),
                                    hyper_parameters=hp)  # fmt: skip
    model = load_gloria(ckpt, "cpu")  # no text_model=: the file's bert_type is that directory
    assert model.config.text.vocab_file == str((text_dir / "vocab.txt").resolve())
    assert model.process_text("small effusion", "cpu")["caption_ids"].shape == (1, 32)


def release_cleaning(text: str) -> str:
    """The release's report cleaning, written from its description (method.md section 6): newlines to
    spaces; split at numbered-list markers, then at every full stop; per piece, U+FFFD pairs to a space,
    lower-case ``\\w+`` tokens, pieces of <= 1 token dropped, non-ASCII characters dropped from each token;
    the kept pieces joined by spaces."""
    sentences = []
    for chunk in re.split(r"[0-9]+\.", text.replace("\n", " ")):
        for piece in chunk.split("."):
            tokens = re.findall(r"\w+", piece.replace("\ufffd\ufffd", " ").lower())
            if len(tokens) <= 1:
                continue
            kept = []
            for token in tokens:
                ascii_token = token.encode("ascii", "ignore").decode("ascii")
                if ascii_token:
                    kept.append(ascii_token)
            sentences.append(" ".join(kept))
    return " ".join(sentences)


def _iu_texts() -> list[str]:
    texts = []
    with tarfile.open(real_metadata("NLMCXR_reports.tgz")) as archive:
        for member in archive:
            if not member.name.endswith(".xml"):
                continue
            handle = archive.extractfile(member)
            assert handle is not None
            sections = {
                a.get("Label"): a.text or "" for a in ET.fromstring(handle.read()).iter("AbstractText")
            }
            texts += [sections.get("FINDINGS", ""), sections.get("IMPRESSION", "")]
    return [t for t in texts if t.strip()]


def test_process_text_equals_the_release_on_real_reports(caplog: pytest.LogCaptureFixture) -> None:
    torch.manual_seed(0)
    model = GLoRIA(tiny_config()).eval()
    texts = _iu_texts()
    assert len(texts) > 6000
    kept = [t for t in texts if release_cleaning(t).strip()]
    emptied = [t for t in texts if not release_cleaning(t).strip()]
    tokenizer = model.text_encoder.tokenizer
    max_length = model.config.text.max_length
    for start in range(0, len(kept), 512):
        part = kept[start : start + 512]
        ours = model.process_text(part, "cpu")
        theirs = tokenizer([release_cleaning(t) for t in part], padding="max_length", truncation=True,
                           max_length=max_length, return_tensors="pt")  # fmt: skip
        assert ours["texts"] == [release_cleaning(t) for t in part]
        assert torch.equal(ours["caption_ids"], theirs["input_ids"])
        assert torch.equal(ours["attention_mask"], theirs["attention_mask"])
    # where the release empties a text (e.g. "Normal."), its one-word pieces are kept, with a warning
    assert emptied
    with caplog.at_level("WARNING", logger="gloria.data.reports"):
        short = model.process_text(emptied, "cpu")
    assert all(t.strip() for t in short["texts"])
    assert "one-word pieces are kept" in caplog.text
