"""Batched image/text embedding export with an on-disk cache keyed by file content (sha256).

Images (JPEG/PNG/DICOM) are read, preprocessed as ``process_img`` does, and encoded once per content hash and
model fingerprint; the cache holds one NPZ per image, written atomically, so an interrupted run resumes.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import logging
import os
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from numpy.typing import NDArray
from torch import Tensor
from tqdm.auto import tqdm

from gloria.config import GloriaConfig
from gloria.data.images import read_image
from gloria.data.transforms import ImagePreprocessor
from gloria.types import ImageFeatures, TextFeatures

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".dcm", ".dicom")
PATH_COLUMNS = ("Path", "path", "image", "image_path", "filename")
TEXT_COLUMNS = ("text", "Text", "Report Impression", "report", "caption", "prompt")


class ImageModel(Protocol):
    """What embedding needs of a GLoRIA model."""

    config: GloriaConfig

    def encode_images(self, images: Tensor) -> ImageFeatures: ...

    def state_dict(self) -> dict[str, Any]: ...

    def parameters(self) -> Iterator[torch.nn.Parameter]: ...


def content_hash(path: str | Path, chunk: int = 1 << 20) -> str:
    """sha256 hex digest of a file's bytes (FileNotFoundError names a missing file)."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"image file not found: {p}")
    digest = hashlib.sha256()
    with p.open("rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def model_fingerprint(model: ImageModel) -> str:
    """sha256 over the model config and every state-dict tensor: a new checkpoint never reuses old rows."""
    digest = hashlib.sha256(json.dumps(model.config.to_dict(), sort_keys=True, default=str).encode())
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(str(tensor.dtype).encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


class EmbeddingCache:
    """``root/<fingerprint>/<hash[:2]>/<hash>.npz`` holding ``embedding`` [D] and optionally ``regions``."""

    def __init__(self, root: str | Path, fingerprint: str) -> None:
        self.dir = Path(root) / fingerprint
        self.hits = 0
        self.misses = 0

    def _path(self, key: str) -> Path:
        return self.dir / key[:2] / f"{key}.npz"

    def get(self, key: str, need_regions: bool) -> dict[str, NDArray[np.float32]] | None:
        path = self._path(key)
        if not path.is_file():
            self.misses += 1
            return None
        try:
            with np.load(path, allow_pickle=False) as data:
                if need_regions and "regions" not in data:
                    self.misses += 1
                    return None
                arrays = {name: data[name] for name in data.files}
        except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as err:
            self._discard(path, f"unreadable ({type(err).__name__}: {err})")
            return None
        if "embedding" not in arrays:
            self._discard(path, "no 'embedding' array")
            return None
        bad = [name for name, a in arrays.items() if a.dtype.kind == "f" and not np.isfinite(a).all()]
        if bad:
            self._discard(path, f"NaN or infinite values in {bad}")
            return None
        self.hits += 1
        return arrays

    def _discard(self, path: Path, why: str) -> None:
        """A broken entry is removed and recomputed (it must not stop every later run)."""
        log.warning("embedding cache entry %s is %s: recomputing it", path, why)
        with contextlib.suppress(OSError):
            path.unlink()
        self.misses += 1

    def put(self, key: str, arrays: dict[str, NDArray[np.float32]]) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp.npz")
        np.savez(tmp, **arrays)  # type: ignore[arg-type]
        os.replace(tmp, path)  # atomic: a crash never leaves a half-written entry


@dataclass
class ImageEmbeddings:
    """Embeddings of image files in input order: embeddings [N, D], regions [N, D, h, w] or None."""

    paths: list[str]
    hashes: list[str]
    embeddings: NDArray[np.float32]
    regions: NDArray[np.float32] | None

    def features(self) -> ImageFeatures:
        """As ``ImageFeatures`` (regions required)."""
        if self.regions is None:
            raise ValueError("these embeddings were exported without regions; rerun with regions")
        return ImageFeatures(
            regions=torch.from_numpy(self.regions), embedding=torch.from_numpy(self.embeddings)
        )


def list_images(source: str | Path, image_root: str | Path | None = None) -> list[Path]:
    """Image files under a directory (recursive, sorted) or listed in a CSV's path column.

    Relative CSV paths start from ``image_root``; by default from the CSV's folder or the one above it,
    whichever holds the first image (``gloria.data.eval_set.resolve_image_root``, as for zero-shot).
    """
    from gloria.data.eval_set import resolve_image_root

    src = Path(source)
    if src.is_dir():
        files = sorted(p for p in src.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise FileNotFoundError(f"no JPEG/PNG/DICOM files under {src}")
        return files
    if not src.is_file():
        raise FileNotFoundError(f"images source not found: {src}")
    with src.open(newline="") as handle:
        reader = csv.DictReader(handle)
        column = next((c for c in PATH_COLUMNS if c in (reader.fieldnames or [])), None)
        if column is None:
            raise ValueError(f"{src}: no image path column; expected one of {list(PATH_COLUMNS)}")
        rows = [row[column] for row in reader]
    for i, value in enumerate(rows, start=2):
        if not value:
            raise ValueError(f"{src}: row {i} has an empty {column!r}")
    if not rows:
        raise ValueError(f"{src}: no rows")
    root = resolve_image_root(src, rows[0], image_root)
    out = [p if p.is_absolute() else root / p for p in map(Path, rows)]
    missing = [(i, p) for i, p in enumerate(out, start=2) if not p.is_file()]
    if missing:
        row, path = missing[0]
        raise FileNotFoundError(f"{src}: {len(missing)} image(s) not found, first {path} (row {row})")
    return out


def read_texts(source: str | Path) -> list[str]:
    """Texts from a CSV's text column (``text``, ``Report Impression``, ...)."""
    src = Path(source)
    if not src.is_file():
        raise FileNotFoundError(f"texts CSV not found: {src}")
    with src.open(newline="") as handle:
        reader = csv.DictReader(handle)
        column = next((c for c in TEXT_COLUMNS if c in (reader.fieldnames or [])), None)
        if column is None:
            raise ValueError(f"{src}: no text column; expected one of {list(TEXT_COLUMNS)}")
        return [row[column] or "" for row in reader]


def _device(model: ImageModel) -> torch.device:
    return next(iter(model.parameters())).device


@torch.no_grad()
def embed_images(
    model: ImageModel,
    paths: Sequence[str | Path],
    *,
    batch_size: int = 32,
    cache: EmbeddingCache | None = None,
    with_regions: bool = False,
    progress: bool = True,
) -> ImageEmbeddings:
    """Encode every image once (cache hits are not re-encoded); results in the order of ``paths``."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    pre = ImagePreprocessor(model.config.transforms)
    device = _device(model)
    hashes = [content_hash(p) for p in paths]
    found: dict[str, dict[str, NDArray[np.float32]]] = {}
    todo: list[int] = []
    for i, key in enumerate(hashes):
        if key in found:
            continue
        entry = cache.get(key, with_regions) if cache is not None else None
        if entry is None:
            todo.append(i)
            found[key] = {}
        else:
            found[key] = entry
    log.info(
        "embedding %d images (%d cached or repeated, %d to encode)",
        len(paths),
        len(paths) - len(todo),
        len(todo),
    )
    bar = tqdm(total=len(todo), desc="embed images", unit="img", disable=not progress)
    for start in range(0, len(todo), batch_size):
        batch_idx = todo[start : start + batch_size]
        batch = torch.stack([pre(read_image(paths[i])) for i in batch_idx]).to(device)
        feats = model.encode_images(batch)
        emb = feats.embedding.float().cpu().numpy()
        reg = feats.regions.float().cpu().numpy()
        broken = [paths[i] for row, i in enumerate(batch_idx) if not np.isfinite(emb[row]).all()]
        if broken:
            raise ValueError(
                f"the model gives NaN or infinite embeddings for {broken[:3]}: are its weights finite?"
            )
        for row, i in enumerate(batch_idx):
            arrays = {"embedding": emb[row]}
            if with_regions:
                arrays["regions"] = reg[row]
            found[hashes[i]] = arrays
            if cache is not None:
                cache.put(hashes[i], arrays)
        bar.update(len(batch_idx))
    bar.close()
    embeddings = np.stack([found[k]["embedding"] for k in hashes]).astype(np.float32)
    regions = np.stack([found[k]["regions"] for k in hashes]).astype(np.float32) if with_regions else None
    return ImageEmbeddings([str(p) for p in paths], hashes, embeddings, regions)


def save_embeddings(
    path: str | Path,
    images: ImageEmbeddings | None = None,
    texts: Sequence[str] | None = None,
    text_features: TextFeatures | None = None,
) -> Path:
    """Write an NPZ: ``paths``, ``hashes``, ``embeddings`` [N, D] (+ ``regions``), ``texts``,
    ``text_embeddings`` [K, D]. Strings are stored as unicode arrays (no pickle)."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, NDArray[Any]] = {}
    if images is not None:
        arrays["paths"] = np.array(images.paths, dtype=str)
        arrays["hashes"] = np.array(images.hashes, dtype=str)
        arrays["embeddings"] = images.embeddings
        if images.regions is not None:
            arrays["regions"] = images.regions
    if text_features is not None:
        arrays["texts"] = np.array(list(texts or []), dtype=str)
        arrays["text_embeddings"] = text_features.embedding.float().cpu().numpy()
    if not arrays:
        raise ValueError("nothing to save: give images and/or texts")
    np.savez(out, **arrays)  # type: ignore[arg-type]
    return out


class TextModel(Protocol):
    """What text embedding needs of a GLoRIA model (docs/dev/contracts.md)."""

    def process_text(self, texts: Sequence[str], device: torch.device | str) -> dict[str, Any]: ...

    def encode_texts(self, batch: dict[str, Any]) -> TextFeatures: ...

    def parameters(self) -> Iterator[torch.nn.Parameter]: ...


@dataclass
class EncodedTexts:
    """Text features [K, ...] plus the release's per-text ``cap_lens`` (count of characters not "[")."""

    features: TextFeatures
    cap_lens: list[int]


@torch.no_grad()
def embed_texts(model: TextModel, texts: Sequence[str], *, batch_size: int = 64) -> EncodedTexts:
    """Encode texts in batches and concatenate (every batch is padded to the same ``max_length`` slots)."""
    if not texts:
        raise ValueError("embed_texts needs at least one text")
    device = next(iter(model.parameters())).device
    parts: list[TextFeatures] = []
    cap_lens: list[int] = []
    for start in range(0, len(texts), batch_size):
        chunk = list(texts[start : start + batch_size])
        batch = model.process_text(chunk, device)
        parts.append(model.encode_texts(batch))
        cap_lens += [int(c) for c in batch["cap_lens"]]
    features = TextFeatures(
        words=torch.cat([p.words for p in parts]),
        embedding=torch.cat([p.embedding for p in parts]),
        word_mask=torch.cat([p.word_mask for p in parts]),
        legacy_word_counts=torch.cat([p.legacy_word_counts for p in parts]),
        word_strings=[s for p in parts for s in p.word_strings],
    )
    return EncodedTexts(features, cap_lens)


def on_cpu(features: TextFeatures) -> TextFeatures:
    """Text features with every tensor on the CPU, where image embeddings are kept (a model on a GPU)."""
    return TextFeatures(
        words=features.words.cpu(),
        embedding=features.embedding.cpu(),
        word_mask=features.word_mask.cpu(),
        legacy_word_counts=features.legacy_word_counts.cpu(),
        word_strings=features.word_strings,
    )


def embed_eval_images(
    model: ImageModel,
    paths: Sequence[str | Path],
    images: ImageEmbeddings | None,
    *,
    batch_size: int = 32,
    cache: EmbeddingCache | None = None,
) -> ImageEmbeddings:
    """``images`` when already embedded (with regions), else ``embed_images`` with regions."""
    if images is not None:
        if len(images.paths) != len(paths):
            raise ValueError(f"{len(images.paths)} image embeddings given for {len(paths)} rows")
        return images
    return embed_images(model, paths, batch_size=batch_size, cache=cache, with_regions=True)


@dataclass
class EmbedResult:
    """What ``run_embed`` computed: the images' embeddings and, when texts were given, theirs."""

    images: ImageEmbeddings
    texts: list[str] | None = None
    text_features: TextFeatures | None = None
    cache_hits: int = 0

    def save(self, path: str | Path) -> Path:
        """The NPZ of ``save_embeddings``."""
        return save_embeddings(path, self.images, self.texts, self.text_features)


def run_embed(
    model: Any,
    paths: Sequence[str | Path],
    texts: Sequence[str] | None = None,
    *,
    batch_size: int = 32,
    cache: EmbeddingCache | None = None,
    with_regions: bool = False,
    progress: bool = True,
) -> EmbedResult:
    """The embeddings runner: every image once per content hash and model (``cache``), texts in batches."""
    images = embed_images(
        model, paths, batch_size=batch_size, cache=cache, with_regions=with_regions, progress=progress
    )
    result = EmbedResult(images, cache_hits=cache.hits if cache is not None else 0)
    if texts:
        result.texts = list(texts)
        result.text_features = embed_texts(model, result.texts, batch_size=batch_size).features
    return result
