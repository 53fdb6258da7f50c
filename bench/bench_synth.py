"""Benchmark: SynthCXR generation speed vs loading a real chest X-ray JPEG (the cost it stands in for).

Reference: read one of the 16 real paediatric chest JPEGs of ``pneumonia_model_package`` with OpenCV and
resize it to the generator size (what a loader pays per real image). Ours: ``make_case`` (render image,
report, labels, masks) in memory, then with its files (JPEG + 2 DICOMs + ground-truth record), at 256 and
512 px on one process; then ``generate`` of the demo's default set (3,000 images at 256 px) on 2 processes.

    python bench/bench_synth.py [--quick]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import resource
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import cv2

from gloria import provenance
from gloria.data.synth import SynthConfig, generate, make_case
from gloria.data.synth.records import case_record
from gloria.data.synth.writers import write_case_files

RESULTS = Path(__file__).resolve().parent / "results"


def real_jpegs() -> list[Path]:
    spec = importlib.util.find_spec("pneumonia_model_package")
    if spec is None or not spec.submodule_search_locations:
        return []
    folder = Path(spec.submodule_search_locations[0]) / "datasets" / "pneumonia-data" / "val"
    return sorted(folder.glob("*.jpeg"))


def timed(fn: Callable[[int], object], count: int) -> tuple[float, float]:
    """(seconds per call, peak traced MiB) over ``count`` calls after one warm-up call."""
    fn(0)
    tracemalloc.start()
    t0 = time.perf_counter()
    for i in range(count):
        fn(i)
    seconds = (time.perf_counter() - t0) / count
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return seconds, peak / 2**20


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer images (about 30 s)")
    args = parser.parse_args(argv)
    meta = provenance.start(None)
    cv2.setNumThreads(1)
    count = 40 if args.quick else 200
    demo_n = 600 if args.quick else 3000
    rows: list[dict[str, Any]] = []
    jpegs = real_jpegs()
    with tempfile.TemporaryDirectory() as tmp:
        for size in (256, 512):
            ref_s = float("nan")
            ref_mb = float("nan")
            if jpegs:

                def load(i: int, size: int = size) -> object:
                    gray = cv2.imread(str(jpegs[i % len(jpegs)]), cv2.IMREAD_GRAYSCALE)
                    return cv2.resize(gray, (size, size), interpolation=cv2.INTER_AREA)

                ref_s, ref_mb = timed(load, count // 2)
                rows.append(
                    {
                        "what": f"reference: read real JPEG + resize, {size} px",
                        "size": size,
                        "ms_per_image": ref_s * 1e3,
                        "images_per_s": 1 / ref_s,
                        "ratio_vs_reference": 1.0,
                        "peak_traced_mib": ref_mb,
                    }
                )
            cfg = SynthConfig(size=size)
            out = Path(tmp) / f"files{size}"

            def render(i: int, cfg: SynthConfig = cfg) -> object:
                return make_case(0, i, cfg)

            def with_files(i: int, cfg: SynthConfig = cfg, out: Path = out) -> object:
                case = make_case(0, i, cfg)
                return write_case_files(case, case_record(case, cfg), out, cfg, only_missing=False)

            for label, fn in (
                ("ours: make_case in memory", render),
                ("ours: make_case + JPEG, 2 DICOMs, record", with_files),
            ):
                sec, mb = timed(fn, count)
                rows.append(
                    {
                        "what": f"{label}, {size} px",
                        "size": size,
                        "ms_per_image": sec * 1e3,
                        "images_per_s": 1 / sec,
                        "ratio_vs_reference": sec / ref_s if jpegs else None,
                        "peak_traced_mib": mb,
                    }
                )
        t0 = time.perf_counter()
        summary = generate(
            Path(tmp) / "demo", demo_n, seed=0, config=SynthConfig(size=256), workers=2, progress=False
        )
        wall = time.perf_counter() - t0
        child_rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        rows.append(
            {
                "what": f"ours: generate {demo_n} images, 256 px, 2 processes (all files + tables)",
                "size": 256,
                "ms_per_image": wall / demo_n * 1e3,
                "images_per_s": demo_n / wall,
                "ratio_vs_reference": None,
                "peak_traced_mib": None,
                "wall_s": wall,
                "peak_child_rss_mib": child_rss,
                "counts": summary.counts,
            }
        )
    result = {
        "topic": "synth",
        "quick": args.quick,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, shared with other engineers' jobs while "
        f"measured (load average {os.getloadavg()[0]:.1f}); per-core numbers are pessimistic",
        "demo_images": demo_n,
        "demo_wall_s": round(wall, 1),
        "rows": rows,
    }
    RESULTS.mkdir(exist_ok=True)
    provenance.write(RESULTS / "synth.json", result, meta)
    print(f"{'what':<70} {'ms/img':>8} {'img/s':>8} {'ratio':>7} {'MiB':>7}")
    for row in rows:
        ratio = row["ratio_vs_reference"]
        mib = row["peak_traced_mib"]
        print(
            f"{row['what']:<70} {row['ms_per_image']:>8.2f} {row['images_per_s']:>8.1f} "
            f"{'' if ratio is None else f'{ratio:.2f}':>7} {'' if mib is None else f'{mib:.1f}':>7}"
        )
    print(f"demo set: {demo_n} images in {wall:.1f} s on 2 processes; {result['machine']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
