"""Registered model names, where their files are looked for, and sha256 records (never a network call).

A name resolves to a converted directory ``<cache>/<name>/`` when one exists, else to the release file in
the cache directory (``$GLORIA_CACHE_DIR``, default ``~/.cache/gloria``) or in ``./pretrained/``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

CACHE_ENV = "GLORIA_CACHE_DIR"
RELEASE_URL = "https://stanfordmedicine.box.com/s/j5h7q99f3pfi7enc0dom73m4nsm6yzvh"
REGISTRY_FILE = "registry.json"
CONVERTED_WEIGHTS = "model.safetensors"


@dataclass(frozen=True)
class ModelEntry:
    """A model of the release: its name, the file the release distributed, and what it is."""

    name: str
    filename: str
    description: str


MODELS: dict[str, ModelEntry] = {
    "gloria_resnet50": ModelEntry(
        "gloria_resnet50", "chexpert_resnet50.ckpt", "ResNet-50 + Bio_ClinicalBERT pretrained on CheXpert"
    ),
    "gloria_resnet18": ModelEntry(
        "gloria_resnet18", "chexpert_resnet18.ckpt", "ResNet-18 + Bio_ClinicalBERT pretrained on CheXpert"
    ),
}


def available_models() -> list[str]:
    """The registered names (whether or not their files are present)."""
    return list(MODELS)


def cache_dir() -> Path:
    """``$GLORIA_CACHE_DIR`` or ``~/.cache/gloria`` (not created here)."""
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "gloria"


def search_dirs() -> list[Path]:
    """Directories searched for a registered name's release file, in order."""
    return [cache_dir(), Path.cwd() / "pretrained"]


def is_converted_dir(path: Path) -> bool:
    return path.is_dir() and (path / CONVERTED_WEIGHTS).is_file()


def resolve(name: str) -> Path:
    """The converted directory or release checkpoint for a registered ``name``.

    Raises ``FileNotFoundError`` saying where to download the file and where to put it.
    """
    if name not in MODELS:
        raise ValueError(f"unknown model name {name!r}; registered names: {available_models()}")
    entry = MODELS[name]
    converted = cache_dir() / name
    if is_converted_dir(converted):
        return converted
    tried = []
    for directory in search_dirs():
        candidate = directory / entry.filename
        tried.append(str(candidate))
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"model {name!r} needs the release file {entry.filename}, which was not found (looked for "
        f"{', '.join(tried)} and a converted directory {converted}). Download {entry.filename} from the "
        f"GLoRIA release's Box folder {RELEASE_URL} and put it in {cache_dir()} (or set ${CACHE_ENV} to the "
        f"folder holding it) or in ./pretrained/. Optionally convert it once with "
        f"`gloria convert {cache_dir() / entry.filename} --out {converted} --text-model DIR`."
    )


# ------------------------------------------------------------------------------------------ checksums


def file_sha256(path: str | Path, chunk_size: int = 1 << 22) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        while chunk := fh.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def check_sha256(path: str | Path, expected: str) -> str:
    """Raise ``ValueError`` unless ``path``'s sha256 equals the user-supplied ``expected``; return it."""
    want = expected.strip().lower()
    if len(want) != 64 or any(c not in "0123456789abcdef" for c in want):
        raise ValueError(f"sha256 must be 64 hex digits, got {expected!r}")
    actual = file_sha256(path)
    if actual != want:
        raise ValueError(f"sha256 mismatch for {path}: expected {want}, file has {actual}")
    return actual


def read_registry(directory: Path | None = None) -> dict[str, Any]:
    """The conversion records of the cache directory (empty when none were written)."""
    path = (directory or cache_dir()) / REGISTRY_FILE
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"registry file {path} is not valid JSON: {err}") from err
    if not isinstance(data, dict):
        raise ValueError(f"registry file {path} must hold a JSON object")
    return data


def record_conversion(source: Path, sha256: str, out_dir: Path, directory: Path | None = None) -> Path:
    """Record ``source``'s sha256 and its converted directory in ``<cache>/registry.json``."""
    target_dir = directory or cache_dir()
    target_dir.mkdir(parents=True, exist_ok=True)
    data = read_registry(target_dir)
    data[str(source.resolve())] = {
        "file": source.name,
        "sha256": sha256,
        "size_bytes": source.stat().st_size,
        "converted_dir": str(out_dir.resolve()),
        "recorded_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    path = target_dir / REGISTRY_FILE
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True), encoding="utf-8")
    tmp.replace(path)
    log.info("recorded sha256 %s of %s in %s", sha256, source, path)
    return path
