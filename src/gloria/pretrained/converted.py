"""Reading a directory written by ``gloria convert`` safely: its config's paths stay inside it, its sizes
are compared with the safetensors header before any model is built, a given hash covers the weights file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open

from gloria.config import GloriaConfig, config_from_dict
from gloria.pretrained import registry
from gloria.pretrained.keymap import check_keys
from gloria.safe_yaml import load_yaml_text

CONFIG_FILE = "config.yaml"
METADATA_FILE = "metadata.json"


def _inside(directory: Path, value: str, key: str, config_path: Path) -> Path:
    """``value`` (a path read from ``config_path``) resolved inside ``directory``; anything else refused."""
    candidate = Path(value)
    root = directory.resolve()
    resolved = (root / candidate).resolve()
    if candidate.is_absolute() or not resolved.is_relative_to(root):
        raise ValueError(
            f"{config_path}: {key} {value!r} points outside the converted directory {directory}; "
            "paths in a converted model's config must stay inside its directory"
        )
    return resolved


def read_metadata(directory: Path) -> dict[str, Any]:
    path = directory / METADATA_FILE
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path} is not valid JSON: {err}") from err
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a JSON object, got {type(data).__name__}")
    return data


def converted_config(directory: Path) -> GloriaConfig:
    """The ``config.yaml`` of a converted directory, validated, with its vocabulary resolved inside it."""
    config_path = directory / CONFIG_FILE
    if not config_path.is_file():
        raise FileNotFoundError(f"converted directory {directory} lacks {CONFIG_FILE}")
    raw_config = load_yaml_text(config_path.read_text(encoding="utf-8"), config_path)  # no aliases
    if not isinstance(raw_config, dict):
        raise ValueError(f"{config_path} must hold a mapping, got {type(raw_config).__name__}")
    try:
        config = config_from_dict(raw_config)
    except ValueError as err:
        raise ValueError(f"{config_path}: {err}") from err
    vocab = config.text.vocab_file
    if vocab is not None:
        path = _inside(directory, vocab, "text.vocab_file", config_path)
        if path.is_file():  # vocabularies are stored relative to the directory
            config = config.replace(text__vocab_file=str(path))
        elif Path(vocab).name != vocab:  # a bare name may still be a package asset
            raise FileNotFoundError(f"{config_path}: text.vocab_file {vocab!r} not found in {directory}")
    return config


def file_shapes(weights_path: Path) -> dict[str, tuple[int, ...]]:
    """Tensor shapes from a safetensors file's header (no tensor is read)."""
    try:
        with safe_open(str(weights_path), framework="pt") as fh:
            return {key: tuple(fh.get_slice(key).get_shape()) for key in fh.keys()}  # noqa: SIM118
    except Exception as err:  # safetensors raises its own error types for corrupt headers
        raise ValueError(f"{weights_path} is not a readable safetensors file: {err}") from err


def check_shapes_before_building(
    config: GloriaConfig, shapes: dict[str, tuple[int, ...]], source: Path
) -> None:
    """Build the model on the meta device (no memory) and compare its shapes with the file's header, so a
    config asking for more than its weights hold is refused before anything is allocated."""
    from gloria.model import GLoRIA

    with torch.device("meta"):
        skeleton = GLoRIA(config)
    report = check_keys(skeleton.state_dict(), {k: torch.empty(s, device="meta") for k, s in shapes.items()})
    if not report.ok:
        raise ValueError(
            f"{source}: {CONFIG_FILE} does not match the shapes in {registry.CONVERTED_WEIGHTS}:\n"
            f"{report.format()}"
        )


def check_converted_sha256(directory: Path, metadata: dict[str, Any], expected: str) -> None:
    """A hash given for a directory covers its weights file: ``sha256(model.safetensors)``."""
    weights_path = directory / registry.CONVERTED_WEIGHTS
    try:
        registry.check_sha256(weights_path, expected)
    except ValueError as err:
        if str(metadata.get("source_sha256", "")) == expected.strip().lower():
            raise ValueError(
                f"{err}. The hash given is the one recorded for the release file {directory} was converted "
                f"from; a directory is checked against its weights: pass the sha256 of {weights_path}"
            ) from None
        raise
