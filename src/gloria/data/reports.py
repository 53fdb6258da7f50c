"""Report and prompt cleaning of the release (method.md section 6): sentence pieces, lower-case word tokens.

``clean_text`` prepares a prompt or report for the tokenizer; ``report_sentences`` lists a report's training
captions; ``sample_sentence`` draws one of them per access (the release's ``full_report=false``).
"""

from __future__ import annotations

import functools
import logging
import random
import re

import numpy as np

log = logging.getLogger(__name__)

_NUMBERED = re.compile(r"[0-9]+\.")  # "1." "12." -- numbered list items end a piece
_WORD = re.compile(r"\w+")
_DOUBLE_REPLACEMENT = "\ufffd\ufffd"  # two U+FFFD characters (mis-decoded bytes in the release's reports)
RELEASE_SENTENCE_TOKEN_STOP = 5  # release: data.text.captions_per_image, compared with "==" to a token count


def _pieces(text: str) -> list[str]:
    """Newlines to spaces, split on numbered-list markers, then on every full stop."""
    flat = text.replace("\n", " ")
    return [piece for chunk in _NUMBERED.split(flat) for piece in chunk.split(".")]


def _piece_tokens(piece: str) -> list[str]:
    """Lower-case ``\\w+`` tokens of one piece (before the ASCII filter)."""
    return _WORD.findall(piece.replace(_DOUBLE_REPLACEMENT, " ").lower())


def _ascii_tokens(tokens: list[str]) -> list[str]:
    """Drop non-ASCII characters from each token, then drop tokens left empty."""
    stripped = (token.encode("ascii", "ignore").decode("ascii") for token in tokens)
    return [token for token in stripped if token]


def _clean(text: str, min_tokens: int) -> str:
    kept = []
    for piece in _pieces(text):
        tokens = _piece_tokens(piece)
        if len(tokens) < min_tokens:
            continue
        kept.append(" ".join(_ascii_tokens(tokens)))
    return " ".join(kept)


@functools.lru_cache(maxsize=4096)
def _warn_kept(text: str) -> None:
    """The one-word-pieces warning, once per distinct text (prompts are cleaned on every scoring call)."""
    log.warning("text %r: the release's cleaning empties it; its one-word pieces are kept", text)


def clean_text(text: str, *, keep_short: bool = True) -> str:
    """Clean a prompt or report into one lower-case string of ASCII word tokens separated by spaces.

    Every piece (method.md section 6) is tokenised and its ASCII tokens joined; all kept pieces are joined
    by single spaces. The release drops pieces of <= 1 token, so a one-word prompt ("Pneumonia") becomes
    ``""``. By default the result is the release's on every text it does not empty; only where the release
    returns an empty string are one-token pieces kept instead (logged as a warning). ``keep_short=False``
    is the release exactly. Pieces with no token at all are always dropped; a kept piece whose tokens were
    all non-ASCII stays as an empty string in the join (a double space), exactly as the release. A warning
    is logged when a non-blank text cleans to ``""``.
    """
    if not isinstance(text, str):
        raise ValueError(f"text must be a string, got {type(text).__name__}: {text!r}")
    cleaned = _clean(text, 2)
    if keep_short and not cleaned.strip() and text.strip():
        short = _clean(text, 1)
        if short.strip():
            _warn_kept(text[:80])
            cleaned = short
    if not cleaned.strip() and text.strip():
        log.warning("text %r is empty after cleaning (keep_short=%s)", text[:80], keep_short)
    return cleaned


def report_sentences(text: str, *, legacy: bool = False, max_tokens: int | None = None) -> list[str]:
    """The training captions of one report: cleaned pieces of >= 2 tokens, in order, empty ones dropped.

    ``legacy=True`` reproduces the release's quirk: sentences are added until the running count of kept
    tokens equals *exactly* ``max_tokens`` (default 5, the release's ``captions_per_image``); a count that
    jumps past it never stops. Without ``legacy``, ``max_tokens`` (when given) stops after the sentence that
    brings the running count to ``>= max_tokens``; ``None`` keeps every sentence.
    """
    if not isinstance(text, str):
        raise ValueError(f"report must be a string, got {type(text).__name__}: {text!r}")
    if max_tokens is not None and max_tokens < 1:
        raise ValueError(f"max_tokens must be >= 1 or None, got {max_tokens}")
    stop_at = (RELEASE_SENTENCE_TOKEN_STOP if max_tokens is None else max_tokens) if legacy else max_tokens
    sentences: list[str] = []
    count = 0
    for piece in _pieces(text):
        tokens = _piece_tokens(piece)
        if len(tokens) <= 1:
            continue
        kept = _ascii_tokens(tokens)
        if kept:
            sentences.append(" ".join(kept))
        count += len(kept)
        if stop_at is not None and (count == stop_at if legacy else count >= stop_at):
            break
    return sentences


def sample_sentence(
    text: str | list[str], rng: random.Random | np.random.Generator, *, legacy: bool = False
) -> str:
    """One uniformly drawn training sentence of a report (or of an already split sentence list).

    Raises ``ValueError`` when the report has no sentence of at least two tokens.
    """
    sentences = report_sentences(text, legacy=legacy) if isinstance(text, str) else list(text)
    if not sentences:
        raise ValueError(f"report has no sentence of at least two words: {str(text)[:80]!r}")
    if isinstance(rng, np.random.Generator):
        return sentences[int(rng.integers(len(sentences)))]
    return sentences[rng.randrange(len(sentences))]
