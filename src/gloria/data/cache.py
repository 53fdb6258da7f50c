"""Preprocessing cache: each image decoded once (JPEG/PNG/DICOM), resized so its longer side is ``imsize``
(the release's float-ratio rule, INTER_AREA) and stored as NPY or PNG, keyed by source path, size, mtime.

Training then reads small files; ``ImagePreprocessor`` on a cached image gives the same tensor as on the
original, because resizing to the size it already has is the identity.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
from tqdm.auto import tqdm

from gloria.data.images import read_image
from gloria.data.transforms import resized_size

log = logging.getLogger(__name__)

CacheFormat = Literal["npy", "png"]


def resize_longer_side(gray: np.ndarray, imsize: int) -> np.ndarray:
    """uint8 [H, W] -> [H', W'] with max(H', W') = imsize (``transforms.resized_size``), INTER_AREA."""
    new_h, new_w = resized_size(gray.shape[0], gray.shape[1], imsize)
    if (new_h, new_w) == gray.shape:
        return gray
    return np.asarray(cv2.resize(gray, (new_w, new_h), interpolation=cv2.INTER_AREA))


@dataclass
class CacheStats:
    """Outcome of :meth:`ImageCache.build`: files written, files already fresh, failures (path, error)."""

    built: int = 0
    fresh: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)


class ImageCache:
    """A folder of resized images; ``load(path)`` returns uint8 [H', W'] (longer side ``imsize``).

    The key hashes the absolute source path, ``imsize``, the DICOM mode, the file's mtime (ns) and byte
    size, so a changed source is decoded again. Writes are atomic (temporary file, then rename).
    """

    def __init__(
        self,
        cache_dir: str | Path,
        imsize: int,
        *,
        fmt: CacheFormat = "npy",
        dicom_mode: Literal["voi", "release"] = "voi",
    ) -> None:
        if imsize < 1:
            raise ValueError(f"imsize must be positive, got {imsize}")
        if fmt not in ("npy", "png"):
            raise ValueError(f"cache format must be 'npy' or 'png', got {fmt!r}")
        self.cache_dir = Path(cache_dir)
        self.imsize = imsize
        self.fmt = fmt
        self.dicom_mode = dicom_mode

    def entry(self, source: str | Path) -> Path:
        """Where the cached copy of ``source`` lives (FileNotFoundError when the source is missing)."""
        path = Path(source).absolute()
        try:
            st = path.stat()
        except FileNotFoundError as err:
            raise FileNotFoundError(f"image not found: {path}") from err
        text = f"{path}|{self.imsize}|{self.dicom_mode}|{st.st_mtime_ns}|{st.st_size}"
        key = hashlib.sha256(text.encode("utf-8")).hexdigest()
        return self.cache_dir / key[:2] / f"{key}.{self.fmt}"

    def _read_entry(self, entry: Path) -> np.ndarray:
        if self.fmt == "npy":
            return np.asarray(np.load(entry, allow_pickle=False))
        image = cv2.imread(str(entry), cv2.IMREAD_UNCHANGED)
        if image is None:
            raise ValueError(f"corrupt cache entry: {entry}")
        return np.asarray(image)

    def _write_entry(self, entry: Path, image: np.ndarray) -> None:
        entry.parent.mkdir(parents=True, exist_ok=True)
        tmp = entry.with_name(f".{entry.stem}.{os.getpid()}.tmp.{self.fmt}")
        if self.fmt == "npy":
            with open(tmp, "wb") as handle:
                np.save(handle, image, allow_pickle=False)
        elif not cv2.imwrite(str(tmp), image):
            raise OSError(f"could not write cache entry {tmp}")
        os.replace(tmp, entry)

    def _decode(self, source: str | Path) -> np.ndarray:
        return resize_longer_side(read_image(source, dicom_mode=self.dicom_mode), self.imsize)

    def load(self, source: str | Path) -> np.ndarray:
        """The resized image of ``source``, decoding and storing it first when not cached."""
        entry = self.entry(source)
        if entry.is_file():
            try:
                return self._read_entry(entry)
            except (ValueError, OSError) as err:
                log.warning("re-decoding %s: unreadable cache entry %s (%s)", source, entry, err)
        image = self._decode(source)
        self._write_entry(entry, image)
        return image

    def _ensure(self, source: str) -> bool:
        entry = self.entry(source)
        if entry.is_file():
            return False
        self._write_entry(entry, self._decode(source))
        return True

    def build(self, sources: Iterable[str | Path], *, workers: int = 4, progress: bool = True) -> CacheStats:
        """Cache every source in parallel threads (OpenCV and NumPy release the GIL), with a progress bar.

        Failures (missing or corrupt images) are collected, logged and returned, not raised.
        """
        items = [str(s) for s in sources]
        stats = CacheStats()
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            futures = {pool.submit(self._ensure, item): item for item in items}
            bar = tqdm(total=len(items), desc="caching images", unit="img", disable=not progress)
            for future, item in futures.items():
                try:
                    if future.result():
                        stats.built += 1
                    else:
                        stats.fresh += 1
                except (ValueError, FileNotFoundError, OSError, RuntimeError) as err:
                    stats.failed.append((item, str(err)))
                bar.update(1)
            bar.close()
        log.info(
            "image cache %s: %d built, %d fresh, %d failed",
            self.cache_dir,
            stats.built,
            stats.fresh,
            len(stats.failed),
        )
        for item, error in stats.failed[:5]:
            log.warning("could not cache %s: %s", item, error)
        return stats
