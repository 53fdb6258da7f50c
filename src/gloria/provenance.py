"""How a published number was made: the one record every benchmark and docs-data script writes.

``bench/bench_<topic>.py`` and the ``scripts/`` that write data under ``docs/data/`` call :func:`start` before
measuring and :func:`write` at the end, so every such JSON carries the same ``meta`` record: the command, the
git commit of the checkout (and whether tracked files had uncommitted changes), torch and Python versions,
the CPU (its model name and the instruction set torch picked its kernels for: another CPU takes other float
paths), torch threads, and the load average at the start and the end (timings on a shared machine move with
it). :func:`write` replaces the file atomically; :func:`spread` is the min / median / max the docs quote and
:func:`mean_sd` the mean and sample standard deviation over seeds or runs.
"""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def git_commit(root: Path | None = None) -> dict[str, Any]:
    """HEAD of the checkout at ``root`` and whether tracked files differ from it (None when no git)."""
    root = Path.cwd() if root is None else root
    try:
        head = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return {"commit": None, "dirty": None}
    return {"commit": head, "dirty": bool(dirty)}


def cpu_model() -> str:
    """The CPU's model name as the kernel reports it (``platform.processor()`` off Linux)."""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def start(threads: int | None = None, *, root: Path | None = None) -> dict[str, Any]:
    """The run's record before measuring. ``threads`` sets torch's thread count (kept as is when None);
    ``root`` is the checkout whose commit is recorded (default: the working directory)."""
    import torch

    if threads is not None:
        torch.set_num_threads(threads)
    return {
        "command": " ".join(["python", *sys.argv]),
        **git_commit(root),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "machine": platform.processor() or platform.machine(),
        "cpu_model": cpu_model(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_average_start": list(os.getloadavg()),
        "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "started_unix": time.time(),
    }


def write(path: Path, result: dict[str, Any], meta: dict[str, Any]) -> Path:
    """Write ``result`` with ``meta`` (plus the end load average and elapsed time) to ``path`` atomically."""
    meta = {**meta, "load_average_end": list(os.getloadavg())}
    meta["elapsed_s"] = round(time.time() - meta["started_unix"], 1)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({"meta": meta, **result}, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def mean_sd(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (n - 1) of ``values``: NaN and 0 for none, sd 0 for one value."""
    n = len(values)
    if n == 0:
        return float("nan"), 0.0
    mean = sum(values) / n
    var = sum((v - mean) ** 2 for v in values) / (n - 1) if n > 1 else 0.0
    return mean, math.sqrt(var)


def spread(values: list[float]) -> dict[str, float]:
    """min / median / max of repeated measurements (the docs quote this range, not the best run)."""
    ordered = sorted(values)
    n = len(ordered)
    median = ordered[n // 2] if n % 2 else (ordered[n // 2 - 1] + ordered[n // 2]) / 2
    return {"min": ordered[0], "median": median, "max": ordered[-1], "n": n}
