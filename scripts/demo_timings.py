"""Time ``gloria demo`` (or ``--quick``) once and append the run to docs/data/demo_timings.json.

Each entry records the command, wall seconds, the demo's own stage seconds, the peak RSS of the demo process,
the 1-minute load average before and after with the core count (a run is ``loaded`` when the load before it
already filled the cores), the thread count, the torch version and the commit. Nothing is averaged or
chosen: every run is kept, so the docs quote the spread of what was measured.

    python scripts/demo_timings.py --quick --threads 1 [--out /tmp/demo_timing]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TIMINGS = ROOT / "docs" / "data" / "demo_timings.json"


def _commit() -> str:
    out = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run(
        ["git", "-C", str(ROOT), "status", "--porcelain", "src"], capture_output=True, text=True
    )
    return out.stdout.strip() + ("+uncommitted src changes" if dirty.stdout.strip() else "")


def time_demo(quick: bool, threads: int | None, out: Path) -> dict[str, Any]:
    """One demo run in a child process; its wall time, stage times, peak RSS and the load around it."""
    if out.exists():
        shutil.rmtree(out)
    command = [sys.executable, "-m", "gloria", "demo", "--out", str(out)]
    command += ["--quick"] if quick else []
    command += ["--threads", str(threads)] if threads is not None else []
    cores = os.cpu_count() or 1
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    rc = subprocess.call(command)
    wall = time.perf_counter() - start
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    results = json.loads((out / "results.json").read_text()) if (out / "results.json").is_file() else {}
    import torch

    return {
        "command": "gloria demo"
        + (" --quick" if quick else "")
        + (f" --threads {threads}" if threads else ""),
        "exit_code": rc,
        "wall_seconds": round(wall, 1),
        "stage_seconds": results.get("timings", {}),
        "peak_rss_mib": round(peak_kib / 1024, 1),
        "threads": results.get("threads", threads),
        "cpu_count": cores,
        "load_average_before_after": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "machine": "loaded" if load_before >= cores - 0.5 else "quiet",
        "torch": torch.__version__,
        "commit": _commit(),
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="time `gloria demo --quick`")
    parser.add_argument("--threads", type=int, default=None, help="pass --threads N to the demo")
    parser.add_argument("--out", type=Path, default=Path("/tmp/demo_timing"), help="demo output folder")
    args = parser.parse_args(argv)
    entry = time_demo(args.quick, args.threads, args.out)
    runs = json.loads(TIMINGS.read_text())["runs"] if TIMINGS.is_file() else []
    runs.append(entry)
    body = {
        "description": "wall times of the demo, one entry per run of scripts/demo_timings.py (none dropped)",
        "runs": runs,
    }
    TIMINGS.parent.mkdir(parents=True, exist_ok=True)
    tmp = TIMINGS.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(body, indent=2) + "\n")
    tmp.replace(TIMINGS)  # atomic: a crash leaves the previous file
    sys.stdout.write(json.dumps(entry, indent=2) + "\n")
    return int(entry["exit_code"])


if __name__ == "__main__":
    sys.exit(main())
