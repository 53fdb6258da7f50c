"""Module-scoped scratch folders that are removed when their module's tests are done.

The large fixtures (a demo run's checkpoints, release-style checkpoint files) would otherwise stay on disk
until the session ends; pytest's own retention (``tmp_path_retention_policy`` in pyproject.toml) only
removes per-test folders early.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


@contextmanager
def scratch_dir(factory: pytest.TempPathFactory, name: str) -> Iterator[Path]:
    """A new folder under pytest's base temp folder, deleted on exit (also after a failure)."""
    path = factory.mktemp(name)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
