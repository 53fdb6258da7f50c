"""Manifests of evaluation tables: row count, sha256 of the file and of its sorted ids, so a benchmark number
names exactly the data it was measured on.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from gloria.data.splits import ids_checksum


def file_sha256(path: str | Path) -> str:
    """sha256 (hex) of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def table_manifest(csv_path: str | Path, id_col: str) -> dict[str, object]:
    """``{file, rows, file_sha256, ids_sha256}`` of a CSV whose ``id_col`` names its images."""
    frame = pd.read_csv(csv_path, usecols=[id_col], dtype=str)
    return {
        "file": Path(csv_path).name,
        "rows": len(frame),
        "file_sha256": file_sha256(csv_path),
        "ids_sha256": ids_checksum(frame[id_col]),
    }


def write_json_atomic(data: Mapping[str, object], path: str | Path) -> Path:
    """Write ``data`` as indented JSON through a temporary file and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(json.dumps(data, indent=2) + "\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
