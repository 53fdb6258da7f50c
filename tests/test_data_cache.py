"""Preprocessing cache: same tensors as decoding, hits without decoding, invalidation, parallel build."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from gloria.config import ImageTransformConfig
from gloria.data.cache import ImageCache, resize_longer_side
from gloria.data.images import read_image
from gloria.data.transforms import ImagePreprocessor
from support.dataset_fixtures import write_jpeg
from support.dicom_files import write_dicom


@pytest.fixture()
def sources(tmp_path):
    jpeg = write_jpeg(tmp_path / "src" / "a.jpg", seed=1, height=90, width=61)
    pixels = np.arange(70 * 50, dtype=np.uint16).reshape(70, 50) % 4096
    dcm = write_dicom(tmp_path / "src" / "b.dcm", pixels, photometric="MONOCHROME1", bits_stored=12)
    return [jpeg, dcm]


@pytest.mark.parametrize("fmt", ["npy", "png"])
def test_cached_tensor_equals_decoded(tmp_path, sources, fmt):
    cfg = ImageTransformConfig(imsize=48, crop_size=40)
    pre = ImagePreprocessor(cfg)
    cache = ImageCache(tmp_path / "cache", cfg.imsize, fmt=fmt)
    for src in sources:
        cached = cache.load(src)
        assert max(cached.shape) == 48 and cached.dtype == np.uint8
        assert torch.equal(pre(cached), pre(read_image(src)))
        assert np.array_equal(cache.load(src), cached)  # second read from the entry
    assert len(list((tmp_path / "cache").rglob(f"*.{fmt}"))) == 2


def test_hit_skips_decoding_and_change_invalidates(tmp_path, sources, monkeypatch):
    cache = ImageCache(tmp_path / "cache", 32)
    calls = []
    original = cache._decode
    monkeypatch.setattr(cache, "_decode", lambda s: calls.append(s) or original(s))
    cache.load(sources[0])
    cache.load(sources[0])
    assert len(calls) == 1
    st = os.stat(sources[0])
    os.utime(sources[0], ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    cache.load(sources[0])
    assert len(calls) == 2
    assert ImageCache(tmp_path / "cache", 33).entry(sources[0]) != cache.entry(sources[0])


def test_build_parallel_counts_failures(tmp_path, sources):
    cache = ImageCache(tmp_path / "cache", 32)
    (tmp_path / "bad.jpg").write_bytes(b"not a jpeg")
    stats = cache.build([*sources, tmp_path / "missing.jpg", tmp_path / "bad.jpg"], workers=2, progress=False)
    assert (stats.built, stats.fresh) == (2, 0)
    assert [os.path.basename(p) for p, _ in stats.failed] == ["missing.jpg", "bad.jpg"]
    again = cache.build(sources, workers=2, progress=False)
    assert (again.built, again.fresh, again.failed) == (0, 2, [])


def test_resize_rule():
    assert resize_longer_side(np.zeros((1000, 333), np.uint8), 256).shape == (256, 85)
    assert resize_longer_side(np.zeros((300, 1000), np.uint8), 256).shape == (76, 256)
