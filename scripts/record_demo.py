"""Run ``gloria demo`` and commit-ready record its numbers: docs/data/demo/<name>.json.

    python scripts/record_demo.py --name default_seed0_threads1 -- --threads 1 --seed 0 --out /tmp/demo_t1

Everything after ``--`` goes to ``gloria demo``. The record is the demo's own ``results.json`` (every number,
settings, per-stage timings) under ``results``, with the provenance record of ``gloria.provenance`` (commit,
torch version, threads, load average at the start and end) under ``meta``, plus the demo's exit code and wall
seconds. The docs quote numbers from these files and name the file next to the number.
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from gloria import provenance

ROOT = Path(__file__).resolve().parents[1]
OUT_DIR = ROOT / "docs" / "data" / "demo"
log = logging.getLogger("record_demo")


def _option(args: Sequence[str], name: str, default: str | None) -> str | None:
    for i, arg in enumerate(args):
        if arg == name and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return default


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", required=True, help="record name: docs/data/demo/<name>.json")
    parser.add_argument("--dir", type=Path, default=OUT_DIR, help="folder of the record")
    parser.add_argument("demo_args", nargs="*", help="arguments of `gloria demo` (after --)")
    args = parser.parse_args(argv)
    demo_args = list(args.demo_args)
    threads = _option(demo_args, "--threads", None)
    out = Path(_option(demo_args, "--out", "demo_out") or "demo_out")
    meta = provenance.start(int(threads) if threads else None, root=ROOT)
    meta["command"] = " ".join(["python", "scripts/record_demo.py", "--name", args.name, "--", *demo_args])
    start = time.perf_counter()
    rc = subprocess.call([sys.executable, "-m", "gloria", "demo", *demo_args])
    wall = time.perf_counter() - start
    results_path = out / "results.json"
    if not results_path.is_file():
        log.error("gloria demo (exit %d) wrote no %s; nothing recorded", rc, results_path)
        return 1
    record = {
        "demo_args": demo_args,
        "demo_exit_code": rc,
        "demo_wall_s": round(wall, 1),
        "results": json.loads(results_path.read_text(encoding="utf-8")),
    }
    path = provenance.write(args.dir / f"{args.name}.json", record, meta)
    log.info("wrote %s (demo exit %d, %.0f s)", path, rc, wall)
    return 0 if rc == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
