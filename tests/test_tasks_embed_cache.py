"""Embedding export: content-hash cache reused on the second run, resumable, JPEG/PNG/DICOM inputs."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch import nn

from gloria.config import tiny_config
from gloria.tasks import embed as E
from gloria.types import ImageFeatures


class CountingModel(nn.Module):
    """A stand-in image tower: regions = 2x2 average of the input, embedding = their mean; counts calls."""

    def __init__(self) -> None:
        super().__init__()
        self.config = tiny_config()
        self.scale = nn.Parameter(torch.tensor(2.0))
        self.images_seen = 0

    def encode_images(self, images: torch.Tensor) -> ImageFeatures:
        self.images_seen += images.shape[0]
        regions = self.scale * nn.functional.avg_pool2d(images, 16)  # [B, 3, 4, 4]
        return ImageFeatures(regions=regions, embedding=regions.mean(dim=(2, 3)))


def _write_images(folder: Path) -> list[Path]:
    rng = np.random.default_rng(0)
    paths = []
    for i in range(5):
        img = rng.integers(0, 255, (80 + 10 * i, 70), dtype=np.uint8)
        p = folder / ("sub" if i % 2 else ".") / f"img{i}.png"
        p.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(p), img)
        paths.append(p)
    jpg = folder / "img5.jpg"
    cv2.imwrite(str(jpg), rng.integers(0, 255, (64, 90), dtype=np.uint8))
    dup = folder / "copy_of_img0.png"  # same bytes as img0: encoded once
    dup.write_bytes(paths[0].read_bytes())
    return sorted([*paths, jpg, dup])


def test_cache_is_reused_on_second_run_and_results_match(tmp_path: Path) -> None:
    files = E.list_images(_write_images(tmp_path / "imgs")[0].parent)
    assert len(files) == 7
    model = CountingModel()
    cache = E.EmbeddingCache(tmp_path / "cache", E.model_fingerprint(model))
    first = E.embed_images(model, files, batch_size=3, cache=cache, with_regions=True, progress=False)
    assert model.images_seen == 6  # 7 files, one duplicate by content
    assert (
        first.embeddings.shape == (7, 3) and first.regions is not None and first.regions.shape == (7, 3, 4, 4)
    )
    np.testing.assert_array_equal(first.embeddings[files.index(files[0])], first.embeddings[0])
    second = E.embed_images(model, files, batch_size=3, cache=cache, with_regions=True, progress=False)
    assert model.images_seen == 6  # nothing encoded again
    assert cache.hits == 6
    np.testing.assert_array_equal(first.embeddings, second.embeddings)
    np.testing.assert_array_equal(first.regions, second.regions)
    # without the cache the same numbers come out
    fresh = E.embed_images(CountingModel(), files, batch_size=4, progress=False)
    np.testing.assert_allclose(fresh.embeddings, first.embeddings, rtol=1e-6)


def test_new_weights_or_missing_regions_miss_the_cache(tmp_path: Path) -> None:
    files = [f for f in _write_images(tmp_path / "imgs") if "copy" not in f.name][:3]
    model = CountingModel()
    root = tmp_path / "cache"
    E.embed_images(model, files, cache=E.EmbeddingCache(root, E.model_fingerprint(model)), progress=False)
    assert model.images_seen == 3
    E.embed_images(
        model,
        files,
        cache=E.EmbeddingCache(root, E.model_fingerprint(model)),
        with_regions=True,
        progress=False,
    )
    assert model.images_seen == 6  # regions were not cached the first time
    with torch.no_grad():
        model.scale.fill_(3.0)
    assert E.model_fingerprint(model) != E.model_fingerprint(CountingModel())
    cache = E.EmbeddingCache(root, E.model_fingerprint(model))
    E.embed_images(model, files, cache=cache, progress=False)
    assert model.images_seen == 9 and cache.hits == 0


def test_resume_after_interruption_encodes_only_the_rest(tmp_path: Path) -> None:
    files = [f for f in _write_images(tmp_path / "imgs") if "copy" not in f.name][:5]
    model = CountingModel()
    cache = E.EmbeddingCache(tmp_path / "cache", E.model_fingerprint(model))
    E.embed_images(model, files[:2], cache=cache, progress=False)  # "interrupted" after two images
    model.images_seen = 0
    E.embed_images(model, files, cache=cache, progress=False)
    assert model.images_seen == 3


def test_csv_listing_dicom_input_and_npz_output(tmp_path: Path) -> None:
    from pydicom.data import get_testdata_file

    found = get_testdata_file("RG1_UNCR.dcm", download=False)
    if found is None:
        pytest.skip("RG1_UNCR.dcm is not installed locally (pip install pydicom-data)")
    dcm = Path(str(found))
    png = tmp_path / "a.png"
    cv2.imwrite(str(png), np.full((40, 50), 128, np.uint8))
    csv_path = tmp_path / "list.csv"
    csv_path.write_text(f"Path,label\na.png,0\n{dcm},1\n")
    files = E.list_images(csv_path)
    assert files == [png, dcm]
    out = E.embed_images(CountingModel(), files, progress=False)
    saved = E.save_embeddings(tmp_path / "out" / "emb.npz", out)
    with np.load(saved, allow_pickle=False) as data:
        assert list(data["paths"]) == [str(png), str(dcm)]
        np.testing.assert_array_equal(data["embeddings"], out.embeddings)
    bad = tmp_path / "bad.csv"
    bad.write_text("file\na.png\n")
    with pytest.raises(ValueError, match="no image path column"):
        E.list_images(bad)
    with pytest.raises(FileNotFoundError, match=r"missing\.png"):
        E.content_hash(tmp_path / "missing.png")
