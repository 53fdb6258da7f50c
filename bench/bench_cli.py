"""Benchmark: start-up of ``gloria --help`` against the interpreter alone and against importing torch.

Until the command modules imported their heavy dependencies inside ``run``, building the parser for the
help text imported torch (2.3-2.9 s, 685 MB on a busy 2-core machine). Each command runs in a fresh
process (``repeats`` times); its peak RSS is the child's ``ru_maxrss``, read by a one-child wrapper.
Reference rows: ``python -c pass`` (the floor) and ``python -c 'import torch'`` (what the old help text
paid on top of the parser). Writes bench/results/cli.json.

    python bench/bench_cli.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"

# a wrapper that runs one child and prints its peak RSS (KiB on Linux) and wall seconds
WRAPPER = (
    "import resource, subprocess, sys, time\n"
    "t = time.perf_counter()\n"
    "subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, check=True)\n"
    "print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
)
HELP = "from gloria.cli.main import main; main(['--help'])"
COMMANDS: dict[str, list[str]] = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "python -c 'import torch'": [sys.executable, "-c", "import torch"],
    "gloria --help": [sys.executable, "-c", HELP],
}
PROBE = "import sys\ntry:\n    {code}\nexcept SystemExit:\n    pass\nprint(int('torch' in sys.modules))"


def measure(command: list[str], repeats: int) -> dict[str, float]:
    seconds, rss = [], []
    for _ in range(repeats):
        out = subprocess.run([sys.executable, "-c", WRAPPER, *command], capture_output=True, text=True)
        if out.returncode:
            raise RuntimeError(f"{command} failed: {out.stderr[-2000:]}")
        wall, kib = out.stdout.split()
        seconds.append(float(wall))
        rss.append(int(kib) / 1024)
    return {
        "seconds_min": round(min(seconds), 3),
        "seconds_median": round(statistics.median(seconds), 3),
        "peak_rss_mib": round(max(rss), 1),
    }


def imports_torch(code: str) -> bool:
    out = subprocess.run([sys.executable, "-c", PROBE.format(code=code)], capture_output=True, text=True)
    return out.stdout.strip().endswith("1")


def _commit() -> str:
    out = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True)
    return out.stdout.strip() or "unknown"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 repeats instead of 10")
    args = parser.parse_args(argv)
    repeats = 3 if args.quick else 10
    load_start = os.getloadavg()[0]
    start = time.perf_counter()
    rows = [{"command": name, **measure(cmd, repeats)} for name, cmd in COMMANDS.items()]
    by_name: dict[str, dict[str, Any]] = {str(r["command"]): r for r in rows}
    help_row, floor = by_name["gloria --help"], by_name["python -c pass"]
    torch_row = by_name["python -c 'import torch'"]
    import torch  # only for its version, after the timed runs

    result = {
        "command": "python bench/bench_cli.py" + (" --quick" if args.quick else ""),
        "commit": _commit(),
        "torch": torch.__version__,
        "python": sys.version.split()[0],
        "cpu_count": os.cpu_count(),
        "threads": "default (start-up is single-threaded)",
        "repeats": repeats,
        "load_average_start_end": [round(load_start, 2), round(os.getloadavg()[0], 2)],
        "help_imports_torch": imports_torch(HELP),
        "help_seconds_median": help_row["seconds_median"],
        "help_under_half_a_second": help_row["seconds_median"] < 0.5,
        "ratio_help_over_python": round(help_row["seconds_median"] / floor["seconds_median"], 2),
        "ratio_torch_import_over_help": round(torch_row["seconds_median"] / help_row["seconds_median"], 1),
        "wall_seconds": round(time.perf_counter() - start, 1),
        "rows": rows,
    }
    print(f"{'command':28s} {'min s':>7s} {'median s':>9s} {'peak RSS MiB':>13s}")
    for row in rows:
        print(f"{row['command']:28s} {row['seconds_min']:7.3f} {row['seconds_median']:9.3f} "
              f"{row['peak_rss_mib']:13.1f}")  # fmt: skip
    load = result["load_average_start_end"]
    print(f"gloria --help imports torch: {result['help_imports_torch']}; load average {load}")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "cli.json").write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
