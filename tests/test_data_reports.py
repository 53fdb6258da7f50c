"""Report and prompt cleaning (method.md section 6) on tricky reports."""

from __future__ import annotations

import logging
import random

import numpy as np
import pytest

from gloria.data.reports import clean_text, report_sentences, sample_sentence

NUMBERED = "1. No acute cardiopulmonary process.\n2. Mild cardiomegaly.\n3. Stable small left effusion."


def test_numbered_list_is_split_and_joined() -> None:
    assert (
        clean_text(NUMBERED)
        == "no acute cardiopulmonary process mild cardiomegaly stable small left effusion"
    )
    assert report_sentences(NUMBERED) == [
        "no acute cardiopulmonary process",
        "mild cardiomegaly",
        "stable small left effusion",
    ]


def test_decimal_numbers_split_like_the_release() -> None:
    # "1." is a list marker for the release's regex, so "1.5 cm" loses its "1"; "A" is a one-token piece.
    text = "A 1.5 cm nodule."
    assert clean_text(text, keep_short=False) == "5 cm nodule"
    assert clean_text(text) == "5 cm nodule"  # the release's, which it does not empty
    assert report_sentences(text) == ["5 cm nodule"]


def test_replacement_character_pairs_and_newlines() -> None:
    text = "Heart size\ufffd\ufffdnormal.\nLungs\nclear"
    assert clean_text(text) == "heart size normal lungs clear"
    assert report_sentences(text) == ["heart size normal", "lungs clear"]


def test_non_ascii_characters_are_stripped_per_token() -> None:
    assert clean_text("Café naïve pleural thickening") == "caf nave pleural thickening"
    # a piece of two all-non-ASCII tokens survives the length check and leaves an empty piece (double space)
    assert clean_text("Mild edema. é è. Small effusion", keep_short=False) == "mild edema  small effusion"
    assert report_sentences("Mild edema. é è. Small effusion") == ["mild edema", "small effusion"]


def test_one_word_prompt_kept_by_default_release_drops_it(caplog: pytest.LogCaptureFixture) -> None:
    assert clean_text("Pneumonia") == "pneumonia"
    with caplog.at_level(logging.WARNING, logger="gloria.data.reports"):
        assert clean_text("Pneumonia", keep_short=False) == ""
    assert "empty after cleaning" in caplog.text
    assert report_sentences("Pneumonia.") == []


def test_one_token_pieces_kept_only_where_the_release_empties_the_text(
    caplog: pytest.LogCaptureFixture,
) -> None:
    text = "Normal. No pneumothorax. 2. Edema."
    assert clean_text(text, keep_short=False) == "no pneumothorax"
    assert clean_text(text) == "no pneumothorax"  # the release's result wherever it has one
    with caplog.at_level(logging.WARNING, logger="gloria.data.reports"):
        assert clean_text("1. Chest. Normal.") == "chest normal"  # the release: ""
    assert "one-word pieces are kept" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="gloria.data.reports"):
        for _ in range(3):  # prompts are cleaned on every scoring call: the warning comes once per text
            assert clean_text("1. Chest. Normal.") == "chest normal"
    assert "one-word pieces are kept" not in caplog.text


def test_blank_text_is_empty_without_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="gloria.data.reports"):
        assert clean_text("  \n ") == ""
    assert caplog.text == ""


def test_legacy_stops_when_running_count_equals_five() -> None:
    text = "Heart is normal. Lungs clear. No effusion is seen."
    assert report_sentences(text) == ["heart is normal", "lungs clear", "no effusion is seen"]
    assert report_sentences(text, legacy=True) == ["heart is normal", "lungs clear"]  # 3 + 2 == 5
    jumps = "The heart is normal. The lungs are clear. No effusion."  # 4, 8: never exactly 5
    assert report_sentences(jumps, legacy=True) == report_sentences(jumps)


def test_max_tokens_limits_and_validates() -> None:
    text = "Heart is normal. Lungs clear. No effusion is seen."
    assert report_sentences(text, max_tokens=4) == ["heart is normal", "lungs clear"]  # 3, then 5 >= 4
    assert report_sentences(text, legacy=True, max_tokens=3) == ["heart is normal"]
    with pytest.raises(ValueError, match="max_tokens"):
        report_sentences(text, max_tokens=0)
    with pytest.raises(ValueError, match="string"):
        clean_text(None)  # type: ignore[arg-type]


def test_sample_sentence_draws_every_sentence_reproducibly() -> None:
    sentences = report_sentences(NUMBERED)
    draws = [sample_sentence(NUMBERED, random.Random(3)) for _ in range(3)]
    assert len(set(draws)) == 1  # same seed, same draw
    rng = random.Random(0)
    seen = {sample_sentence(NUMBERED, rng) for _ in range(60)}
    assert seen == set(sentences)
    gen = np.random.default_rng(0)
    assert {sample_sentence(sentences, gen) for _ in range(60)} == set(sentences)
    with pytest.raises(ValueError, match="no sentence"):
        sample_sentence("Normal.", random.Random(0))
