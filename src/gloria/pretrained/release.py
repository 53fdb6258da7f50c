"""Reading the 2021 release's Lightning 1.1 checkpoint: weights under our keys plus the run's settings.

Uses ``safe_pickle`` (no code from the file runs) and ``keymap`` (the one release -> ours key table).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import Tensor

from gloria.config import TextEncoderConfig
from gloria.pretrained.keymap import RELEASE_PREFIX, release_to_ours
from gloria.pretrained.safe_pickle import safe_torch_load, to_plain

log = logging.getLogger(__name__)


@dataclass
class ReleaseCheckpoint:
    """The useful content of a release ``.ckpt``.

    state_dict:       model tensors under our keys (``gloria.`` stripped, ``position_ids`` dropped), on CPU
    hyper_parameters: the run configuration as plain dicts/lists (the pickled DictConfig, unwrapped)
    info:             Lightning's bookkeeping as plain data (version, epoch, global_step, callbacks, ...)
    """

    path: Path
    state_dict: dict[str, Tensor]
    hyper_parameters: dict[str, Any]
    info: dict[str, Any] = field(default_factory=dict)


_INFO_KEYS = ("pytorch-lightning_version", "epoch", "global_step", "hparams_name", "hparams_type")


def read_release_checkpoint(path: str | Path, *, trust: bool = False) -> ReleaseCheckpoint:
    """Read a release checkpoint safely (see ``safe_torch_load``); tensors saved on a GPU load on CPU.

    Raises ``ValueError`` naming the file when it is not a Lightning checkpoint of a GLoRIA model.
    """
    path = Path(path)
    return release_from_raw(path, safe_torch_load(path, trust=trust))


def release_from_raw(path: Path, raw: Any) -> ReleaseCheckpoint:
    """The release checkpoint in ``raw`` (what ``safe_torch_load`` read from ``path``)."""
    if not isinstance(raw, Mapping):
        raise ValueError(
            f"{path} is not a Lightning checkpoint: it holds a {type(raw).__name__}, "
            "not a dict with 'state_dict'"
        )
    if "state_dict" not in raw:
        raise ValueError(
            f"{path} is not a Lightning checkpoint: no 'state_dict' entry "
            f"(top-level keys: {sorted(map(str, raw))})"
        )
    weights = raw["state_dict"]
    if not isinstance(weights, Mapping) or not weights:
        raise ValueError(f"{path}: 'state_dict' is empty or not a mapping")
    not_tensors = [k for k, v in weights.items() if not isinstance(v, Tensor)]
    if not_tensors:
        raise ValueError(f"{path}: state_dict entries that are not tensors: {not_tensors[:10]}")
    if not any(str(k).startswith(RELEASE_PREFIX) for k in weights):
        sample = sorted(map(str, weights))[:5]
        raise ValueError(
            f"{path} does not hold a GLoRIA model: no state_dict key starts with {RELEASE_PREFIX!r} "
            f"(first keys: {sample})"
        )
    hparams = to_plain(raw.get("hyper_parameters", {}))
    if not isinstance(hparams, Mapping):
        raise ValueError(f"{path}: hyper_parameters is a {type(hparams).__name__}, expected a mapping")
    info = {k: to_plain(raw[k]) for k in _INFO_KEYS if k in raw}
    info["callbacks"] = sorted(map(str, to_plain(raw.get("callbacks", {})) or {}))
    info["other_entries"] = sorted(
        str(k) for k in raw if k not in (*_INFO_KEYS, "state_dict", "hyper_parameters")
    )
    log.info(
        "read %s (Lightning %s, epoch %s): %d tensors",
        path,
        info.get("pytorch-lightning_version", "?"),
        info.get("epoch", "?"),
        len(weights),
    )
    return ReleaseCheckpoint(
        path=path, state_dict=release_to_ours(weights), hyper_parameters=dict(hparams), info=info
    )


# ------------------------------------------------------------------------ the text model (not in the file)

# BertConfig fields that define the architecture; the vocabulary size comes from the vocab file.
BERT_FIELDS = (
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "intermediate_size",
    "hidden_act",
    "max_position_embeddings",
    "type_vocab_size",
    "layer_norm_eps",
    "hidden_dropout_prob",
    "attention_probs_dropout_prob",
    "pad_token_id",
)
_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


def text_config_from_dir(directory: str | Path, *, name: str | None = None) -> TextEncoderConfig:
    """A text-model directory (``config.json`` + ``vocab.txt`` of a BERT; weights optional) as our config.

    A BERT is built from its ``config.json`` with the directory's WordPiece vocabulary, so a directory
    without weights suffices (the checkpoint supplies them). Other model types need their weights there.
    """
    path = Path(directory).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(f"text model directory not found: {path}")
    config_file = path / "config.json"
    if not config_file.is_file():
        raise FileNotFoundError(f"text model directory {path} has no config.json")
    try:
        hf_config = json.loads(config_file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{config_file} is not valid JSON: {err}") from err
    vocab = path / "vocab.txt"
    if hf_config.get("model_type", "bert") != "bert" or not vocab.is_file():
        if not any((path / w).is_file() for w in _WEIGHT_FILES):
            raise FileNotFoundError(
                f"text model directory {path} needs vocab.txt (a BERT WordPiece vocabulary) or its weights "
                f"({' or '.join(_WEIGHT_FILES)}) with tokenizer files"
            )
        return TextEncoderConfig(model=str(path), bert_config=None, vocab_file=None)
    missing = [k for k in ("hidden_size", "num_hidden_layers", "num_attention_heads") if k not in hf_config]
    if missing:
        raise ValueError(f"{config_file} lacks BERT fields {missing}")
    lower = True  # BertTokenizer's default when the directory does not say
    tok_file = path / "tokenizer_config.json"
    if tok_file.is_file():
        try:
            lower = bool(json.loads(tok_file.read_text(encoding="utf-8")).get("do_lower_case", True))
        except json.JSONDecodeError as err:
            raise ValueError(f"{tok_file} is not valid JSON: {err}") from err
    return TextEncoderConfig(
        model=name or str(path),
        bert_config={k: hf_config[k] for k in BERT_FIELDS if k in hf_config},
        vocab_file=str(vocab.resolve()),
        do_lower_case=lower,
    )


def resolve_text_model(
    text_model: str | Path | TextEncoderConfig | None, bert_type: str | None, *, source: Path
) -> TextEncoderConfig:
    """The text model for a release file: ``text_model`` (a local directory or a config) when given, else
    the file's ``bert_type`` from the local Hugging Face cache; never the network."""
    if isinstance(text_model, TextEncoderConfig):
        return text_model
    if text_model is not None:
        return text_config_from_dir(text_model, name=bert_type)
    if bert_type and Path(bert_type).expanduser().is_dir():  # from_pretrained(bert_type) read a directory too
        return text_config_from_dir(bert_type)
    if not bert_type:
        raise ValueError(
            f"{source} does not name its text model (hyper_parameters model.text.bert_type); "
            "pass text_model=DIR (--text-model DIR), a directory with the BERT's config.json and vocab.txt"
        )
    try:
        from huggingface_hub import snapshot_download

        cached = snapshot_download(bert_type, local_files_only=True)
    except Exception as err:  # not cached (LocalEntryNotFoundError) or hub library problems: same advice
        raise FileNotFoundError(
            f"the text model of {source}, {bert_type!r}, is not in the local Hugging Face cache and will "
            "not be downloaded. Pass text_model=DIR (command line: --text-model DIR), a directory with "
            f"{bert_type}'s "
            f"config.json and vocab.txt (e.g. from `huggingface-cli download {bert_type}` on a connected "
            f"machine). ({type(err).__name__})"
        ) from None
    return text_config_from_dir(cached, name=bert_type)
