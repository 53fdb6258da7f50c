"""Benchmark: JPEG and DICOM files -> training tensors, decoding every time vs the preprocessing cache.

Reference: a plain OpenCV loop (``cv2.imread`` / ``pydicom`` ``pixel_array`` min-max to uint8, INTER_AREA
resize of the longer side, zero pad, centre crop, normalise). Ours: ``read_image`` + ``ImagePreprocessor``
(raw), and ``ImageCache.load`` + ``ImagePreprocessor`` (cached; the one-off build is timed apart).
Prints a table and writes bench/results/data.json.

    python bench/bench_data.py [--quick]
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pydicom
import torch
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

from gloria import provenance
from gloria.config import ImageTransformConfig
from gloria.data.cache import ImageCache, resize_longer_side
from gloria.data.images import read_image
from gloria.data.transforms import ImagePreprocessor

RESULTS = Path(__file__).resolve().parent / "results"
CFG = ImageTransformConfig(imsize=256, crop_size=224, norm="half")


def synthetic_radiograph(seed: int, size: int) -> np.ndarray:
    """A smooth 12-bit image with noise (JPEG-compressible like a radiograph), uint16 [size, size]."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    body = np.exp(-((xx - 0.5) ** 2 + (yy - 0.55) ** 2) / 0.08)
    lungs = np.exp(-((np.abs(xx - 0.5) - 0.2) ** 2 / 0.01 + (yy - 0.45) ** 2 / 0.05))
    image = 3000 * body - 1500 * lungs + rng.normal(0, 60, (size, size)) + 600
    return np.clip(image, 0, 4095).astype(np.uint16)


def write_dicom(path: Path, pixels: np.ndarray) -> None:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.SamplesPerPixel, ds.PhotometricInterpretation = "CR", 1, "MONOCHROME2"
    ds.Rows, ds.Columns = pixels.shape
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = pixels.tobytes()
    ds.save_as(path, enforce_file_format=True)


def make_files(folder: Path, n: int, size: int) -> tuple[list[Path], list[Path]]:
    jpegs, dicoms = [], []
    for i in range(n):
        pixels = synthetic_radiograph(i, size)
        if i % 2 == 0:
            path = folder / f"img{i}.jpg"
            cv2.imwrite(str(path), (pixels >> 4).astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, 95])
            jpegs.append(path)
        else:
            path = folder / f"img{i}.dcm"
            write_dicom(path, pixels)
            dicoms.append(path)
    return jpegs, dicoms


def reference_resized(path: Path) -> np.ndarray:
    """The plain loop's decode + resize of the longer side to 256 (what the cache stores)."""
    if path.suffix == ".dcm":
        raw = pydicom.dcmread(path).pixel_array.astype(np.float32)
        gray = ((raw - raw.min()) * (255.0 / max(float(raw.max() - raw.min()), 1.0))).astype(np.uint8)
    else:
        gray = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    h, w = gray.shape
    scale = CFG.imsize / max(h, w)
    return np.asarray(cv2.resize(gray, (int(w * scale), int(h * scale)), interpolation=cv2.INTER_AREA))


def reference_tensor(path: Path) -> torch.Tensor:
    """The plain loop: decode, resize the longer side to 256, pad, centre crop 224, normalise."""
    resized = reference_resized(path)
    ph, pw = CFG.imsize - resized.shape[0], CFG.imsize - resized.shape[1]
    padded = np.pad(resized, ((ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2)))
    off = (CFG.imsize - CFG.crop_size) // 2
    crop = padded[off : off + CFG.crop_size, off : off + CFG.crop_size].astype(np.float32) / 255.0
    return torch.from_numpy((crop - 0.5) / 0.5)[None].expand(3, -1, -1)


def timed(fn: Callable[[Path], Any], paths: Sequence[Path]) -> dict[str, float]:
    tracemalloc.start()
    start = time.perf_counter()
    for path in paths:
        fn(path)
    seconds = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return {"images_per_s": len(paths) / seconds, "seconds": seconds, "peak_mib": peak / 2**20}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="40 images instead of 200")
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    meta = provenance.start(1)
    logging.basicConfig(level=logging.WARNING)
    n = 40 if args.quick else 200
    torch.set_num_threads(1)
    pre = ImagePreprocessor(CFG)
    rows: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        jpegs, dicoms = make_files(Path(tmp), n, args.size)
        cache = ImageCache(Path(tmp) / "cache", CFG.imsize)
        start = time.perf_counter()
        stats = cache.build([*jpegs, *dicoms], workers=args.workers, progress=False)
        build_s = time.perf_counter() - start
        if stats.failed:
            raise RuntimeError(f"cache build failed: {stats.failed[:3]}")
        for kind, paths in (("jpeg", jpegs), ("dicom", dicoms)):
            rows[f"{kind} reference (OpenCV loop)"] = timed(reference_tensor, paths)
            rows[f"{kind} ours raw"] = timed(lambda p: pre(read_image(p)), paths)
            rows[f"{kind} ours cached"] = timed(lambda p: pre(cache.load(p)), paths)
            rows[f"{kind} reference resized only"] = timed(reference_resized, paths)
            rows[f"{kind} ours raw resized only"] = timed(
                lambda p: resize_longer_side(read_image(p), CFG.imsize), paths
            )
            rows[f"{kind} ours cached resized only"] = timed(cache.load, paths)
        same = all(torch.equal(pre(read_image(p)), pre(cache.load(p))) for p in [*jpegs[:5], *dicoms[:5]])
    print(f"{'pipeline':36s} {'img/s':>9s} {'peak MiB':>9s}  (peak: tracemalloc, Python/NumPy allocations)")
    for name, row in rows.items():
        print(f"{name:36s} {row['images_per_s']:9.1f} {row['peak_mib']:9.1f}")
    ratios: dict[str, dict[str, float]] = {}
    for kind in ("jpeg", "dicom"):
        speed = {
            name[len(kind) + 1 :]: row["images_per_s"] for name, row in rows.items() if name.startswith(kind)
        }
        ratios[kind] = {
            "tensor_cached_vs_raw": speed["ours cached"] / speed["ours raw"],
            "tensor_cached_vs_reference": speed["ours cached"] / speed["reference (OpenCV loop)"],
            "tensor_raw_vs_reference": speed["ours raw"] / speed["reference (OpenCV loop)"],
            "resized_cached_vs_raw": speed["ours cached resized only"] / speed["ours raw resized only"],
            "resized_cached_vs_reference": speed["ours cached resized only"]
            / speed["reference resized only"],
        }
        print(f"{kind}: " + ", ".join(f"{k} {v:.1f}x" for k, v in ratios[kind].items()))
    print(
        f"cache build: {n} images in {build_s:.1f} s ({n / build_s:.1f} img/s, {args.workers} threads); "
        f"cached tensors identical to decoded: {same}"
    )
    RESULTS.mkdir(parents=True, exist_ok=True)
    result = {
        "images": n,
        "size": args.size,
        "quick": args.quick,
        "rows": rows,
        "ratios": ratios,
        "cache_build": {"seconds": build_s, "images_per_s": n / build_s, "workers": args.workers},
        "cached_equals_decoded": same,
        "target": "cached >= 5x faster than decoding",
    }
    provenance.write(RESULTS / "data.json", result, meta)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
