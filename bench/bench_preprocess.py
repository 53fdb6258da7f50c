"""Benchmark: image reading + preprocessing, the release's pipeline (reference) vs ``gloria.data`` (ours).

Reference, written from method.md section 7: ``cv2.imread(path, 0)`` -> float-ratio INTER_AREA resize ->
``np.pad`` -> PIL RGB -> CenterCrop -> ToTensor -> Normalize(0.5, 0.5); DICOM: ``pixel_array`` * 255/max.
Ours: ``read_image`` + ``ImagePreprocessor``. Prints a table, writes bench/results/preprocess.json and a PNG.

    python bench/bench_preprocess.py [--quick]
"""

from __future__ import annotations

import argparse
import importlib.util
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
import pydicom.data
import torch
from PIL import Image
from torchvision import transforms as T

from gloria import provenance
from gloria.config import ImageTransformConfig
from gloria.data.dicom import read_dicom
from gloria.data.images import read_image
from gloria.data.transforms import ImagePreprocessor

RESULTS = Path(__file__).resolve().parent / "results"
CFG = ImageTransformConfig(imsize=256, crop_size=224, norm="half")
RELEASE_TAIL = T.Compose([T.CenterCrop(224), T.ToTensor(), T.Normalize((0.5,) * 3, (0.5,) * 3)])


def reference_resize_pad(gray: np.ndarray, imsize: int = 256) -> np.ndarray:
    h, w = gray.shape
    size = (int(w * (imsize / h)), imsize) if h >= w else (imsize, int(h * (imsize / w)))  # cv2: (w, h)
    resized = cv2.resize(gray, size, interpolation=cv2.INTER_AREA)
    ph, pw = imsize - resized.shape[0], imsize - resized.shape[1]
    return np.pad(resized, [(ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2)], "constant", constant_values=0)


def reference_jpeg(path: Path) -> torch.Tensor:
    gray = cv2.imread(str(path), 0)
    return RELEASE_TAIL(Image.fromarray(reference_resize_pad(gray)).convert("RGB"))


def reference_dicom(path: Path) -> torch.Tensor:
    ds = pydicom.dcmread(path)
    x = ds.pixel_array
    x = cv2.convertScaleAbs(x, alpha=255.0 / x.max())
    if ds.PhotometricInterpretation == "MONOCHROME1":
        x = cv2.bitwise_not(x)
    return RELEASE_TAIL(Image.fromarray(reference_resize_pad(x)).convert("RGB"))


def image_files(quick: bool) -> list[Path]:
    spec = importlib.util.find_spec("pneumonia_model_package")
    if spec is not None and spec.submodule_search_locations:
        root = Path(spec.submodule_search_locations[0]) / "datasets" / "pneumonia-data" / "val"
        files = sorted(root.glob("*.jpeg"))
        if files:
            return files[:4] if quick else files
    tmp = Path(tempfile.mkdtemp())  # fallback: synthetic PNGs of chest-X-ray size
    rng = np.random.default_rng(0)
    out = []
    for i in range(4 if quick else 16):
        path = tmp / f"synthetic_{i}.png"
        cv2.imwrite(str(path), rng.integers(0, 256, size=(1400, 1100 + 20 * i), dtype=np.uint8))
        out.append(path)
    return out


def measure(fn: Callable[[], Any], repeats: int) -> tuple[float, float, Any]:
    """(seconds per call, peak traced MiB, last result); tracemalloc sees numpy/Python allocations."""
    result = fn()  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        result = fn()
    seconds = (time.perf_counter() - start) / repeats
    tracemalloc.start()
    fn()
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    return seconds, peak, result


def save_picture(dicom: Path, target: Path) -> None:
    release = read_dicom(dicom, mode="release")
    voi = read_dicom(dicom)
    crop = ((ImagePreprocessor(CFG)(voi)[0].numpy() + 1.0) * 127.5).astype(np.uint8)
    height = 480
    tiles = [
        cv2.resize(im, (int(im.shape[1] * height / im.shape[0]), height), interpolation=cv2.INTER_AREA)
        for im in (release, voi, crop)
    ]
    canvas = np.concatenate([np.pad(t, ((0, 0), (0, 8)), constant_values=255) for t in tiles], axis=1)
    for x, label in zip(
        (10, tiles[0].shape[1] + 18, tiles[0].shape[1] + tiles[1].shape[1] + 26),
        ("release: 255/max", "ours: VOI window", "ours: 224 crop"),
        strict=True,
    ):
        cv2.putText(canvas, label, (x, 30), cv2.FONT_HERSHEY_SIMPLEX, 0.8, 255, 2)
    cv2.imwrite(str(target), canvas)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer images and repeats (seconds)")
    args = parser.parse_args(argv)
    meta = provenance.start(1)
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(1)
    repeats = 2 if args.quick else 5
    files = image_files(args.quick)
    dicom = Path(str(pydicom.data.get_testdata_file("RG1_UNCR.dcm", download=False)))
    ours_pre = ImagePreprocessor(CFG)
    cases: dict[str, tuple[Callable[[], Any], Callable[[], Any]]] = {
        f"jpeg x{len(files)} -> [3,224,224]": (
            lambda: [reference_jpeg(p) for p in files],
            lambda: [ours_pre(read_image(p)) for p in files],
        ),
        "RG1 DICOM release mode -> crop": (
            lambda: [reference_dicom(dicom)],
            lambda: [ours_pre(read_image(dicom, dicom_mode="release"))],
        ),
        "RG1 read: release vs voi (differ)": (
            lambda: [torch.from_numpy(read_dicom(dicom, mode="release"))],
            lambda: [torch.from_numpy(read_dicom(dicom))],
        ),
    }
    rows = []
    print(
        f"{'case':34s} {'ref ms':>9s} {'ours ms':>9s} {'ratio':>6s} "
        f"{'ref MiB':>8s} {'ours MiB':>9s} {'max|diff|':>9s}"
    )
    for name, (ref_fn, ours_fn) in cases.items():
        ref_s, ref_mib, ref_out = measure(ref_fn, repeats)
        ours_s, ours_mib, ours_out = measure(ours_fn, repeats)
        diff = max(float((a.float() - b.float()).abs().max()) for a, b in zip(ref_out, ours_out, strict=True))
        row = {
            "case": name,
            "reference_ms": round(ref_s * 1e3, 2),
            "ours_ms": round(ours_s * 1e3, 2),
            "speed_ratio_ref_over_ours": round(ref_s / ours_s, 3),
            "reference_peak_mib": round(ref_mib, 2),
            "ours_peak_mib": round(ours_mib, 2),
            "max_abs_diff": diff,
        }
        rows.append(row)
        print(
            f"{name:34s} {row['reference_ms']:9.1f} {row['ours_ms']:9.1f} "
            f"{row['speed_ratio_ref_over_ours']:6.2f} "
            f"{ref_mib:8.1f} {ours_mib:9.1f} {diff:9.2e}"
        )
    RESULTS.mkdir(parents=True, exist_ok=True)
    picture = RESULTS / "preprocess_rg1.png"
    save_picture(dicom, picture)
    payload = {
        "bench": "preprocess",
        "quick": args.quick,
        "repeats": repeats,
        "images": [p.name for p in files],
        "torch_threads": 1,
        "memory": "tracemalloc peak (numpy/Python allocations)",
        "rows": rows,
        "picture": picture.name,
    }
    provenance.write(RESULTS / "preprocess.json", payload, meta)
    print(f"wrote {RESULTS / 'preprocess.json'} and {picture}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
