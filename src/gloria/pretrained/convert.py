"""One-time conversion of a release checkpoint (or a ``gloria train`` pretraining checkpoint) into a safe
directory: ``model.safetensors`` (our keys), ``config.yaml`` (our ``GloriaConfig``), ``metadata.json``
(source, sha256, release hyper-parameters) and the tokenizer files. ``load_gloria(DIR)`` then reads it
without any pickle.
"""

from __future__ import annotations

import json
import logging
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from safetensors.torch import save_file

from gloria.config import GloriaConfig, TextEncoderConfig
from gloria.encoders.text import resolve_vocab_file
from gloria.pretrained import registry
from gloria.pretrained.converted import CONFIG_FILE, METADATA_FILE
from gloria.pretrained.loading import build_gloria_from, read_weights
from gloria.pretrained.release import BERT_FIELDS

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
VOCAB_FILE = "vocab.txt"


def convert_checkpoint(
    source: str | Path,
    out_dir: str | Path,
    *,
    text_model: str | Path | TextEncoderConfig | None = None,
    trust: bool = False,
    sha256: str | None = None,
    overwrite: bool = False,
    record: bool = True,
) -> Path:
    """Convert the checkpoint ``source`` (a release file or a ``gloria train`` pretraining checkpoint) into
    ``out_dir`` and return ``out_dir``.

    The weights are loaded into a freshly built model first (the one strict key check), so a directory is
    only written for a file that loads. ``sha256``: the user's expected hash of ``source`` (checked). The
    file's hash is always recorded, in ``metadata.json`` and in the cache directory's ``registry.json``.
    """
    source = Path(source)
    out = Path(out_dir)
    if registry.is_converted_dir(out) and not overwrite:
        raise ValueError(
            f"{out} already holds a converted model; pass overwrite=True (--force) to replace it"
        )
    if not source.is_file():
        raise FileNotFoundError(f"checkpoint not found: {source}")
    digest = registry.check_sha256(source, sha256) if sha256 else registry.file_sha256(source)
    weights = read_weights(source, trust=trust)
    model = build_gloria_from(weights, text_model)

    info: dict[str, Any] = {
        "source_file": str(source.resolve()),
        "source_name": source.name,
        "source_sha256": digest,
        "source_size_bytes": source.stat().st_size,
        "source_kind": "release" if weights.config is None else "gloria train",
        "lightning": weights.metadata.get("lightning", {}),
        "release_hyper_parameters": weights.hyper_parameters,
    }
    write_model_dir(model, out, info, written_by="gloria convert")
    if record:
        registry.record_conversion(source, digest, out)
    log.info("converted %s -> %s (sha256 %s)", source, out, digest)
    return out


def write_model_dir(model: Any, out: str | Path, info: dict[str, Any], *, written_by: str) -> Path:
    """Write ``model`` (a GLoRIA) as a converted directory that ``load_gloria(out)`` reads: the weights as
    ``model.safetensors``, the tokenizer files, ``config.yaml`` and ``metadata.json`` (``info`` plus the
    weights' hash)."""
    out = Path(out)
    config = model.config
    out.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    weights_path = out / registry.CONVERTED_WEIGHTS
    save_file(tensors, str(weights_path), metadata={"format": "pt", "gloria_format": str(FORMAT_VERSION)})
    stored = _store_text_model(model, config, out)
    (out / CONFIG_FILE).write_text(
        f"# GLoRIA configuration written by `{written_by}`; load with gloria.load_gloria(THIS_DIRECTORY)\n"
        + yaml.safe_dump(stored.to_dict(), sort_keys=False),
        encoding="utf-8",
    )
    metadata: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        **info,
        "weights_sha256": registry.file_sha256(weights_path),
        "converted_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "n_tensors": len(tensors),
        "backbone": config.image.backbone,
        "text_model": config.text.model,
    }
    (out / METADATA_FILE).write_text(json.dumps(metadata, indent=2, default=str), encoding="utf-8")
    return out


def _store_text_model(model: Any, config: GloriaConfig, out: Path) -> GloriaConfig:
    """Write the tokenizer files next to the weights and point the stored config at them (relative)."""
    text = config.text
    vocab_source = resolve_vocab_file(text.vocab_file) if text.vocab_file else None
    tokenizer = model.text_encoder.tokenizer
    try:
        tokenizer.save_pretrained(str(out))
    except Exception as err:  # a tokenizer that cannot save still leaves the vocabulary copy below
        log.warning("could not save the tokenizer files to %s: %s", out, err)
    if vocab_source is not None and vocab_source.is_file():
        shutil.copyfile(vocab_source, out / VOCAB_FILE)
    if not (out / VOCAB_FILE).is_file():
        log.warning("no %s written: %s will need the text model %s to load", VOCAB_FILE, out, text.model)
        return config
    hf_config = model.text_encoder.model.config
    bert_config = {k: getattr(hf_config, k) for k in BERT_FIELDS if hasattr(hf_config, k)}
    lower = bool(getattr(tokenizer, "do_lower_case", text.do_lower_case))
    return config.replace(
        text__bert_config=bert_config, text__vocab_file=VOCAB_FILE, text__do_lower_case=lower
    )
